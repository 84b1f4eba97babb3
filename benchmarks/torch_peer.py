"""jaxcl's compiled training steps against the same steps written as a PyTorch user writes them.

The peer follows the reference implementation of Hemati et al., "Partial Hypernetworks for
Continual Learning" (CoLLAs 2023; ``hyper_cl/strategies/hyper_alg_reg_NM.py`` and
``hyper_cl/models/hyper_networks/hyper_resnet18_sp_v2_SH.py``): a functional main network whose
upper part gets its weights from ``torch.func.functional_call`` with the hypernetwork's outputs
(the reference's ``functorch.make_functional``), the look-ahead step as
``torch.autograd.grad(L_CE, psi, create_graph=order == 2)``, an SGD virtual step
``psi' = psi - lr g1`` as a list of tensors, the output regulariser as a Python loop over the
previous tasks comparing ``parameters_to_vector`` of the generated weights, and ``torch.optim.Adam``.

Both sides are the same network at the same sizes, so that their FLOPs compare (the parameter
counts are printed): slim ResNet-18 with ``nf = 20`` split at freeze depth ``k`` (the stem and the
first ``k`` stages form the lower part ``g_phi``, an ordinary module; the rest and the 5-way
classifier form ``h_omega``, whose weights are generated once per batch from the task embedding),
batch statistics in every normalisation (jaxcl's ``norm="batch"``, ``split_model``'s default;
``BatchNorm2d(track_running_stats=False)`` in torch), NCHW in torch and NHWC in jaxcl. The
hypernetwork is jaxcl's ``HypernetConfig(num_tasks=20, chunk_dim=8, new_task_init="copy_prev")``:
embedding 32, trunk 50 -> 32 (ReLU),
channel-wise conv heads with lookup dimension d = 8, a linear head for the classifier kernel,
per-task tables for normalisation scales and shifts and the classifier bias.

Rows, on a batch of 64 images of 32x32x3 and 5 classes:

* ``first``: the first-experience step, plain gradients of ``L_CE`` for ``phi`` and ``psi``.
* ``order 1`` / ``order 2``: a later-experience step of task 5, ``phi`` frozen (``g_phi(x)`` under
  ``torch.no_grad()``), the look-ahead gradient of ``L_CE(psi) + 0.5 L_H(psi')``. The regulariser
  runs over the 5 real previous tasks 0..4 on both sides, one task after another: jaxcl's
  ``max_prev_tasks`` (a fixed slot count, padded and masked) is set to 5, the real number, so that
  neither side computes more previous tasks than the other whatever jaxcl does with padding slots
  (``prev_chunk="auto"``, the default, loops over the real slots when the hypernetwork generates
  at least 100,000 floats a task, k < 4 here, and evaluates every slot at once below, k = 4), and
  the torch loop, like the reference's, generates each one in turn.
* ``Naive``: fine-tune the whole ResNet with one linear head per task (20 heads), task 0.

Each row builds both steps on the same inputs and then calls them alternately, jaxcl then torch
(jaxcl once per ResNet convolution in ``--convs``: by default ``auto``, the library's default,
chunked filter gradients on CPU, and ``xla``, lax's own convolution),
``--warmup`` + ``--repeats`` times each; the table reports the median wall time of the timed calls,
their ratio, and jaxcl's compile time apart. ``GFLOP`` is, for jaxcl, XLA's count of the compiled
program (``cost_analysis()["flops"]``, every operation; the regulariser's loop over the 5
previous-task slots, which XLA counts once, added 4 more times) and, for torch, the convolutions and
matrix products of one more call (``torch.utils.flop_counter``, backward and double backward
included, elementwise operations not counted). jaxcl's step is the library's ``train_step`` under
``jax.jit`` with the state donated, as the training loop calls it. The torch peer is eager on the
CPU with ``torch.get_num_threads()`` left at its default (printed; 2 on the 2-core machine of
the README) and ``OMP_WAIT_POLICY=PASSIVE`` unless set (see below); ``--peer reference`` also
reproduces two costs of the reference's literal step that a lean step avoids (``(L_CE + L_H)
.backward()`` back-propagates ``L_CE`` a second time, and the cosine of the two gradients takes
one more ``autograd.grad`` of ``L_H``); ``--peer batched`` is the fastest formulation a user
would write: the lean step with every previous task's weights generated in one call (each head
one product over the stacked task ids, no Python loop), targets likewise. ``torch.compile`` is
not used: order 2 needs a double backward, which it does not compile.

    pip install -e ".[bench]"                    # torch (CPU) for this script only
    python benchmarks/torch_peer.py              # k = 0..4 and Naive
    python benchmarks/torch_peer.py --quick      # tiny sizes, a smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import os
import statistics
import time

# Idle OpenMP workers sleep instead of spinning: on a CPU shared with other processes (and with
# XLA's own threads, called in alternation here) spinning workers made torch's step 4-10x slower
# and noisy (measured at k = 3, 2 threads, load 6 on 2 cores); the thread count stays the default.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.nn.utils import parameters_to_vector
from torch.utils.flop_counter import FlopCounterMode

from jaxcl import Batch, HypernetConfig, PartialHypernet
from jaxcl.core.hypernet import count_params
from jaxcl.core.regularizers import output_regularizer_real_slots
from jaxcl.learners import StrategyConfig, build_strategy
from jaxcl.models import CONVS, split_model

NUM_TASKS, CLASSES, TASK, LR, COEF = 20, 5, 5, 1e-3, 0.5


# ---------------------------------------------------------------------------------------------
# The PyTorch peer: the reference's modules, at jaxcl's sizes.


class BasicBlock(nn.Module):
    """Two 3x3 convs with batch statistics and a (projected when needed) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out, track_running_stats=False)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out, track_running_stats=False)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                          nn.BatchNorm2d(c_out, track_running_stats=False))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetPart(nn.Module):
    """Stages ``first .. last - 1`` of the slim ResNet-18, with the stem when ``first == 0`` and
    the pooled linear classifier when ``classifier``; jaxcl's ``SlimResNet18`` part."""

    def __init__(self, nf: int, first: int, last: int, *, stem: bool, classifier: bool):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, nf, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(nf, track_running_stats=False),
                                  nn.ReLU()) if stem else None
        blocks, c_in = [], nf * 2 ** max(first - 1, 0)
        for stage in range(first, last):
            c_out = nf * 2 ** stage
            for block in range(2):
                blocks.append(BasicBlock(c_in, c_out, 2 if (stage > 0 and block == 0) else 1))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.classifier = nn.Linear(8 * nf, CLASSES) if classifier else None

    def forward(self, x):
        if self.stem is not None:
            x = self.stem(x)
        x = self.blocks(x)
        if self.classifier is not None:
            x = self.classifier(x.mean(dim=(2, 3)))
        return x


