"""What makes XLA:CPU's 3x3 convolutions, above all the filter gradient, fast for the ResNet step.

Measures, for the slim ResNet-18 (batch 64, 32x32x3 images, nf = 20) on XLA:CPU:

1. The ``xla_cpu_*`` flags this jaxlib knows (names read from ``libjax_common.so``, each checked by
   XLA's own flag parser in a subprocess).
2. One 3x3 convolution (batch 64, 32x32, 20 -> 20 channels, stride 1, pad 1): forward, input
   gradient and filter gradient, median ms, all contenders alternating call by call in one process
   on the same inputs: data layouts (NHWC/NCHW x HWIO/OIHW), precision (HIGHEST; bfloat16 operands
   with a float32 result, reported for its error only), filter-gradient formulations as
   ``jax.custom_vjp`` convolutions (per-tap shifted-slice matmuls, im2col + one dot, a W-im2col and
   a 1-D convolution over (batch, width), the operands swapped, the batch and feature dims swapped
   explicitly, ``batch_group_count``), the batch-chunked filter gradient of ``jaxcl.models.conv``,
   and PyTorch's CPU convolution when ``torch`` imports. Errors are relative to XLA's own NHWC
   numbers; every formulation's gradient is also checked in float64 against central finite
   differences and against ``jax.grad``.
3. The filter gradient at every stage's shape, XLA's (all 64 samples at once) against batch
   chunks of 1 .. 32 samples.
4. The same layer under XLA flag sets, each in its own subprocess (XLA reads flags once per
   process) that compiles once and then runs a program when asked: the sets' programs alternate
   call by call (A, B, C, A, B, C ...) for ``--rounds`` rounds; each cell gives the per-round
   medians.
5. The whole later-experience step of ``benchmarks/lookahead_step.py`` (k = 0, 2, 4; orders 1
   and 2), ``lax.conv_general_dilated`` against ``jaxcl.models.conv.conv_general_dilated``
   (swapped into ``flax.linen.Conv`` for this process only), the four programs alternating.
6. The step under XLA flag sets (``--step-flags``, ``--step-k``; ``--step-chunked`` adds the
   chunked conv under each), subprocesses alternating call by call as in 4.

Compiled programs go to a persistent compilation cache (``--cache-dir``), so that a second run
loads instead of compiling (compile times are then those of loading).

    python benchmarks/xla_cpu_conv.py            # sections 1-5 (most of it compiling the steps)
    python benchmarks/xla_cpu_conv.py --quick    # tiny sizes, one round, k = 4: a smoke run
    python benchmarks/xla_cpu_conv.py --only step-flags --step-flags all --step-k 4
    python benchmarks/xla_cpu_conv.py --only step-flags --step-k 0 \
        --step-flags "no YNNPACK (Eigen convs),fast math,concurrency scheduler"
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

FLAG_SETS = {
    "default": "",
    "no YNNPACK (Eigen convs)": "--xla_cpu_experimental_ynn_fusion_type=",
    "XNNPACK off": "--xla_cpu_use_xnnpack=false",
    "XNN graph fusion GREEDY": "--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY",
    "XNN fusions dot,eltwise,reduce": "--xla_cpu_experimental_xnn_fusion_type=dot,eltwise,reduce",
    "oneDNN (YNNPACK off)": "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_custom_call=true "
                            "--xla_cpu_experimental_onednn_fusion_type=dot,eltwise,individual_convolution "
                            "--xla_cpu_experimental_ynn_fusion_type=",
    "single-threaded Eigen": "--xla_cpu_multi_thread_eigen=false",
    "fast math": "--xla_cpu_enable_fast_math=true",
    "opt preset FAST_RUNTIME": "--xla_cpu_opt_preset=CPU_OPT_PRESET_FAST_RUNTIME",
    "concurrency scheduler": "--xla_cpu_scheduler_type=CPU_SCHEDULER_TYPE_CONCURRENCY_OPTIMIZED",
    "vector width 512": "--xla_cpu_prefer_vector_width=512",
}
SECTIONS = ("flags", "layer", "chunks", "layer-flags", "step", "step-flags")


# ---------------------------------------------------------------- timing and printing helpers
def alternate(calls, *, warmup: int, repeats: int):
    """Median seconds of each zero-argument callable, called round-robin on the same inputs."""
    import jax

    times = {name: [] for name in calls}
    for i in range(warmup + repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            jax.block_until_ready(call())
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def table(header, rows):
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")
    print(flush=True)


def ms(seconds) -> str:
    return "-" if seconds is None else f"{1e3 * seconds:.1f}"


def rel_err(a, b) -> float:
    import numpy as np

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


class Server:
    """This script in a subprocess under its own ``XLA_FLAGS`` (read once per process): it compiles
    its programs, then runs one each time it is asked, so that flag sets alternate call by call."""

    def __init__(self, argv, flags: str, cache_dir: str):
        env = dict(os.environ, XLA_FLAGS=flags)
        if cache_dir:
            env["JAX_COMPILATION_CACHE_DIR"] = cache_dir
        self.flags, self.log = flags, tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen([sys.executable, __file__, *argv], env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log)
        self.info = self._read()

    def _read(self):
        for line in self.proc.stdout:
            if line.startswith("RESULT "):
                return json.loads(line[7:])
        self.log.seek(0)
        raise RuntimeError(f"server under {self.flags!r} died:\n{self.log.read()[-3000:]}")

    def call(self, name: str) -> float:
        """Seconds of one run of program ``name``."""
        self.proc.stdin.write(name + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()
        self.log.close()


def serve(programs, info):
    """The subprocess side of :class:`Server`: ``info`` once, then one timed run per request."""
    import jax

    print("RESULT " + json.dumps(info), flush=True)
    for line in sys.stdin:
        start = time.perf_counter()
        jax.block_until_ready(programs[line.strip()]())
        print("RESULT " + json.dumps(time.perf_counter() - start), flush=True)


# ---------------------------------------------------------------- 1. the flags that exist
def known_cpu_flags():
    """``xla_cpu_*`` names in jaxlib's shared library that XLA's flag parser accepts."""
    import jaxlib

    lib = os.path.join(os.path.dirname(jaxlib.__file__), "libjax_common.so")
    with open(lib, "rb") as f:
        names = sorted({m.decode() for m in re.findall(rb"xla_cpu_[a-z0-9_]*[a-z0-9]", f.read())})
    probe = [sys.executable, "-c", "import jax; jax.devices()"]

    def unknown(flags):
        out = subprocess.run(probe, env=dict(os.environ, XLA_FLAGS=flags), capture_output=True,
                             text=True, check=False)
        found = re.search(r"Unknown flags? in XLA_FLAGS: (.*)", out.stderr)
        return set(found.group(1).split()) if found else set()

    # Bare names parse as booleans; a name still unknown is retried with a value (ints, strings).
    maybe = {n for n in names if f"--{n}" in unknown(" ".join(f"--{n}" for n in names))}
    return [n for n in names if n not in maybe or f"--{n}=0" not in unknown(f"--{n}=0")]


# ---------------------------------------------------------------- 2. one layer, in process
def conv_fns(dn=("NHWC", "HWIO", "NHWC"), precision=None, dtype=None):
    """``conv(x, w)`` with 'same' padding in the given layout (and operand dtype)."""
    import jax.numpy as jnp
    from jax import lax

    def conv(x, w):
        if dtype is not None:
            x, w = x.astype(dtype), w.astype(dtype)
        k = w.shape[dn[1].index("H")]
        pad = (k - 1) // 2
        return lax.conv_general_dilated(x, w, (1, 1), ((pad, pad), (pad, pad)),
                                        dimension_numbers=dn, precision=precision,
                                        preferred_element_type=jnp.float32 if dtype else None)
    return conv


def dw_formulations():
    """Filter gradients ``dw(x, g)`` of a stride-1 3x3 'same' NHWC/HWIO conv, written differently."""
    import jax.numpy as jnp
    from jax import lax

    def taps(x, g):  # nine shifted-slice matmuls, accumulated
        _, h, w_, c = x.shape
        xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        return jnp.stack([jnp.einsum("nhwc,nhwo->co", xp[:, i:i + h, j:j + w_], g)
                          for i in range(3) for j in range(3)]).reshape(3, 3, c, g.shape[-1])

    def im2col(x, g):  # one [N H W, 9 C]^T x [N H W, O] dot
        _, h, w_, c = x.shape
        xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        cols = jnp.concatenate([xp[:, i:i + h, j:j + w_] for i in range(3) for j in range(3)], -1)
        return lax.dot_general(cols.reshape(-1, 9 * c), g.reshape(-1, g.shape[-1]),
                               (((0,), (0,)), ((), ()))).reshape(3, 3, c, g.shape[-1])

    def wcol_conv1d(x, g):  # W-im2col, then a 1-D conv over H contracting (W, N)
        n, h, w_, c = x.shape
        xt = jnp.pad(x.transpose(3, 1, 2, 0), ((0, 0), (1, 1), (1, 1), (0, 0)))  # C, H+2, W+2, N
        lhs = jnp.stack([xt[:, :, j:j + w_] for j in range(3)]).reshape(3 * c, h + 2, w_ * n)
        rhs = g.transpose(1, 2, 0, 3).reshape(h, w_ * n, g.shape[-1])
        out = lax.conv_general_dilated(lhs, rhs, (1,), ((0, 0),),
                                       dimension_numbers=("NWC", "WIO", "NWC"))  # [(j, c), i, o]
        return out.reshape(3, c, 3, -1).transpose(2, 0, 1, 3)

    def swapped(x, g):  # g as the input, x as the window
        out = lax.conv_general_dilated(g.transpose(3, 1, 2, 0), x.transpose(1, 2, 0, 3), (1, 1),
                                       ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return out[:, ::-1, ::-1].transpose(1, 2, 3, 0)

    def batch_feature(x, g):  # XLA's own form, written out: batch <-> feature of x and g
        out = lax.conv_general_dilated(x, g, (1, 1), ((1, 1), (1, 1)),
                                       dimension_numbers=("CHWN", "IHWO", "NHWC"))
        return out.transpose(1, 2, 0, 3)

    def batch_groups(x, g, groups=4):  # batch_group_count: per-group sums in one conv
        n, h, w_, c = x.shape
        o, b = g.shape[-1], n // groups
        lhs = x.reshape(groups, b, h, w_, c).transpose(0, 4, 2, 3, 1).reshape(groups * c, h, w_, b)
        rhs = g.reshape(groups, b, h, w_, o).transpose(2, 3, 1, 0, 4).reshape(h, w_, b, groups * o)
        out = lax.conv_general_dilated(lhs, rhs, (1, 1), ((1, 1), (1, 1)),
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                       batch_group_count=groups)
        return out.reshape(c, 3, 3, groups, o).sum(3).transpose(1, 2, 0, 3)

    return {"per-tap matmuls": taps, "im2col + dot": im2col, "W-im2col + 1-D conv": wcol_conv1d,
            "operands swapped": swapped, "batch<->feature explicit": batch_feature,
            "batch_group_count=4": batch_groups}


def custom_vjp_conv(dw):
    """A stride-1 3x3 'same' NHWC conv whose filter gradient is ``dw(x, g)`` (input gradient:
    XLA's own transpose)."""
    import jax

    conv = conv_fns()

    @jax.custom_vjp
    def f(x, w):
        return conv(x, w)

    def bwd(res, g):
        x, w = res
        (dx,) = jax.linear_transpose(lambda x_: conv(x_, w), x)(g)
        return dx, dw(x, g)

    f.defvjp(lambda x, w: (conv(x, w), (x, w)), bwd)
    return f


def jaxcl_conv():
    from jaxcl.models.conv import conv_general_dilated

    return lambda x, w: conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)),
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"))


