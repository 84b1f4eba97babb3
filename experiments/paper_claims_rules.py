"""The rules of the protocol ``docs/protocols/paper_claims.md``, applied to run records.

Each of the paper's claims is a list of comparisons, each paired by seed over a run's records
(``metrics.json``): the mean of the per-seed differences in percentage points with its 95 %
Student-t interval (:func:`jaxcl.io.records.paired`, ddof 1). A comparison goes the claim's way,
against it, or neither, as its interval says; a claim *holds* when all of its comparisons go its
way, *fails* when any goes against it, and is *inconclusive at this scale* otherwise. A
comparison that involves a strategy that did not learn its stream (:func:`learned`) is
inconclusive whatever its interval. The rules are those written in the protocol before its runs;
this module only applies them, so that the page (:mod:`experiments.paper_claims_page`) states
verdicts no one chose by reading the numbers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxcl.io.records import paired

Records = Mapping[str, Mapping[str, Any]]
"""Run folder name -> its ``metrics.json``."""

LEARNED = 0.70
"""A 2-way experience is learned at this mean learning accuracy (chance 0.5)."""
LEARNED_5WAY = 0.50
"""A 5-way experience (the freeze-depth streams) is learned at this one (chance 0.2)."""
MARGIN = 2.0
"""The orders' equivalence margin, in points of ACA."""

AS_CLAIMED, AGAINST, UNCLEAR, NOT_LEARNED = (
    "as claimed", "against", "unclear", "inconclusive (did not learn)")


def per_seed(metrics: Mapping[str, Any], label: str, key: str) -> dict[int, float]:
    """``{seed: value}`` of a strategy's per-seed scalar ``key`` (``aca``, ``forgetting``, ...)."""
    return {r["seed"]: float(r[key]) for r in metrics["strategies"][label]["per_seed"]}


def learning(metrics: Mapping[str, Any], label: str, i: int) -> dict[int, float]:
    """``{seed: R[i][i]}``: the learning accuracy of experience ``i``."""
    return {r["seed"]: float(r["accuracy_matrix"][i][i])
            for r in metrics["strategies"][label]["per_seed"]}


def learned(metrics: Mapping[str, Any], label: str, floor: float = LEARNED,
            experiences: tuple[int, ...] | None = None) -> bool:
    """Whether the mean over seeds of ``R[i][i]`` reaches ``floor`` for every experience ``i``
    (of ``experiences``; all when ``None``)."""
    matrix = np.asarray(metrics["strategies"][label]["accuracy_matrix"])
    which = range(len(matrix)) if experiences is None else experiences
    return all(matrix[i, i] >= floor for i in which)


def minus(a: Mapping[int, float], b: Mapping[int, float]) -> dict[int, float]:
    """Per-seed ``a - b`` over the seeds both hold."""
    return {s: a[s] - b[s] for s in a if s in b}


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One pre-registered comparison: ``a - b`` paired by seed, in points."""

    what: str
    diff: float
    half: float | None
    seeds: int
    outcome: str
    note: str = ""

    def cell(self) -> str:
        half = "—" if self.half is None else f"{self.half:.1f}"
        return f"{self.diff:+.1f} ± {half}"


def greater(what: str, a: Mapping[int, float], b: Mapping[int, float], *, ok: bool = True,
            note: str = "") -> Comparison:
    """``a - b > 0`` (points, from fractions): as claimed when the interval's lower end is above
    0, against when its upper end is below 0."""
    p = paired({s: 100 * v for s, v in a.items()}, {s: 100 * v for s, v in b.items()})
    half = p["ci95"]
    if not ok:
        outcome = NOT_LEARNED
    elif half is None:
        outcome = UNCLEAR
    elif p["diff"] - half > 0:
        outcome = AS_CLAIMED
    elif p["diff"] + half < 0:
        outcome = AGAINST
    else:
        outcome = UNCLEAR
    return Comparison(what, p["diff"], half, p["seeds"], outcome, note)


def close(what: str, a: Mapping[int, float], b: Mapping[int, float], *, margin: float = MARGIN,
          ok: bool = True) -> Comparison:
    """``|a - b| < margin`` points: as claimed when the whole interval is inside the margin,
    against when it is wholly outside."""
    c = greater(what, a, b, ok=ok)
    if c.outcome == NOT_LEARNED or c.half is None:
        return c
    lo, hi = c.diff - c.half, c.diff + c.half
    outcome = (AS_CLAIMED if -margin < lo and hi < margin else
               AGAINST if lo > margin or hi < -margin else UNCLEAR)
    return dataclasses.replace(c, outcome=outcome, note=f"equivalence margin ±{margin:g} points")


def fact(what: str, holds: bool, note: str) -> Comparison:
    """A comparison of the records with no interval (e.g. memory bytes)."""
    return Comparison(what, float("nan"), None, 0, AS_CLAIMED if holds else AGAINST, note)


def verdict(comparisons: list[Comparison]) -> str:
    """``holds`` when every comparison goes the claim's way, ``fails`` when any goes against it,
    else ``inconclusive at this scale``."""
    outcomes = [c.outcome for c in comparisons]
    if AGAINST in outcomes:
        return "fails"
    if all(o == AS_CLAIMED for o in outcomes):
        return "holds"
    return "inconclusive at this scale"


@dataclasses.dataclass(frozen=True)
class Claim:
    """One of the paper's claims, its source, and the runs its comparisons read."""

    number: str
    text: str
    source: str
    runs: tuple[str, ...]


