"""The chunked-filter-gradient convolution: same values as lax, gradients checked in float64
against central finite differences and jax's own, to second order in both modes."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxcl.models.conv import conv_general_dilated, dw_chunk_size

# (dimension numbers, x shape, w shape, keyword arguments of conv_general_dilated)
CASES = {
    "3x3 stride 1": (("NHWC", "HWIO", "NHWC"), (5, 6, 6, 3), (3, 3, 3, 4),
                     dict(window_strides=(1, 1), padding=((1, 1), (1, 1)))),
    "3x3 stride 2": (("NHWC", "HWIO", "NHWC"), (5, 6, 6, 3), (3, 3, 3, 4),
                     dict(window_strides=(2, 2), padding=((1, 1), (1, 1)))),
    "1x1 stride 2": (("NHWC", "HWIO", "NHWC"), (5, 6, 6, 3), (1, 1, 3, 4),
                     dict(window_strides=(2, 2), padding=((0, 0), (0, 0)))),
    "SAME, rhs dilation": (("NHWC", "HWIO", "NHWC"), (5, 7, 7, 2), (3, 3, 2, 3),
                           dict(window_strides=(1, 1), padding="SAME", rhs_dilation=(2, 2))),
    "lhs dilation": (("NHWC", "HWIO", "NHWC"), (5, 4, 4, 2), (3, 3, 2, 3),
                     dict(window_strides=(1, 1), padding=((1, 2), (1, 2)), lhs_dilation=(2, 2))),
    "NCHW/OIHW": (("NCHW", "OIHW", "NCHW"), (5, 3, 6, 6), (4, 3, 3, 3),
                  dict(window_strides=(1, 1), padding=((1, 1), (1, 1)))),
    "feature groups": (("NHWC", "HWIO", "NHWC"), (5, 6, 6, 4), (3, 3, 2, 6),
                       dict(window_strides=(1, 1), padding=((1, 1), (1, 1)),
                            feature_group_count=2)),
}


def _problem(case, key):
    dn, x_shape, w_shape, kwargs = CASES[case]
    kx, kw, ky, kvx, kvw = jax.random.split(key, 5)
    x = jax.random.normal(kx, x_shape)
    w = jax.random.normal(kw, w_shape)

    def ref(a, b):
        return lax.conv_general_dilated(a, b, dimension_numbers=dn, **kwargs)

    def new(a, b):
        # chunk_bytes=1: one sample per chunk; batch 5 also exercises uneven chunks elsewhere.
        return conv_general_dilated(a, b, dimension_numbers=dn, chunk_bytes=1, min_bytes=0,
                                    **kwargs)

    y = jax.random.normal(ky, jax.eval_shape(ref, x, w).shape)
    vx, vw = jax.random.normal(kvx, x_shape), jax.random.normal(kvw, w_shape)
    return x, w, y, vx, vw, ref, new


def _loss(conv, y):
    return lambda a, b: jnp.sum(jnp.sin(conv(a, b)) * y)


@pytest.mark.parametrize("case", list(CASES))
def test_value_and_gradients_match_lax_and_finite_differences(case, key, x64):
    x, w, y, vx, vw, ref, new = _problem(case, key)
    np.testing.assert_allclose(new(x, w), ref(x, w), rtol=1e-12, atol=1e-12)
    loss = _loss(new, y)
    gx, gw = jax.grad(loss, (0, 1))(x, w)
    gx_ref, gw_ref = jax.grad(_loss(ref, y), (0, 1))(x, w)
    np.testing.assert_allclose(gx, gx_ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(gw, gw_ref, rtol=1e-10, atol=1e-10)
    eps = 1e-6
    fd_w = (loss(x, w + eps * vw) - loss(x, w - eps * vw)) / (2 * eps)
    fd_x = (loss(x + eps * vx, w) - loss(x - eps * vx, w)) / (2 * eps)
    np.testing.assert_allclose(jnp.vdot(gw, vw), fd_w, rtol=1e-7)
    np.testing.assert_allclose(jnp.vdot(gx, vx), fd_x, rtol=1e-7)


@pytest.mark.parametrize("case", ["3x3 stride 1", "3x3 stride 2", "NCHW/OIHW"])
def test_second_order_both_modes(case, key, x64):
    """Forward over reverse (the order-2 look-ahead's linearised gradient) against central
    differences of the gradient, and reverse over reverse against lax."""
    x, w, y, vx, vw, ref, new = _problem(case, key)
    grad_w = jax.grad(_loss(new, y), 1)
    hvp = jax.jvp(grad_w, (x, w), (vx, vw))[1]
    eps = 1e-5
    fd = (grad_w(x + eps * vx, w + eps * vw) - grad_w(x - eps * vx, w - eps * vw)) / (2 * eps)
    np.testing.assert_allclose(hvp, fd, rtol=1e-6, atol=1e-7 * np.abs(fd).max())
    hvp_ref = jax.jvp(jax.grad(_loss(ref, y), 1), (x, w), (vx, vw))[1]
    np.testing.assert_allclose(hvp, hvp_ref, rtol=1e-10, atol=1e-10)

    def outer(conv):
        grads = jax.grad(_loss(conv, y), (0, 1))
        return jax.grad(lambda a, b: sum(jnp.sum(t ** 2) for t in grads(a, b)), (0, 1))(x, w)

    for got, want in zip(outer(new), outer(ref)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_filter_gradient_is_summed_over_chunks(key):
    """The backward pass holds one filter-gradient convolution per chunk (5 samples, chunks of
    2: three), each with the filter's shape as its output."""
    x, w, y, _, _, _, _ = _problem("3x3 stride 1", key)
    chunk = dw_chunk_size(x.shape, y.shape, 0, 4, 2 * 6 * 6 * 4 * 4, min_bytes=0)
    assert chunk == 2

    def conv(a, b):
        return conv_general_dilated(a, b, (1, 1), ((1, 1), (1, 1)),
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                    chunk_bytes=2 * 6 * 6 * 4 * 4, min_bytes=0)

    jaxpr = str(jax.make_jaxpr(jax.grad(_loss(conv, y), 1))(x, w))
    assert jaxpr.count("f32[3,3,3,4] = conv_general_dilated") == 3


def test_chunk_size_rule():
    # 64 x 32x32x20 float32: 80 KB a sample, 4 samples in 320 KB; 8x8x80: 20 KB, 16 samples.
    assert dw_chunk_size((64, 32, 32, 20), (64, 32, 32, 20), 0, 4) == 4
    assert dw_chunk_size((64, 8, 8, 80), (64, 8, 8, 80), 0, 4) == 16
    # The 4x4x160 stage (640 KB for the batch) fits the L2 whole: not chunked.
    assert dw_chunk_size((64, 4, 4, 160), (64, 4, 4, 160), 0, 4) == 64
    assert dw_chunk_size((64, 4, 4, 160), (64, 4, 4, 160), 0, 4, min_bytes=0) == 32
    # The larger operand counts (a stride-2 conv's input), never below one sample or above all.
    assert dw_chunk_size((64, 32, 32, 20), (64, 16, 16, 40), 0, 4) == 4
    assert dw_chunk_size((8, 512, 512, 3), (8, 512, 512, 3), 0, 4) == 1
    assert dw_chunk_size((64, 32, 32, 20), (64, 32, 32, 20), 0, 4, chunk_bytes=0) == 64


def test_drop_in_for_flax_conv(key):
    x = jax.random.normal(key, (4, 8, 8, 3))
    plain = nn.Conv(5, (3, 3), strides=(2, 2), padding=1, use_bias=False)
    chunked = nn.Conv(5, (3, 3), strides=(2, 2), padding=1, use_bias=False,
                      conv_general_dilated=conv_general_dilated)
    params = plain.init(key, x)
    np.testing.assert_allclose(chunked.apply(params, x), plain.apply(params, x), rtol=1e-6,
                               atol=1e-6)
    grads = [jax.grad(lambda p, m=m: jnp.sum(m.apply(p, x) ** 2))(params) for m in (plain, chunked)]
    np.testing.assert_allclose(grads[1]["params"]["kernel"], grads[0]["params"]["kernel"],
                               rtol=1e-5, atol=1e-5)


def test_vmap_and_batch_groups_fall_through(key):
    x = jax.random.normal(key, (3, 4, 6, 6, 2))
    w = jax.random.normal(key, (3, 3, 2, 2))
    dn = ("NHWC", "HWIO", "NHWC")

    def f(conv):
        return jax.vmap(lambda a: conv(a, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=dn))(x)

    np.testing.assert_allclose(f(conv_general_dilated), f(lax.conv_general_dilated), rtol=1e-6,
                               atol=1e-6)
    # batch_group_count != 1 goes to lax unchanged.
    xb = jax.random.normal(key, (4, 6, 6, 2))
    wb = jax.random.normal(key, (3, 3, 2, 4))
    args = ((1, 1), ((1, 1), (1, 1)))
    np.testing.assert_allclose(
        conv_general_dilated(xb, wb, *args, dimension_numbers=dn, batch_group_count=2),
        lax.conv_general_dilated(xb, wb, *args, dimension_numbers=dn, batch_group_count=2))