def layer_programs(conv):
    """Jitted ``fwd(x, w)``, ``dx(x, w, g)``, ``dw(x, w, g)`` of ``conv``."""
    import jax

    fwd = jax.jit(conv)
    dx = jax.jit(lambda x, w, g: jax.vjp(lambda x_: conv(x_, w), x)[1](g)[0])
    dw = jax.jit(lambda x, w, g: jax.vjp(lambda w_: conv(x, w_), w)[1](g)[0])
    return fwd, dx, dw


def layer_inputs(batch, size, cin, cout):
    import jax

    keys = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(keys[0], (batch, size, size, cin))
    w = jax.random.normal(keys[1], (3, 3, cin, cout)) / (3 * cin ** 0.5)
    g = jax.random.normal(keys[2], (batch, size, size, cout))
    return x, w, g


LAYOUTS = {  # name: (dimension numbers, activation permutation from NHWC, filter perm from HWIO)
    "lax NHWC/HWIO (default)": (("NHWC", "HWIO", "NHWC"), (0, 1, 2, 3), (0, 1, 2, 3)),
    "lax NCHW/OIHW": (("NCHW", "OIHW", "NCHW"), (0, 3, 1, 2), (3, 2, 0, 1)),
    "lax NHWC/OIHW": (("NHWC", "OIHW", "NHWC"), (0, 1, 2, 3), (3, 2, 0, 1)),
    "lax NCHW/HWIO": (("NCHW", "HWIO", "NCHW"), (0, 3, 1, 2), (0, 1, 2, 3)),
}