class ConvHead(nn.Module):
    """Channel-wise generation: ``W[c] = A [h; l_c] + b`` (the reference's ``GenHead``)."""

    def __init__(self, shape: torch.Size, hidden: int, chunk_dim: int):
        super().__init__()
        self.shape = shape
        self.lookup = nn.Parameter(torch.randn(shape[0], chunk_dim))
        self.linear = nn.Linear(hidden + chunk_dim, shape[1:].numel())

    def forward(self, h, task_id):
        lead = h.shape[:-1]  # () for one task, (n,) for n tasks at once
        inputs = torch.cat([h.unsqueeze(-2).expand(*lead, self.shape[0], h.shape[-1]),
                            self.lookup.expand(*lead, *self.lookup.shape)], dim=-1)
        return self.linear(inputs).view(*lead, *self.shape)


class LinearHead(nn.Module):
    """``W = reshape(A h + b)`` (the reference's ``LinearLayer``)."""

    def __init__(self, shape: torch.Size, hidden: int):
        super().__init__()
        self.shape = shape
        self.linear = nn.Linear(hidden, shape.numel())

    def forward(self, h, task_id):
        return self.linear(h).view(*h.shape[:-1], *self.shape)


class TableHead(nn.Module):
    """A per-task table (the reference's ``LinHead``)."""

    def __init__(self, shape: torch.Size, fill: float):
        super().__init__()
        self.table = nn.Parameter(torch.full((NUM_TASKS, *shape), fill))

    def forward(self, h, task_id):
        return self.table[task_id]