CLAIMS = (
    Claim("1", "HN-k forgets far less than Naive and EWC", "Table 2", ("split_fmnist", "mlp_split")),
    Claim("2", "HN-k reaches a higher ACA than LR-k at the same k, at a fraction of LR-k's memory",
          "Tables 2 and 6", ("split_fmnist", "mlp_split", "mlp_noisy")),
    Claim("3", "On the noisy stream LR-k degrades while HN-k holds", "Table 1, Figure 7",
          ("mlp_noisy",)),
    Claim("4a", "The look-ahead improves ACA", "Table 4", ("mlp_lookahead",)),
    Claim("4b", "First- and second-order look-ahead are close", "Table 5", ("mlp_orders",)),
    Claim("5", "Freezing deeper helps only when the new data is similar or simpler", "Figure 4",
          ("mlp_freeze_similar", "mlp_freeze_simpler", "mlp_freeze_harder")),
)
"""The claims and the runs their comparisons read (the protocol as amended: R1 on the slim
ResNet, the rest on the 100-100 MLP)."""

MODELS = {"split_fmnist": "ResNet", "mlp_split": "MLP", "mlp_noisy": "MLP"}


def comparisons(claim: Claim, records: Records) -> list[Comparison]:
    """The protocol's comparisons for ``claim`` over ``records``."""
    return _RULES[claim.number](records)


def _claim1(records):
    out = []
    for run, depths in (("split_fmnist", (2,)), ("mlp_split", (1, 2))):
        m = records[run]
        for k in depths:
            hn = per_seed(m, f"HN-{k}", "forgetting")
            for base in ("Naive", "EWC"):
                ok = learned(m, base) and learned(m, f"HN-{k}")
                ratio = m["strategies"][f"HN-{k}"]["forgetting"] / max(
                    m["strategies"][base]["forgetting"], 1e-9)
                out.append(greater(f"F({base}) - F(HN-{k}), {MODELS[run]}",
                                   per_seed(m, base, "forgetting"), hn, ok=ok,
                                   note=f"F(HN-{k}) / F({base}) = {ratio:.2f}"))
    return out


def _claim2(records):
    out = []
    pairs = [("split_fmnist", "HN-2", "LR-2", "ResNet, Split-Fashion-MNIST")]
    pairs += [("mlp_split", f"HN-{k}", f"LR-{k}", "MLP, Split-Fashion-MNIST") for k in (1, 2)]
    pairs += [("mlp_noisy", f"HN-{k} normal", f"LR-{k} normal", "MLP, the normal stream")
              for k in (1, 2)]
    for run, hn, lr, where in pairs:
        m = records[run]
        ok = learned(m, hn) and learned(m, lr)
        out.append(greater(f"ACA({hn}) - ACA({lr}), {where}", per_seed(m, hn, "aca"),
                           per_seed(m, lr, "aca"), ok=ok))
        mem_hn, mem_lr = (m["strategies"][x]["memory_bytes"] for x in (hn, lr))
        out.append(fact(f"memory({hn}) < memory({lr}), {where}", mem_hn < mem_lr,
                        f"{mem_hn / 2**20:.2f} MiB against {mem_lr / 2**20:.2f} MiB "
                        f"({mem_hn / mem_lr:.2f}x)"))
    return out