def torch_programs(x, w, g):
    """PyTorch fwd, dx, dw closures (NCHW and channels_last) on copies of ``x, w, g``."""
    import numpy as np
    import torch

    xt = torch.from_numpy(np.array(x)).permute(0, 3, 1, 2).contiguous()
    gt = torch.from_numpy(np.array(g)).permute(0, 3, 1, 2).contiguous()
    wt = torch.from_numpy(np.array(w)).permute(3, 2, 0, 1).contiguous()
    pad = (w.shape[0] - 1) // 2

    def backward(xx, gg, mask):
        with torch.no_grad():
            return torch.ops.aten.convolution_backward(gg, xx, wt, None, (1, 1), (pad, pad),
                                                       (1, 1), False, (0, 0), 1, mask)

    def fwd(xx):
        with torch.no_grad():
            return torch.nn.functional.conv2d(xx, wt, padding=pad)

    out = {}
    for name, fmt in (("torch NCHW", torch.contiguous_format), ("torch channels_last",
                                                                 torch.channels_last)):
        xx, gg = xt.contiguous(memory_format=fmt), gt.contiguous(memory_format=fmt)
        out[name] = (lambda xx=xx: fwd(xx),
                     lambda xx=xx, gg=gg: backward(xx, gg, (True, False, False))[0],
                     lambda xx=xx, gg=gg: backward(xx, gg, (False, True, False))[1])
    def to_nhwc(t):
        return t.permute(0, 2, 3, 1).numpy()

    def to_hwio(t):
        return t.permute(2, 3, 1, 0).numpy()

    return out, (to_nhwc, to_nhwc, to_hwio)