class WeightGenerator(nn.Module):
    """``t -> {name: weight}`` of the target module: embedding, trunk, one head per weight."""

    def __init__(self, target: nn.Module, emb: int = 32, hidden=(50, 32), chunk_dim: int = 8):
        super().__init__()
        self.embedding = nn.Parameter(torch.randn(NUM_TASKS, emb))
        widths = (emb, *hidden)
        self.trunk = nn.Sequential(*[m for a, b in itertools.pairwise(widths)
                                     for m in (nn.Linear(a, b), nn.ReLU())])
        self.names = [n for n, _ in target.named_parameters()]
        scales = {f"{n}.weight" for n, m in target.named_modules() if isinstance(m, nn.BatchNorm2d)}
        heads = {}
        for name, p in target.named_parameters():
            if p.ndim == 4:
                head = ConvHead(p.shape, hidden[-1], chunk_dim)
            elif p.ndim == 2:
                head = LinearHead(p.shape, hidden[-1])
            else:  # normalisation scales start at 1, shifts and the classifier bias at 0
                head = TableHead(p.shape, 1.0 if name in scales else 0.0)
            heads[name.replace(".", ":")] = head
        self.heads = nn.ModuleDict(heads)

    def forward(self, task_id):
        """The target's weights for a task id, or stacked on a leading axis for a tensor of
        ids (every head generates all of them in one product)."""
        h = self.trunk(self.embedding[task_id])
        return {n: self.heads[n.replace(".", ":")](h, task_id) for n in self.names}


def _rows(weights: dict, n: int) -> torch.Tensor:
    """``n`` tasks' generated weights, one flat row each."""
    return torch.cat([w.reshape(n, -1) for w in weights.values()], dim=1)


@dataclasses.dataclass
class TorchHN:
    """The partial hypernetwork in PyTorch: frozen ``lower``, generated ``upper``, ``hnet``."""

    lower: nn.Module | None
    upper: nn.Module
    hnet: WeightGenerator
    prev: WeightGenerator
    peer: str = "lean"

    @classmethod
    def build(cls, k: int, nf: int, peer: str) -> TorchHN:
        lower = None if k == 0 else ResNetPart(nf, 0, k, stem=True, classifier=False)
        upper = ResNetPart(nf, k, 4, stem=k == 0, classifier=True).requires_grad_(False)
        hnet = WeightGenerator(upper)
        prev = WeightGenerator(upper).requires_grad_(False)
        prev.load_state_dict(hnet.state_dict())
        return cls(lower, upper, hnet, prev, peer)

    def logits(self, feats, task_id):
        return functional_call(self.upper, self.hnet(task_id), (feats,))

    def first_step(self, opt, x, y, task_id):
        """Plain gradients of ``L_CE`` for ``phi`` and ``psi``, one Adam step."""
        opt.zero_grad()
        feats = x if self.lower is None else self.lower(x)
        loss = F.cross_entropy(self.logits(feats, task_id), y)
        loss.backward()
        opt.step()
        return loss.detach()

    def lookahead_step(self, opt, x, y, task_id, prev_tasks, order):
        """``L_CE(psi) + COEF L_H(psi - LR g1)``, ``g1`` a constant for order 1."""
        opt.zero_grad()
        batched, ids = self.peer == "batched", torch.as_tensor(prev_tasks)
        with torch.no_grad():
            feats = x if self.lower is None else self.lower(x)
            targets = (_rows(self.prev(ids), len(prev_tasks)) if batched else
                       [parameters_to_vector(self.prev(t).values()) for t in prev_tasks])
        names, psi = zip(*self.hnet.named_parameters())
        logits = self.logits(feats, task_id)
        loss = F.cross_entropy(logits, y)
        g1 = torch.autograd.grad(loss, psi, create_graph=order == 2,
                                 retain_graph=order == 2 or self.peer == "reference")
        psi2 = {n: p - LR * g for n, p, g in zip(names, psi, g1)}
        if batched:  # every previous task generated at once: no Python loop over them
            reg = ((_rows(functional_call(self.hnet, psi2, (ids,)), len(prev_tasks))
                    - targets) ** 2).sum()
        else:
            reg = sum(((parameters_to_vector(functional_call(self.hnet, psi2, (t,)).values())
                        - target) ** 2).sum() for t, target in zip(prev_tasks, targets))
        reg = COEF * reg / len(prev_tasks)
        if self.peer != "reference":  # one gradient of L_H; the total is g1 + g2
            g2 = torch.autograd.grad(reg, psi)
            for p, a, b in zip(psi, g1, g2):
                p.grad = a.detach() + b
        else:  # the reference: a gradient of L_H for the cosine, then (L_CE + L_H).backward()
            g2 = torch.autograd.grad(reg, psi, retain_graph=True)
            (loss + reg).backward()
        cosine = F.cosine_similarity(torch.cat([g.detach().reshape(-1) for g in g1]),
                                     torch.cat([g.reshape(-1) for g in g2]), dim=0)
        opt.step()
        return loss.detach(), cosine.item()


