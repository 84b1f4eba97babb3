"""The rules of the protocol ``docs/protocols/sde_flow_fair.md``, applied to the Hypernet-SDE-Flow
study's records.

A record is a model's entry of the study's ``metrics.json`` (its ``per_seed`` list, each seed's
MSE matrix and :func:`jaxcl.core.metrics.error_summary`). A claim is a list of tested comparisons
``A - B`` on one metric, paired by seed, each with a predicted sign or an equivalence within
:data:`DELTA`. Every tested comparison whose two models are present is one family: its p-values
(two-sided paired t; for an equivalence, TOST's, the larger of the two one-sided p-values
against ``+-DELTA``) are adjusted by Holm's step-down procedure (:func:`holm`), and a comparison
goes the claim's way, against it, or is not shown, as the protocol says (:func:`outcome`). A
claim holds when all of its comparisons go its way, fails when any goes against it, and is
inconclusive otherwise, or when a model it names did not learn (:func:`learned`). The same rules
serve the results page (:mod:`experiments.sde_flow_fair_page`) and the main job, which applies
them to the models it ran.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy import stats

from jaxcl.io.records import ci95

METRICS = ("forgetting_t0", "mean_forgetting", "final_mse", "diagonal_mse")
"""The per-seed scalars compared (:func:`jaxcl.core.metrics.error_summary`): lower is better."""
DELTA = 0.01
"""The equivalence margin, in MSE units (the points are standardised per task)."""
LEARNED_MSE = 0.5
"""A model learned the stream if the mean over seeds of its ``diagonal_mse`` is below this."""
ALPHA = 0.05
"""The family-wise error rate."""

GOES, AGAINST, NOT_SHOWN, NOT_LEARNED = ("goes its way", "goes against", "not shown",
                                         "inconclusive (did not learn)")

Records = Mapping[str, Mapping[str, Any]]
"""Model name -> its record."""


@dataclasses.dataclass(frozen=True)
class Test:
    """``a - b`` on ``metric``, predicted ``"<"`` (below 0), ``">"`` (above 0) or ``"~"``
    (within ``+-DELTA``)."""

    a: str
    b: str
    metric: str
    predicted: str

    def __str__(self) -> str:
        side = {"<": "< 0", ">": "> 0", "~": f"within ±{DELTA:g}"}[self.predicted]
        return f"{self.a} - {self.b}, {self.metric} {side}"


@dataclasses.dataclass(frozen=True)
class Claim:
    number: str
    text: str
    tests: tuple[Test, ...]

    @property
    def models(self) -> set[str]:
        return {m for t in self.tests for m in (t.a, t.b)}


def _both(a: str, b: str, *metrics: str, predicted: str = "<") -> tuple[Test, ...]:
    return tuple(Test(a, b, m, predicted) for m in metrics)


R = "repair_order1"
CLAIMS = (
    Claim("1", "The study's model forgets task 0 more than the MLP (the published failure)",
          _both("hypernet_sde_flow", "mlp", "forgetting_t0", predicted=">")),
    Claim("2", "The repair forgets less than the MLP (the exploratory headline)",
          _both(R, "mlp", "forgetting_t0", "mean_forgetting")),
    Claim("3", "The repair forgets less and ends lower than a task-conditioned MLP (the same "
          "task identity)", _both(R, "mlp_task", "mean_forgetting", "final_mse")),
    Claim("4", "... than a task-conditioned MLP with as many parameters",
          _both(R, "mlp_task_wide", "mean_forgetting", "final_mse")),
    Claim("5", "... than replay given the same floats per task",
          _both(R, "replay_mlp_task", "mean_forgetting", "final_mse")),
    Claim("6", "The flow and SDEs help: the repair ends lower than a hypernetwork over the plain "
          "MLP with the same regulariser", _both(R, "hnet_mlp_order1", "final_mse")),
    Claim("7", "The look-ahead helps", _both(R, "repair_none", "mean_forgetting")),
    Claim("8", "First and second order are equivalent",
          _both("repair_order2", R, "mean_forgetting", "final_mse", predicted="~")),
    Claim("9", "The repair adds something over evaluating each task with its stored weights",
          _both(R, "oracle_stored", "final_mse")),
)
"""The protocol's claims and their tested comparisons, in its order."""

DESCRIPTIVE = tuple(dict.fromkeys(
    [(t.a, t.b) for c in CLAIMS for t in c.tests] + [("hnet_mlp_order2", "hnet_mlp_order1")]))
"""The pairs reported on every metric beside the tested family, without a test."""


def per_seed(record: Mapping[str, Any], metric: str) -> dict[int, float]:
    return {int(r["seed"]): float(r[metric]) for r in record["per_seed"]}


def learned(record: Mapping[str, Any]) -> bool:
    """Whether the mean over seeds of the model's ``diagonal_mse`` is below :data:`LEARNED_MSE`."""
    return float(np.mean(list(per_seed(record, "diagonal_mse").values()))) < LEARNED_MSE