def _claim3(records):
    m = records["mlp_noisy"]
    out = []
    for k in (1, 2):
        drop = {}
        for kind in ("LR", "HN"):
            drop[kind] = minus(per_seed(m, f"{kind}-{k} normal", "aca"),
                               per_seed(m, f"{kind}-{k} noisy", "aca"))
        ok = all(learned(m, f"{kind}-{k} {s}") for kind in ("LR", "HN")
                 for s in ("normal", "noisy"))
        means = {kind: 100 * np.mean(list(d.values())) for kind, d in drop.items()}
        out.append(greater(f"D(LR-{k}) - D(HN-{k}), D = ACA(normal) - ACA(noisy), MLP",
                           drop["LR"], drop["HN"], ok=ok,
                           note=f"D(LR-{k}) = {means['LR']:+.1f}, D(HN-{k}) = "
                                f"{means['HN']:+.1f} points"))
    return out


def _claim4a(records):
    m = records["mlp_lookahead"]
    on, off = "HN-1 with look-ahead (order 1)", "HN-1 without look-ahead"
    return [greater("ACA(order 1) - ACA(no look-ahead), HN-1, MLP", per_seed(m, on, "aca"),
                    per_seed(m, off, "aca"), ok=learned(m, on) and learned(m, off))]


def _claim4b(records):
    m = records["mlp_orders"]
    one, two = "HN-1 order 1", "HN-1 order 2"
    return [close("ACA(order 2) - ACA(order 1), HN-1, MLP", per_seed(m, two, "aca"),
                  per_seed(m, one, "aca"), ok=learned(m, one) and learned(m, two))]


FREEZE_STREAMS = {"mlp_freeze_similar": "S (Fashion-MNIST, then other Fashion-MNIST classes)",
                  "mlp_freeze_simpler": "E (Fashion-MNIST, then digits)",
                  "mlp_freeze_harder": "H (digits, then Fashion-MNIST)"}
DEEPEST = "Frozen-2"
"""The MLP's deepest freeze: both hidden layers."""


def freeze_drop(metrics: Mapping[str, Any]) -> dict[int, float]:
    """``{seed: LA2(Frozen-0) - LA2(Frozen-2)}``: what freezing every hidden layer costs the
    second experience."""
    return minus(learning(metrics, "Frozen-0", 1), learning(metrics, DEEPEST, 1))


def freeze_learned(metrics: Mapping[str, Any]) -> bool:
    """M4's condition (the protocol's first amendment): every Frozen-k learned its first
    experience, Frozen-0 both."""
    return learned(metrics, "Frozen-0", LEARNED_5WAY) and all(
        learned(metrics, label, LEARNED_5WAY, (0,)) for label in metrics["strategies"])


def _claim5(records):
    runs = list(FREEZE_STREAMS)
    drops = {run: freeze_drop(records[run]) for run in runs}
    ok = {run: freeze_learned(records[run]) for run in runs}
    harder = "mlp_freeze_harder"
    return [greater(f"D(H) - D({other}), D = LA2(Frozen-0) - LA2({DEEPEST}), MLP",
                    drops[harder], drops[run], ok=ok[harder] and ok[run])
            for run, other in (("mlp_freeze_similar", "S"), ("mlp_freeze_simpler", "E"))]


_RULES = {"1": _claim1, "2": _claim2, "3": _claim3, "4a": _claim4a, "4b": _claim4b,
          "5": _claim5}


SAME_RUN = (("mlp_split", "HN-1"), ("mlp_lookahead", "HN-1 with look-ahead (order 1)"),
            ("mlp_orders", "HN-1 order 1"))
"""The protocol's one run recorded three times: their numbers must be equal."""


def same_run_differences(records: Records) -> list[str]:
    """Where the three records of :data:`SAME_RUN` differ (empty: they agree exactly)."""
    out = []
    (first_run, first_label), *rest = [x for x in SAME_RUN if x[0] in records]
    ref = records[first_run]["strategies"][first_label]["per_seed"]
    for run, label in rest:
        other = records[run]["strategies"][label]["per_seed"]
        for a, b in zip(ref, other):
            if a["accuracy_matrix"] != b["accuracy_matrix"]:
                out.append(f"{run} {label} seed {b['seed']}: its accuracy matrix differs from "
                           f"{first_run}'s")
    return out