class TorchNaive(nn.Module):
    """The whole ResNet and one linear head per task (jaxcl's ``MultiHeadClassifier``)."""

    def __init__(self, nf: int):
        super().__init__()
        self.features = ResNetPart(nf, 0, 4, stem=True, classifier=False)
        self.head_kernel = nn.Parameter(torch.randn(NUM_TASKS, 8 * nf, CLASSES) / math.sqrt(8 * nf))
        self.head_bias = nn.Parameter(torch.zeros(NUM_TASKS, CLASSES))

    def step(self, opt, x, y, task_id):
        opt.zero_grad()
        h = self.features(x).mean(dim=(2, 3))
        loss = F.cross_entropy(h @ self.head_kernel[task_id] + self.head_bias[task_id], y)
        loss.backward()
        opt.step()
        return loss.detach()


def n_params(*modules) -> int:
    return sum(p.numel() for m in modules if m is not None for p in m.parameters())


# ---------------------------------------------------------------------------------------------
# The pairs of steps.


def xla_flops(compiled) -> float:
    """XLA's FLOP count of a compiled program (``cost_analysis()``: one dict in jax 0.10.2)."""
    cost = compiled.cost_analysis()
    return sum(c["flops"] for c in cost) if isinstance(cost, list) else cost["flops"]