def layer_section(shape, *, warmup, repeats):
    """Table: forward, input and filter gradient of one layer per contender."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    batch, size, c = shape
    x, w, g = layer_inputs(batch, size, c, c)
    calls, back = {}, {}
    for name, (dn, perm, wperm) in LAYOUTS.items():
        fwd, dx, dw = layer_programs(conv_fns(dn))
        xa, wa, ga = x.transpose(perm), w.transpose(wperm), g.transpose(perm)
        calls[name] = (lambda f=fwd, a=xa, b=wa: f(a, b), lambda f=dx, a=xa, b=wa, c_=ga: f(a, b, c_),
                       lambda f=dw, a=xa, b=wa, c_=ga: f(a, b, c_))
        inv, winv = np.argsort(perm), np.argsort(wperm)
        back[name] = (lambda o, i=inv: np.asarray(o).transpose(i),) * 2 + (
            lambda o, i=winv: np.asarray(o).transpose(i),)
    for name, conv in (("lax HIGHEST precision", conv_fns(precision=jax.lax.Precision.HIGHEST)),
                       ("lax bfloat16 operands, f32 out", conv_fns(dtype=jnp.bfloat16)),
                       ("jaxcl.models.conv (chunked dw)", jaxcl_conv())):
        fwd, dx, dw = layer_programs(conv)
        calls[name] = (lambda f=fwd: f(x, w), lambda f=dx: f(x, w, g), lambda f=dw: f(x, w, g))
    for name, dw_fn in dw_formulations().items():
        _, _, dw = layer_programs(custom_vjp_conv(dw_fn))
        calls[f"custom_vjp: {name}"] = (None, None, lambda f=dw: f(x, w, g))
    try:
        import torch

        tcalls, tback = torch_programs(x, w, g)
        for name, fns in tcalls.items():
            calls[name], back[name] = fns, tback
        torch_note = (f"torch {torch.__version__}, {torch.get_num_threads()} threads, timed in a "
                      "round of its own: its OpenMP threads spin after a call and would slow the "
                      "XLA call next to them")
    except ImportError:
        torch_note = "torch not importable: skipped"
    flat = {(n, i): f for n, fns in calls.items() for i, f in enumerate(fns) if f is not None}
    reference = [np.asarray(f()) for f in calls["lax NHWC/HWIO (default)"]]
    errs = {}
    for (n, i), f in flat.items():
        out = f()
        out = back[n][i](out) if n in back else np.asarray(out)
        errs[(n, i)] = rel_err(out, reference[i])
    torch_calls = {key: f for key, f in flat.items() if key[0].startswith("torch")}
    med = alternate({key: f for key, f in flat.items() if key not in torch_calls},
                    warmup=warmup, repeats=repeats)
    med.update(alternate(torch_calls, warmup=warmup, repeats=repeats) if torch_calls else {})
    print(f"### One 3x3 conv, batch {batch}, {size}x{size}, {c} -> {c} channels "
          f"(median of {repeats}, ms; {torch_note})\n")
    rows = []
    for n in calls:
        t = [med.get((n, i)) for i in range(3)]
        ratio = f"{t[2] / t[0]:.1f}" if t[0] and t[2] else "-"
        err = ", ".join(f"{errs[(n, i)]:.0e}" if (n, i) in errs else "-" for i in range(3))
        rows.append([n, ms(t[0]), ms(t[1]), ms(t[2]), ratio, err])
    table(["contender", "fwd", "dx", "dw", "dw/fwd", "max rel err (fwd, dx, dw)"], rows)
    return med


def grad_check_section():
    """Float64: each filter-gradient formulation against jax.grad and central differences."""
    import jax
    import jax.numpy as jnp
    from jax import enable_x64

    from jaxcl.models.conv import conv_general_dilated

    rows = []
    with enable_x64():
        keys = jax.random.split(jax.random.key(1), 5)
        x = jax.random.normal(keys[0], (4, 6, 6, 3))
        w = jax.random.normal(keys[1], (3, 3, 3, 4))
        y = jax.random.normal(keys[2], (4, 6, 6, 4))
        vx, vw = jax.random.normal(keys[3], x.shape), jax.random.normal(keys[4], w.shape)
        convs = {name: custom_vjp_conv(dw) for name, dw in dw_formulations().items()}
        convs["jaxcl.models.conv (chunk 1)"] = functools.partial(
            conv_general_dilated, window_strides=(1, 1), padding=((1, 1), (1, 1)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"), chunk_bytes=1, min_bytes=0)
        lax_conv = conv_fns()
        def loss(conv):
            return lambda a, b: jnp.sum(jnp.sin(conv(a, b)) * y)

        gx_ref, gw_ref = jax.grad(loss(lax_conv), (0, 1))(x, w)
        eps = 1e-6
        for name, conv in convs.items():
            f = loss(conv)
            gx, gw = jax.grad(f, (0, 1))(x, w)
            fd_w = (f(x, w + eps * vw) - f(x, w - eps * vw)) / (2 * eps)
            fd_x = (f(x + eps * vx, w) - f(x - eps * vx, w)) / (2 * eps)
            rows.append([name, f"{rel_err(gw, gw_ref):.0e}", f"{rel_err(gx, gx_ref):.0e}",
                         f"{abs(float(jnp.vdot(gw, vw)) - fd_w) / abs(fd_w):.0e}",
                         f"{abs(float(jnp.vdot(gx, vx)) - fd_x) / abs(fd_x):.0e}"])
    print("### Gradient checks, float64 (x 4x6x6x3, w 3x3x3x4, L = sum(sin(conv) * y))\n")
    table(["formulation", "dw vs jax.grad", "dx vs jax.grad", "dw . v vs central diff",
           "dx . v vs central diff"], rows)


def chunk_section(stages, *, warmup, repeats):
    """Table: the filter gradient at each stage's shape, XLA's against batch chunks."""
    import numpy as np

    from jaxcl.models.conv import DW_CHUNK_BYTES, DW_MIN_BYTES, conv_general_dilated, dw_chunk_size

    sizes = [1, 2, 4, 8, 16, 32]
    rows = []
    for batch, size, c in stages:
        x, w, g = layer_inputs(batch, size, c, c)
        per_sample = size * size * c * 4
        fwd, _, dw = layer_programs(conv_fns())
        calls = {"fwd": lambda f=fwd, a=x, b=w: f(a, b),
                 "XLA dw": lambda f=dw, a=x, b=w, c_=g: f(a, b, c_)}
        for s in [s for s in sizes if s < batch] + ["default"]:
            nbytes, least = (DW_CHUNK_BYTES, DW_MIN_BYTES) if s == "default" else (s * per_sample, 0)
            conv = functools.partial(conv_general_dilated, window_strides=(1, 1),
                                     padding=((1, 1), (1, 1)),
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                     chunk_bytes=nbytes, min_bytes=least)
            _, _, dwc = layer_programs(conv)
            calls[s] = lambda f=dwc, a=x, b=w, c_=g: f(a, b, c_)
        ref = np.asarray(calls["XLA dw"]())
        worst = max(rel_err(calls[s](), ref) for s in calls if s not in ("fwd", "XLA dw"))
        med = alternate(calls, warmup=warmup, repeats=repeats)
        default = dw_chunk_size(x.shape, g.shape, 0, 4)
        rows.append([f"{batch}x{size}x{size}x{c}", ms(med["fwd"]), ms(med["XLA dw"])]
                    + [ms(med.get(s)) for s in sizes]
                    + [f"{ms(med['default'])} ({default})", f"{med['XLA dw'] / med['default']:.2f}",
                       f"{worst:.0e}"])
    print(f"### Filter gradient by stage: XLA's against chunks of s samples (ms, median of "
          f"{repeats}; default: chunks of {DW_CHUNK_BYTES // 1024} KB of x or g, none where the "
          f"batch's operand is at most {DW_MIN_BYTES // 1024} KB)\n")
    table(["x shape", "fwd", "XLA dw"] + [f"s={s}" for s in sizes]
          + ["default (s)", "XLA/default", "max rel err"], rows)


# ---------------------------------------------------------------- 4. one layer under XLA flags
def libraries(compiled_text: str) -> set[str]:
    kinds = set(re.findall(r'"kind":"__(\w+?)_fusion"', compiled_text))
    kinds |= {t for t in re.findall(r'custom_call_target="([^"]+)"', compiled_text)
              if "onednn" in t.lower() or "xnn" in t.lower()}
    return kinds


def layer_server(shape):
    """In a flagged subprocess: fwd, dx, dw of XLA's conv and dw of the chunked conv."""
    batch, size, c = shape
    x, w, g = layer_inputs(batch, size, c, c)
    fwd, dx, dw = layer_programs(conv_fns())
    _, _, dwc = layer_programs(jaxcl_conv())
    libs = set()
    for f, args in ((fwd, (x, w)), (dx, (x, w, g)), (dw, (x, w, g))):
        libs |= libraries(f.lower(*args).compile().as_text())
    serve({"fwd": lambda: fwd(x, w), "dx": lambda: dx(x, w, g), "dw": lambda: dw(x, w, g),
           "dw chunked": lambda: dwc(x, w, g)}, {"libs": sorted(libs)})


