"""A drop-in ``lax.conv_general_dilated`` whose filter gradient is summed over batch chunks.

For a convolution ``y = conv(x, w)`` (input ``x``, filter ``w``, cotangent ``g`` of ``y``) the filter
gradient is a correlation of the input with the cotangent whose window is the whole image and
whose contraction runs over the batch::

    dw[i, j, c, o] = sum_{n, h, v} x[n, h + i - p, v + j - p, c] g[n, h, v, o]
                   = sum_chunks sum_{n in chunk} (...)

XLA:CPU (jaxlib 0.10.2, convolutions through YNNPACK) runs it at batch 64 x 32x32x20 about 3x
slower than the forward pass: its window operand ``g`` (5.2 MB) does not stay in cache. The same sum
taken over chunks of a few samples (:func:`dw_chunk_size`: 320 KB of ``x`` or ``g`` per chunk,
none where the whole batch's operand fits a 1 MB L2) is about 2x faster and equal to float32
rounding; ``benchmarks/xla_cpu_conv.py`` measures it.

How: a :func:`jax.custom_jvp` whose tangent in ``w`` is the same convolution written as a
concatenation over batch chunks, ``concat_k conv(x_k, t_w)``. Reverse mode transposes that
tangent, and the transpose of a concatenation of convolutions is the sum over chunks of their
filter gradients, which XLA computes one chunk at a time. The forward value and the input
gradient are XLA's own. Forward mode works too (a custom_vjp would not: the order-2 look-ahead
linearises a gradient, forward over reverse), and every order keeps the chunked form, since the
derivatives of the transposed convolutions are again per-chunk convolutions.

Use it as ``flax.linen.Conv(..., conv_general_dilated=conv_general_dilated)``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# Bytes of one chunk of the filter gradient's larger operand (x or g): a chunk stays in a 1 MB
# L2 cache with room for the other operand. Measured on a 2-core AMD EPYC (Zen 4) VM.
DW_CHUNK_BYTES = 320 * 1024
# An operand that fits the L2 whole is not chunked: at 64x4x4x160 (640 KB) chunks cost time.
DW_MIN_BYTES = 1024 * 1024


class ConvSpec(NamedTuple):
    """Everything of one convolution but its operands; static (hashable)."""

    window_strides: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]
    lhs_dilation: tuple[int, ...]
    rhs_dilation: tuple[int, ...]
    dimension_numbers: lax.ConvDimensionNumbers
    feature_group_count: int
    precision: object
    preferred_element_type: object
    dw_chunk: int  # samples per chunk of the filter gradient


def _lax_conv(spec: ConvSpec, lhs: jax.Array, rhs: jax.Array) -> jax.Array:
    return lax.conv_general_dilated(
        lhs, rhs, spec.window_strides, spec.padding, spec.lhs_dilation, spec.rhs_dilation,
        spec.dimension_numbers, spec.feature_group_count, 1, spec.precision,
        spec.preferred_element_type)


def _chunked_conv(spec: ConvSpec, lhs: jax.Array, rhs: jax.Array) -> jax.Array:
    """``conv(lhs, rhs)`` as a concatenation over batch chunks of ``spec.dw_chunk`` samples."""
    axis_in, axis_out = spec.dimension_numbers.lhs_spec[0], spec.dimension_numbers.out_spec[0]
    batch, size = lhs.shape[axis_in], spec.dw_chunk
    parts = [_lax_conv(spec, lax.slice_in_dim(lhs, start, min(start + size, batch), axis=axis_in),
                       rhs)
             for start in range(0, batch, size)]
    return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=axis_out)


@functools.cache
def _conv_fn(spec: ConvSpec) -> Callable[[jax.Array, jax.Array], jax.Array]:
    conv = jax.custom_jvp(functools.partial(_lax_conv, spec))
    conv.defjvps(lambda t_lhs, _, lhs, rhs: _lax_conv(spec, t_lhs, rhs),
                 lambda t_rhs, _, lhs, rhs: _chunked_conv(spec, lhs, t_rhs))
    return conv


def dw_chunk_size(lhs_shape: Sequence[int], out_shape: Sequence[int], batch_axis: int,
                  itemsize: int, chunk_bytes: int = DW_CHUNK_BYTES,
                  min_bytes: int = DW_MIN_BYTES) -> int:
    """Samples per chunk of the filter gradient.

    ``chunk_bytes`` over the bytes of one sample of the input or of the output, whichever is
    larger, at least 1; the whole batch (no chunking) where that operand takes at most
    ``min_bytes`` for the whole batch, or where ``chunk_bytes <= 0``.
    """
    batch = lhs_shape[batch_axis]
    total = max(np.prod(lhs_shape), np.prod(out_shape)) * itemsize
    if chunk_bytes <= 0 or batch == 0 or total <= min_bytes:
        return max(batch, 1)
    return int(min(batch, max(1, chunk_bytes // max(total // batch, 1))))


def _explicit_padding(padding, lhs_shape, rhs_shape, dnums, strides, rhs_dilation):
    if not isinstance(padding, str):
        return tuple((int(lo), int(hi)) for lo, hi in padding)
    in_spatial = np.take(lhs_shape, dnums.lhs_spec)[2:]
    window = [(k - 1) * d + 1 for k, d in zip(np.take(rhs_shape, dnums.rhs_spec)[2:], rhs_dilation)]
    return tuple(tuple(p) for p in lax.padtype_to_pads(in_spatial, window, strides, padding))


def conv_general_dilated(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: lax.ConvGeneralDilatedDimensionNumbers | Sequence[str] | None = None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision: lax.PrecisionLike = None,
    preferred_element_type: jnp.dtype | None = None,
    *,
    chunk_bytes: int = DW_CHUNK_BYTES,
    min_bytes: int = DW_MIN_BYTES,
) -> jax.Array:
    """:func:`jax.lax.conv_general_dilated` with the filter gradient summed over batch chunks.

    Same arguments and value as ``lax.conv_general_dilated``; ``chunk_bytes`` and ``min_bytes``
    set the chunk of the filter gradient (:func:`dw_chunk_size`; ``chunk_bytes=0`` turns chunking
    off). Calls that chunking
    cannot serve go to ``lax`` unchanged: ``batch_group_count != 1`` (batch chunks would not add
    up), string padding with ``lhs_dilation``.
    """
    n_spatial = lhs.ndim - 2
    lhs_dilation = tuple(lhs_dilation) if lhs_dilation is not None else (1,) * n_spatial
    rhs_dilation = tuple(rhs_dilation) if rhs_dilation is not None else (1,) * n_spatial
    if batch_group_count != 1 or (isinstance(padding, str) and any(d != 1 for d in lhs_dilation)):
        return lax.conv_general_dilated(
            lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
            feature_group_count, batch_group_count, precision, preferred_element_type)
    strides = tuple(int(s) for s in window_strides)
    dnums = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    pads = _explicit_padding(padding, lhs.shape, rhs.shape, dnums, strides, rhs_dilation)
    spec = ConvSpec(strides, pads, lhs_dilation, rhs_dilation, dnums, int(feature_group_count),
                    precision, preferred_element_type, 0)
    out = jax.eval_shape(functools.partial(_lax_conv, spec), lhs, rhs)
    chunk = dw_chunk_size(lhs.shape, out.shape, dnums.lhs_spec[0],
                          max(jnp.dtype(lhs.dtype).itemsize, jnp.dtype(out.dtype).itemsize),
                          chunk_bytes, min_bytes)
    return _conv_fn(spec._replace(dw_chunk=chunk))(lhs, rhs)