@dataclasses.dataclass(frozen=True)
class Paired:
    """``a - b`` over the seeds both hold: the mean difference, its 95 % interval's half-width
    (``None`` for one seed), the two-sided paired-t p-value and TOST's p-value against
    ``+-DELTA`` (``nan`` for one seed)."""

    diff: float
    half: float | None
    p: float
    p_tost: float
    seeds: int

    def cell(self, digits: int = 4) -> str:
        half = "—" if self.half is None else f"{self.half:.{digits}f}"
        return f"{self.diff:+.{digits}f} ± {half}"

    def interval(self, digits: int = 4) -> str:
        if self.half is None:
            return "—"
        return f"[{self.diff - self.half:+.{digits}f}, {self.diff + self.half:+.{digits}f}]"


def paired(a: Mapping[int, float], b: Mapping[int, float], delta: float = DELTA) -> Paired:
    """Paired by seed: ``t = mean(d) / (s_d / sqrt(n))``, ``s_d`` with ddof 1, ``n - 1`` degrees
    of freedom; TOST's p is ``max(P(T > (mean + delta) / se), P(T < (mean - delta) / se))``."""
    d = np.array([a[s] - b[s] for s in a if s in b], dtype=float)
    n, mean = len(d), float(d.mean())
    if n < 2:
        return Paired(mean, None, float("nan"), float("nan"), n)
    se = float(np.std(d, ddof=1)) / np.sqrt(n)
    if se == 0.0:  # identical differences: certain
        p = 0.0 if mean != 0.0 else 1.0
        p_tost = 0.0 if abs(mean) < delta else 1.0
    else:
        p = float(2 * stats.t.sf(abs(mean) / se, n - 1))
        p_tost = float(max(stats.t.sf((mean + delta) / se, n - 1),
                           stats.t.cdf((mean - delta) / se, n - 1)))
    return Paired(mean, ci95(d), p, p_tost, n)


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjustment: with ``p_(1) <= ... <= p_(m)``,
    ``adj_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))``, returned in the input's order."""
    order = np.argsort(pvalues, kind="stable")
    m, running, out = len(pvalues), 0.0, [0.0] * len(pvalues)
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


@dataclasses.dataclass(frozen=True)
class Result:
    test: Test
    paired: Paired
    p_adjusted: float
    outcome: str


def outcome(test: Test, p: Paired, p_adjusted: float, ok: bool) -> str:
    """The protocol's reading of one tested comparison (module docstring)."""
    if not ok:
        return NOT_LEARNED
    if p.half is None:
        return NOT_SHOWN
    if test.predicted == "~":
        if p_adjusted < ALPHA:
            return GOES
        outside = p.diff - p.half > DELTA or p.diff + p.half < -DELTA
        return AGAINST if outside else NOT_SHOWN
    if p_adjusted >= ALPHA or p.diff == 0.0:
        return NOT_SHOWN
    return GOES if (p.diff < 0) == (test.predicted == "<") else AGAINST


def results(records: Records) -> dict[Test, Result]:
    """Every tested comparison whose two models are in ``records``, Holm-adjusted together."""
    tests = [t for c in CLAIMS for t in c.tests if t.a in records and t.b in records]
    pairs = [paired(per_seed(records[t.a], t.metric), per_seed(records[t.b], t.metric))
             for t in tests]
    raw = [p.p_tost if t.predicted == "~" else p.p for t, p in zip(tests, pairs)]
    raw = [1.0 if np.isnan(v) else v for v in raw]
    adjusted = holm(raw) if raw else []
    return {t: Result(t, p, adj, outcome(t, p, adj, learned(records[t.a])
                                         and learned(records[t.b])))
            for t, p, adj in zip(tests, pairs, adjusted)}


def verdict(claim: Claim, found: Mapping[Test, Result]) -> str | None:
    """``holds``, ``fails`` or ``inconclusive`` (``None`` when a model it names did not run)."""
    if not all(t in found for t in claim.tests):
        return None
    outcomes = [found[t].outcome for t in claim.tests]
    if NOT_LEARNED in outcomes:
        return "inconclusive (a model did not learn)"
    if AGAINST in outcomes:
        return "fails"
    return "holds" if all(o == GOES for o in outcomes) else "inconclusive"


def descriptive(records: Records) -> list[tuple[str, str, str, Paired]]:
    """``(a, b, metric, paired)`` for every :data:`DESCRIPTIVE` pair present, on every metric."""
    return [(a, b, m, paired(per_seed(records[a], m), per_seed(records[b], m)))
            for a, b in DESCRIPTIVE if a in records and b in records for m in METRICS]


def ratio(records: Records, a: str, b: str, metric: str) -> float | None:
    """``mean_a / mean_b`` of ``metric``, only where both models' 95 % intervals exclude 0."""
    means = []
    for name in (a, b):
        values = list(per_seed(records[name], metric).values())
        half = ci95(values)
        mean = float(np.mean(values))
        if half is None or abs(mean) <= half:
            return None
        means.append(mean)
    return means[0] / means[1]