def flags_section(kind, names, worker_argv, cache_dir, columns, *, rounds, warmup, repeats):
    """One :class:`Server` per flag set; every (flag set, column) program called in turn, call
    after call, ``warmup`` then ``rounds`` x ``repeats`` times; per-round medians."""
    servers = {}
    try:
        for n in names:  # one at a time: compiling is not timed against a running neighbour
            servers[n] = Server(worker_argv, FLAG_SETS[n], cache_dir)
        times = {(n, col): [[] for _ in range(rounds)] for n in names for col in columns}
        for i in range(warmup + rounds * repeats):
            for n in names:
                for col in columns:
                    t = servers[n].call(col)
                    if i >= warmup:
                        times[(n, col)][(i - warmup) // repeats].append(t)
    finally:
        for server in servers.values():
            server.close()
    med = {key: [statistics.median(r) for r in rs] for key, rs in times.items()}
    rows = []
    for n in names:
        cells = [" / ".join(ms(t) for t in med[(n, col)]) for col in columns]
        rel = ", ".join(f"{statistics.median(med[(n, col)]) / statistics.median(med[('default', col)]):.2f}"
                        for col in columns)
        libs = ", ".join(servers[n].info.get("libs", [])) or "-"
        compile_s = servers[n].info.get("compile")
        rows.append([f"{n}: `{FLAG_SETS[n]}`" if FLAG_SETS[n] else n] + cells + [rel]
                    + ([libs] if compile_s is None else [f"{compile_s:.0f}"]))
    print(f"### {kind} under XLA flag sets (ms: median of each of {rounds} rounds of {repeats} "
          "calls, all flag sets' programs alternating call by call, one process per set; "
          "time / default's, medians of the rounds)\n")
    last = "compile s" if servers[names[0]].info.get("compile") is not None else "libraries in HLO"
    table(["flags"] + columns + ["vs default", last], rows)
    return med


# ---------------------------------------------------------------- 5./6. the whole step
def compile_steps(k, sizes, conv="xla"):
    """``{order: (compile s, compiled, state)}`` of the look-ahead step with the ResNet's
    convolution ``conv`` (``"xla"``: lax's; ``"chunked"``: jaxcl.models.conv's)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import lookahead_step

    return {order: lookahead_step.compile_step(k, order, **sizes, prev_slots=20, conv=conv)
            for order in (1, 2)}


def run_steps(programs, *, warmup, repeats):
    """Median seconds per step of each ``name: (compile s, compiled, state)``, alternating."""
    import jax

    states = {n: p[2] for n, p in programs.items()}
    first = {}

    def call(n):
        def go():
            states[n], metrics = programs[n][1](states[n])
            first.setdefault(n, jax.device_get(metrics))
            return metrics
        return go

    return alternate({n: call(n) for n in programs}, warmup=warmup, repeats=repeats), first


def step_server(k, sizes, chunked: bool):
    """In a flagged subprocess: both orders with lax's conv (and the chunked conv)."""
    programs = {f"order {o}": p for o, p in compile_steps(k, sizes).items()}
    if chunked:
        programs.update({f"order {o} chunked": p for o, p in
                         compile_steps(k, sizes, "chunked").items()})
    states = {n: p[2] for n, p in programs.items()}

    def step(n):
        def go():
            states[n], metrics = programs[n][1](states[n])
            return metrics
        return go

    serve({n: step(n) for n in programs}, {"compile": sum(p[0] for p in programs.values())})


def step_section(ks, sizes, *, warmup, repeats):
    """Table: the step with XLA's conv against the chunked conv, per k and order."""
    rows = []
    for k in ks:
        lax_p = compile_steps(k, sizes)
        new_p = compile_steps(k, sizes, "chunked")
        programs = {**{("lax", o): p for o, p in lax_p.items()},
                    **{("chunked", o): p for o, p in new_p.items()}}
        med, first = run_steps(programs, warmup=warmup, repeats=repeats)
        for o in (1, 2):
            a, b = first[("lax", o)], first[("chunked", o)]
            diff = max(abs(float(a[m]) - float(b[m])) / max(abs(float(a[m])), 1e-12)
                       for m in a if getattr(a[m], "ndim", 1) == 0)
            rows.append([k, o, ms(med[("lax", o)]), ms(med[("chunked", o)]),
                         f"{med[('lax', o)] / med[('chunked', o)]:.2f}",
                         f"{programs[('lax', o)][0]:.0f}, {programs[('chunked', o)][0]:.0f}",
                         f"{diff:.0e}"])
        print(f"k={k} done", file=sys.stderr, flush=True)
    print(f"### Whole later-experience step (batch {sizes['batch']}, {sizes['size']}x"
          f"{sizes['size']}x3, nf {sizes['nf']}; median of {repeats}, ms; four programs "
          "alternating)\n")
    table(["k", "order", "lax conv", "jaxcl chunked conv", "speedup",
           "compile s (lax, chunked; ~0: from the cache)",
           "max rel diff of step metrics"], rows)


# ---------------------------------------------------------------- main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round: a smoke run")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS[:-1]),
                        help="sections to run (default: all but step-flags, which compiles the "
                             "step once per flag set: minutes each at k = 0)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the flag-set tables")
    parser.add_argument("--k", type=int, nargs="+", help="step: freeze depths (0 2 4)")
    parser.add_argument("--step-flags", default="default,no YNNPACK (Eigen convs)",
                        help="comma-separated FLAG_SETS names for the step, or 'all'")
    parser.add_argument("--step-k", type=int, nargs="+", help="k of the flag runs (0)")
    parser.add_argument("--step-chunked", action="store_true",
                        help="step-flags: time the chunked conv too, under every flag set")
    parser.add_argument("--cache-dir", default="/tmp/jaxcl_xla_cpu_conv_cache",
                        help="persistent compilation cache ('' for none)")
    parser.add_argument("--serve", choices=["layer", "step"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    layer = (64, 32, 20)
    stages = [(64, 32, 20), (64, 16, 40), (64, 8, 80), (64, 4, 160)]
    sizes = dict(batch=64, size=32, nf=20)
    reps = dict(warmup=2, repeats=11)
    step_reps = dict(warmup=2, repeats=5)
    if args.quick:
        layer, stages, sizes = (8, 8, 4), [(8, 8, 4)], dict(batch=8, size=8, nf=4)
        reps, step_reps = dict(warmup=1, repeats=2), dict(warmup=1, repeats=1)
        args.rounds = 1
    # --quick: k = 4 (its step compiles in seconds; k = 0 takes a minute even at tiny sizes).
    args.k = args.k or ([4] if args.quick else [0, 2, 4])
    args.step_k = args.step_k or ([4] if args.quick else [0])

    import jax

    if args.cache_dir:
        jax.config.update("jax_compilation_cache_dir", args.cache_dir)
    if args.serve == "layer":
        return layer_server(layer)
    if args.serve == "step":
        return step_server(args.k[0], sizes, chunked=args.step_chunked)

    start = time.perf_counter()
    print(f"jax {jax.__version__}, {jax.devices()[0].device_kind}, {os.cpu_count()} CPUs, "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}\n")
    quick = ["--quick"] if args.quick else []
    if "flags" in args.only:
        names = known_cpu_flags()
        print(f"### The {len(names)} xla_cpu_* flags of this jaxlib\n\n"
              + ", ".join(f"`{n}`" for n in names) + "\n", flush=True)
    if "layer" in args.only:
        layer_section(layer, **reps)
        grad_check_section()
    if "chunks" in args.only:
        chunk_section(stages, **reps)
    if "layer-flags" in args.only:
        flags_section("One layer", list(FLAG_SETS)[:2 if args.quick else None],
                      ["--serve", "layer", *quick], args.cache_dir,
                      ["fwd", "dx", "dw", "dw chunked"], rounds=args.rounds, warmup=2,
                      repeats=reps["repeats"] // 2)
    if "step" in args.only:
        step_section(args.k, sizes, **step_reps)
    if "step-flags" in args.only:
        names = list(FLAG_SETS) if args.step_flags == "all" else args.step_flags.split(",")
        names = ["default"] + [n for n in names if n != "default"]
        chunked = ["--step-chunked"] if args.step_chunked else []
        columns = ["order 1", "order 2"] + (["order 1 chunked", "order 2 chunked"]
                                            if args.step_chunked else [])
        for k in args.step_k:
            flags_section(f"Whole step, k={k}", names,
                          ["--serve", "step", "--k", str(k), *chunked, *quick], args.cache_dir,
                          columns, rounds=args.rounds, warmup=step_reps["warmup"],
                          repeats=max(1, step_reps["repeats"] // 2))
    print(f"total {time.perf_counter() - start:.0f} s")
    return None


if __name__ == "__main__":
    main()