def regulariser_loop_flops(learner: PartialHypernet, state) -> float:
    """What XLA's count leaves out of a later-experience step: it counts the body of the
    regulariser's loop over the previous-task slots once, and the loop runs it once per chunk of
    ``prev_chunk`` slots holding a real previous task (``benchmarks/lookahead_step.py`` says more)."""
    chunk = learner.prev_chunk
    if chunk is None:  # every slot at once, no loop
        return 0.0
    ids, mask = jnp.arange(chunk, dtype=jnp.int32), jnp.ones((chunk,), bool)

    def reg(psi, psi_prev, ids, mask):  # all arguments: XLA would fold constant targets away
        return output_regularizer_real_slots(learner.hnet, psi, psi_prev, ids, mask, chunk=chunk)

    one = jax.jit(jax.value_and_grad(reg)).lower(state.psi, state.psi_prev, ids, mask).compile()
    return (-(-min(TASK, learner.max_prev_tasks) // chunk) - 1) * xla_flops(one)


def jaxcl_hn(k, kind, x, y, nf, conv):
    """``(compile s, step, state, (psi, phi) parameter counts, FLOPs)`` of one jaxcl HN-k step
    with the ResNet's convolution ``conv``."""
    split = split_model("resnet", k, num_classes=CLASSES, head=True, nf=nf, conv=conv)
    order = 1 if kind == "first" else int(kind[-1])
    learner = PartialHypernet.build(split.upper, split.lower, x, order=order, coef=COEF,
                                    learning_rate=LR, max_prev_tasks=TASK,
                                    hnet_config=HypernetConfig(
                                        num_tasks=NUM_TASKS, chunk_dim=8,
                                        new_task_init="copy_prev"))
    key, data = jax.random.key(0), Batch(x, y)
    state = learner.init(key, x)
    first = kind == "first"
    task = jnp.int32(0 if first else TASK)
    if not first:
        state = learner.end_experience(state, data, task, key)
    state = jax.tree.map(jnp.copy, state)  # psi_prev is psi: donating one buffer twice fails
    step = jax.jit(lambda s: learner.train_step(s, data, task, key, first=first), donate_argnums=0)
    start = time.perf_counter()
    compiled = step.lower(state).compile()
    seconds = time.perf_counter() - start
    counts = (count_params(state.psi), count_params(state.phi))
    flops = xla_flops(compiled) + (0.0 if first else regulariser_loop_flops(learner, state))
    return seconds, compiled, state, counts, flops


def jaxcl_naive(x, y, nf, conv):
    """``(compile s, step, state, (params, 0), FLOPs)`` of jaxcl's Naive step."""
    learner = build_strategy(StrategyConfig.from_label("Naive", nf=nf, conv=conv),
                             num_tasks=NUM_TASKS,
                             classes_per_task=CLASSES, sample_x=x)
    key, data = jax.random.key(0), Batch(x, y)
    state = jax.tree.map(jnp.copy, learner.init(key, x))  # the EWC sums share one zero tree
    step = jax.jit(lambda s: learner.train_step(s, data, jnp.int32(0), key, first=True),
                   donate_argnums=0)
    start = time.perf_counter()
    compiled = step.lower(state).compile()
    seconds = time.perf_counter() - start
    return seconds, compiled, state, (count_params(state.params), 0), xla_flops(compiled)


def torch_step(k, kind, x, y, nf, peer):
    """``(step, (psi, phi) parameter counts)``: a closure of no arguments over fresh models."""
    torch.manual_seed(0)
    xt = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy())
    yt = torch.from_numpy(np.asarray(y).astype(np.int64))
    if kind == "Naive":
        model = TorchNaive(nf)
        opt = torch.optim.Adam(model.parameters(), lr=LR)
        return (lambda: model.step(opt, xt, yt, 0)), (n_params(model), 0)
    hn = TorchHN.build(k, nf, peer)
    counts = (n_params(hn.hnet), n_params(hn.lower))
    if kind == "first":
        lower = [] if hn.lower is None else list(hn.lower.parameters())
        opt = torch.optim.Adam([*hn.hnet.parameters(), *lower], lr=LR)
        return (lambda: hn.first_step(opt, xt, yt, 0)), counts
    if hn.lower is not None:
        hn.lower.requires_grad_(False)
    opt = torch.optim.Adam(hn.hnet.parameters(), lr=LR)
    prev_tasks = torch.randperm(TASK)  # the reference: every previous task, up to its cap of 20
    order = int(kind[-1])
    return (lambda: hn.lookahead_step(opt, xt, yt, TASK, prev_tasks.tolist(), order)), counts


def torch_flops(step) -> float:
    """The convolution and matrix-product FLOPs of one call of a torch step, backward included
    (``torch.utils.flop_counter``; elementwise operations are not counted)."""
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def time_calls(jax_sides, torch_side, *, warmup, repeats):
    """Median seconds per call of each jaxcl ``(compiled, state)`` and of the torch step, called
    in turn on the same inputs (the torch step last)."""
    states = [state for _, state in jax_sides]
    times = [[] for _ in range(len(jax_sides) + 1)]
    for i in range(warmup + repeats):
        for j, (compiled, _) in enumerate(jax_sides):
            start = time.perf_counter()
            states[j], metrics = compiled(states[j])
            jax.block_until_ready((states[j], metrics))
            if i >= warmup:
                times[j].append(time.perf_counter() - start)
        start = time.perf_counter()
        torch_side()
        if i >= warmup:
            times[-1].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="nf=4, 8x8 images, batch 8, k = 3, 1 warm-up and 1 repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--ks", type=int, nargs="+", default=None, help="freeze depths (0..4)")
    parser.add_argument("--peer", choices=("lean", "batched", "reference"), default="lean",
                        help="the torch look-ahead step: lean (one gradient of L_H, a Python "
                             "loop over the previous tasks as the reference's), batched (lean, "
                             "every previous task generated in one call) or the reference's "
                             "literal one (see the docstring)")
    parser.add_argument("--no-naive", dest="naive", action="store_false", help="skip Naive")
    parser.add_argument("--convs", nargs="+", choices=CONVS, default=["auto", "xla"],
                        help="jaxcl's ResNet convolutions to time, each against torch (default: "
                             "auto, the library's default, and xla, lax's own)")
    args = parser.parse_args(argv)
    batch, size, nf, warmup, repeats = 64, 32, 20, args.warmup, args.repeats
    ks = args.ks if args.ks is not None else [0, 1, 2, 3, 4]
    if args.quick:
        batch, size, nf, warmup, repeats = 8, 8, 4, 1, 1
        ks = args.ks if args.ks is not None else [3]
    convs = list(dict.fromkeys(args.convs))
    key_x, key_y = jax.random.split(jax.random.key(0))
    x = jax.random.normal(key_x, (batch, size, size, 3))
    y = jax.random.randint(key_y, (batch,), 0, CLASSES)
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind} x{jax.device_count()}; "
          f"torch {torch.__version__}, torch.get_num_threads() = {torch.get_num_threads()} "
          f"(default), OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}; batch {batch} x "
          f"{size}x{size}x3, nf {nf}, {TASK} previous tasks on both sides (jaxcl "
          f"max_prev_tasks = {TASK}); peer: {args.peer}; jaxcl conv: {', '.join(convs)} (auto "
          f"here: {'chunked' if jax.default_backend() == 'cpu' else 'xla'}); median of "
          f"{repeats} calls after {warmup}, alternating")
    header = ["k", "step", *(f"jaxcl {c} ms" for c in convs), "torch ms",
              *(f"jaxcl {c}/torch" for c in convs), "GFLOP jaxcl, torch",
              f"jaxcl compile s ({', '.join(convs)})", "params psi (jaxcl, torch)",
              "params phi (jaxcl, torch)"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    rows = [(k, kind) for k in ks for kind in ("first", "order 1", "order 2")]
    if args.naive:
        rows.append(("-", "Naive"))
    ratios = []
    for k, kind in rows:
        built = [jaxcl_naive(x, y, nf, c) if kind == "Naive" else jaxcl_hn(k, kind, x, y, nf, c)
                 for c in convs]
        step, tcounts = torch_step(k, kind, x, y, nf, args.peer)
        *t_jax, t_torch = time_calls([(b[1], b[2]) for b in built], step, warmup=warmup,
                                     repeats=repeats)
        ratios.append(t_jax[0] / t_torch)
        _, _, _, jcounts, jflops = built[0]
        cells = [k, kind, *(f"{1e3 * t:.1f}" for t in t_jax), f"{1e3 * t_torch:.1f}",
                 *(f"{t / t_torch:.2f}" for t in t_jax),
                 f"{jflops / 1e9:.2f}, {torch_flops(step) / 1e9:.2f}",
                 ", ".join(f"{b[0]:.1f}" for b in built), f"{jcounts[0]}, {tcounts[0]}",
                 f"{jcounts[1]}, {tcounts[1]}"]
        print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)
    print(f"max jaxcl ({convs[0]})/torch ratio: {max(ratios):.2f}")
    return ratios


if __name__ == "__main__":
    main()
