"""The Hypernet-SDE-Flow study's records and tables: per model, its MSE matrices, forgetting with
intervals over seeds, the latent's collapse metrics and the probes' summaries
(:func:`record`); the paired comparisons it reports (:func:`comparisons`), and its Markdown
tables and sweep figures (:func:`tables`, :func:`sweep_tables`). Statistics over seeds are
:func:`jaxcl.io.records.ci95` and :func:`jaxcl.io.records.paired`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from experiments import sde_flow_fair_rules as rules
from experiments.runner import markdown_table
from experiments.sde_flow_settings import REPLAY_GAMMAS, REPLAY_MEMORY, VIRTUAL_LRS, Config
from jaxcl.core import metrics as cl_metrics
from jaxcl.io import plots
from jaxcl.io.records import ci95
from jaxcl.io.records import paired as paired_by_seed
from jaxcl.learners.sde_flow import PROBE_METRICS
from jaxcl.learners.sde_flow_variant import Variant
from jaxcl.train.loop import RunResult

# The study's forgetting on task 0 (MSE after task 4 minus after task 0).
REFERENCE = {"mlp": 0.0016, "hypernet_sde_flow": 0.3822}
METRICS = rules.METRICS
COLLAPSE = ("z0_std", "sigma", "decoder_gain", "encoder_log_det")
"""The step metrics that show a collapsing latent, summarised per task in ``end_of_task``."""


def record(runs: list[tuple[int, RunResult]]) -> dict[str, Any]:
    per_seed = [{"seed": s, "mse_matrix": r.matrix.tolist(), **cl_metrics.error_summary(r.matrix)}
                for s, r in runs]
    scalars = [{**p, "time_s": r.time_s, "compile_s": r.compile_s}
               for p, (_, r) in zip(per_seed, runs)]
    out: dict[str, Any] = {"mse_matrix": np.mean([r.matrix for _, r in runs], axis=0).tolist()}
    for name in (*METRICS, "time_s", "compile_s"):
        values = np.array([row[name] for row in scalars], dtype=float)
        out[name] = float(values.mean())
        out[f"{name}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        if name in METRICS:
            out[f"{name}_ci95"] = ci95(values)
    out["end_of_task"] = {name: np.mean([_end_of_task(r.step_metrics, name) for _, r in runs],
                                        axis=0).tolist() for name in COLLAPSE}
    probed = [m for m in PROBE_METRICS if m in runs[0][1].step_metrics]
    if probed:
        # The median over seeds: one seed's power iteration can spike for a few steps while its
        # vector turns to a new top direction, and a mean would report that seed alone.
        out["probe"] = {name: {"start_of_task": np.median([_start_of_task(r.step_metrics, name)
                                                           for _, r in runs], axis=0).tolist(),
                               "end_of_task": np.median([_end_of_task(r.step_metrics, name)
                                                         for _, r in runs], axis=0).tolist()}
                        for name in probed}
    out["per_seed"] = per_seed
    return out


def paired(records: dict[str, dict], model: str, against: str,
           metric: str = "forgetting_t0") -> dict[str, Any]:
    """``model`` against ``against``, paired by seed (:func:`jaxcl.io.records.paired`): the mean
    of the per-seed differences of ``metric`` (``model`` minus ``against``), its 95 % interval
    (``None`` for one seed) and in how many seeds ``model`` is lower."""
    a, b = ({row["seed"]: row[metric] for row in records[name]["per_seed"]}
            for name in (model, against))
    return {"model": model, "against": against, "metric": metric, **paired_by_seed(a, b)}


def _interval(value: float, half: float | None, digits: int = 4) -> str:
    return "—" if half is None else f"[{value - half:+.{digits}f}, {value + half:+.{digits}f}]"


def comparisons(config: Config, records: dict[str, dict]) -> list[dict[str, Any]]:
    """The paired comparisons a run reports: every model against the MLP; in the replay sweep
    every cell against the study's (all points, the run's ``gamma``); in the virtual-step sweep
    order 2 against order 1 at each virtual step."""
    out = [paired(records, name, "mlp") for name in records if name != "mlp" and "mlp" in records]
    if config.sweep == "replay":
        study = f"replay_m{config.model.memory_per_task}_g{config.weights.replay:g}"
        if study in records:
            out += [paired(records, name, study) for name in records
                    if name not in ("mlp", study)]
    if config.sweep == "virtual_step":
        out += [paired(records, name, name.replace("_o2_", "_o1_")) for name in records
                if "_o2_" in name]
    return out


def paired_table(rows: list[dict[str, Any]]) -> str:
    return markdown_table(
        ["model", "against", "difference of the task-0 increase", "95 % interval",
         "seeds where lower"],
        [[r["model"], r["against"], f"{r['diff']:+.4f}", _interval(r["diff"], r["ci95"]),
          f"{r['lower_in']}/{r['seeds']}"] for r in rows])


def sweep_tables(config: Config, cells: dict[str, Variant],
                 records: dict[str, dict]) -> tuple[str, bytes | None]:
    """The sweep's own table (Markdown) and figure (PNG; ``None`` without a sweep)."""
    if config.sweep == "none":
        return "", None
    mlp = records["mlp"]["forgetting_t0"]
    if config.sweep == "replay":
        rows = []
        for name, v in cells.items():
            if name == "mlp":
                continue
            w, rec = v.weights, records[name]
            rows.append([name, f"{min(w.memory, v.memory_per_task):g}", f"{w.replay:g}",
                         f"{w.separation:g}", "per task" if w.anneal_per_task else "once",
                         "learned" if w.sde_gate else "identity",
                         _pm(rec, "forgetting_t0"), _interval(rec["forgetting_t0"],
                                                              rec["forgetting_t0_ci95"]),
                         _pm(rec, "mean_forgetting"),
                         _interval(rec["mean_forgetting"], rec["mean_forgetting_ci95"])])
        table = markdown_table(["cell", "memory per task", "gamma", "delta", "beta ramp", "SDEs",
                                "task-0 increase", "95 % interval", "mean t0..3",
                                "95 % interval"], rows)
        memory = [m for m in REPLAY_MEMORY if m <= config.model.memory_per_task]
        curves = {f"gamma {g:g}": [records[f"replay_m{m}_g{g:g}"]["forgetting_t0"]
                                   for m in memory] for g in REPLAY_GAMMAS}
        errors = {f"gamma {g:g}": [records[f"replay_m{m}_g{g:g}"]["forgetting_t0_ci95"] or 0.0
                                   for m in memory] for g in REPLAY_GAMMAS}
        figure = plots.lines(memory, curves, "replayed points per finished task",
                             "task-0 forgetting (MSE increase)",
                             f"Hypernet-SDE-Flow, {config.run.epochs} epochs a task, "
                             f"{len(config.run.seeds)} seeds: mean, 95 % interval",
                             errors=errors, xscale="symlog", yscale="symlog",
                             references={"MLP (ours)": mlp,
                                         "study's model (published)": REFERENCE[
                                             "hypernet_sde_flow"]})
        return "## The replay sweep\n\n" + table, figure
    rows, curves, errors = [], {}, {}
    for name, v in cells.items():
        if name == "mlp":
            continue
        rec = records[name]
        probe = rec["probe"]
        rows.append([name, v.order, v.virtual, f"{v.weights.virtual_lr:g}",
                     _pm(rec, "forgetting_t0"), _interval(rec["forgetting_t0"],
                                                          rec["forgetting_t0_ci95"]),
                     *(f"{probe[m][when][1]:.3g}" for m in ("step_curvature", "correction_ratio",
                                                            "correction_cosine")
                       for when in ("start_of_task", "end_of_task"))])
        if v.virtual == "sgd":
            curves.setdefault(f"order {v.order}", []).append(rec["forgetting_t0"])
            errors.setdefault(f"order {v.order}", []).append(rec["forgetting_t0_ci95"] or 0.0)
    table = markdown_table(
        ["cell", "order", "virtual step", "eta", "task-0 increase", "95 % interval",
         "step x curvature, task 1 start", "end", "correction ratio, task 1 start", "end",
         "correction cosine, task 1 start", "end"], rows)
    figure = plots.lines(list(VIRTUAL_LRS), curves, "virtual SGD step eta",
                         "task-0 forgetting (MSE increase)",
                         f"repair (flow and SDEs frozen), {config.run.epochs} epochs a task, "
                         f"{len(config.run.seeds)} seeds: mean, 95 % interval",
                         errors=errors, xscale="log", references={"MLP (ours)": mlp})
    note = ("Step x curvature is |virtual step| / |grad L| times the largest Hessian eigenvalue "
            "of the task loss over the moving parameters (eta lambda_max for SGD); the "
            "correction is what order 2 adds to the order-1 regulariser gradient. Start: the "
            "mean of task 1's first 10 steps; end: of its last 10; the median over the seeds.")
    return "## The virtual-step sweep\n\n" + table + "\n\n" + note, figure


def _end_of_task(log: dict[str, np.ndarray], name: str, last: int = 10) -> np.ndarray:
    """Metric ``name`` of one seed's step log, the mean of each task's last ``last`` steps."""
    tasks = np.asarray(log["experience"])
    return np.array([np.mean(np.asarray(log[name])[tasks == t][-last:])
                     for t in range(int(tasks.max()) + 1)])


def _start_of_task(log: dict[str, np.ndarray], name: str, first: int = 10) -> np.ndarray:
    """Metric ``name`` of one seed's step log, the mean of each task's first ``first`` steps."""
    tasks = np.asarray(log["experience"])
    return np.array([np.mean(np.asarray(log[name])[tasks == t][:first])
                     for t in range(int(tasks.max()) + 1)])


def _kept(stored: dict[str, int]) -> str:
    parts = [f"{n:,} {what}" for what, n in stored.items() if n]
    return " + ".join(parts) if parts else "0"


def protocol_section(records: dict[str, dict], note: str) -> str:
    """The fair protocol's claims whose models ``records`` hold, read by its rules
    (:mod:`experiments.sde_flow_fair_rules`: paired by seed, Holm over every tested comparison
    present), with each tested comparison; empty when no claim's models are all present."""
    found = rules.results(records)
    rows, claims = [], []
    for claim in rules.CLAIMS:
        said = rules.verdict(claim, found)
        if said is None:
            continue
        claims.append(f"- **{claim.number}. {claim.text}: {said}.**")
        for t in claim.tests:
            r = found[t]
            rows.append([claim.number, str(t), r.paired.cell(), r.paired.interval(),
                         f"{r.paired.p_tost if t.predicted == '~' else r.paired.p:.2g}",
                         f"{r.p_adjusted:.2g}", r.outcome])
    if not claims:
        return ""
    return ("## The fair protocol's claims among these models\n\n" + note + "\n\n"
            + "\n".join(claims) + "\n\n"
            + markdown_table(["claim", "comparison", "mean ± 95 %", "interval", "p",
                              "p (Holm)", "outcome"], rows))


def _pm(record, name, digits=4):
    value, std = record[name], record[f"{name}_std"]
    return f"{value:+.{digits}f}" + (f" ± {std:.{digits}f}" if std else "")


def tables(config: Config, records: dict[str, dict]) -> tuple[str, list[list]]:
    """The Markdown of every table, and the forgetting table as numbers for ``forgetting.csv``
    (header and rows; ``None`` where there is no value, an empty CSV cell)."""
    parts = []
    for name, rec in records.items():
        m = np.asarray(rec["mse_matrix"])
        n = m.shape[0]
        rows = [[f"after task {i}", *(f"{v:.4f}" for v in m[i])] for i in range(n)]
        parts.append(f"### Test MSE, {name} (row: after training task i; column: task j)\n\n"
                     + markdown_table(["", *(f"task {j}" for j in range(n))], rows))
    header = ["model", "parameters", "floats kept a task", "MSE t0 after t0", "MSE t0 after t4",
              "increase (ours)", "95 % interval", "increase (study)", "increase / MLP's",
              "mean forgetting t0..3", "final MSE", "learning MSE (diagonal)", "train s",
              "compile s"]
    rows, numbers = [], []
    for name, rec in records.items():
        m = np.asarray(rec["mse_matrix"])
        study = REFERENCE.get(name)
        # A ratio only where both increases are away from zero beyond the seeds' noise (both
        # 95 % intervals exclude zero; one seed has no interval, so no ratio).
        ratio = (rules.ratio(records, name, "mlp", "forgetting_t0")
                 if "mlp" in records and name != "mlp" else None)
        half = rec["forgetting_t0_ci95"]
        kept = sum(rec["stored_per_task"].values())
        numbers.append([name, rec["params"], kept, float(m[0, 0]), float(m[-1, 0]),
                        rec["forgetting_t0"], rec["forgetting_t0_std"], half, study, ratio,
                        rec["mean_forgetting"], rec["mean_forgetting_std"], rec["final_mse"],
                        rec["diagonal_mse"], rec["time_s"], rec["compile_s"]])
        rows.append([name, f"{rec['params']:,}", _kept(rec["stored_per_task"]), f"{m[0, 0]:.4f}",
                     f"{m[-1, 0]:.4f}", _pm(rec, "forgetting_t0"),
                     _interval(rec["forgetting_t0"], half),
                     f"{study:+.4f}" if study is not None else "—",
                     f"{ratio:.3g}x" if ratio is not None else "—",
                     _pm(rec, "mean_forgetting"), _pm(rec, "final_mse"),
                     _pm(rec, "diagonal_mse"), f"{rec['time_s']:.1f}", f"{rec['compile_s']:.1f}"])
    forgetting_md = markdown_table(header, rows)
    n = len(next(iter(records.values()))["mse_matrix"])
    collapse = markdown_table(
        ["model", "metric", *(f"task {t}" for t in range(n))],
        [[name, metric, *(f"{v:.3g}" for v in rec["end_of_task"][metric])]
         for name, rec in records.items() for metric in COLLAPSE])
    study_ratio = REFERENCE["hypernet_sde_flow"] / REFERENCE["mlp"]
    forgetting_md += (f"\n\nRatio of the task-0 increases in the study, Hypernet-SDE-Flow / MLP: "
                      f"{study_ratio:.0f}x. ± is the standard deviation over the seeds (ddof "
                      "1), the interval the 95 % confidence interval of the mean (Student's t, "
                      "ddof 1). A ratio over the MLP's increase is shown only where both "
                      "intervals exclude zero (not with one seed); a negative increase means "
                      "the task got better. Floats kept a task: what a model keeps for each "
                      "finished task (replayed points, the regulariser's targets, the oracle's "
                      "stored weights). Final MSE: the mean of the last row; learning MSE: of "
                      "the diagonal."
                      + (f" Train and compile seconds are those of all {len(config.run.seeds)} "
                         "seeds together: one vmapped program." if len(config.run.seeds) > 1
                         else " One seed is one draw: in the default study (300 epochs a "
                         "task) rounding alone moves these numbers several-fold "
                         "(benchmarks/seed_drift.py); --seeds 0 1 2 gives the spread."))
    csv_header = ["model", "parameters", "floats_kept_per_task", "mse_t0_after_t0",
                  "mse_t0_after_t4", "forgetting_t0", "forgetting_t0_std", "forgetting_t0_ci95",
                  "forgetting_t0_study", "forgetting_t0_over_mlp", "mean_forgetting",
                  "mean_forgetting_std", "final_mse", "diagonal_mse", "train_s", "compile_s"]
    return ("## Forgetting (MSE increase; positive is forgetting)\n\n" + forgetting_md + "\n\n"
            + f"## The latent at the end of each task (NLL {config.model.nll}, latent "
            f"{config.model.latent}; mean of its last 10 steps and the seeds)\n\nz0_std: z0's standard deviation over "
            "the batch, mean over coordinates; sigma: the mean diffusion; decoder_gain: the "
            "largest singular value of dx_hat/dy, mean over the batch; encoder_log_det: the "
            "encoder's mean log volume.\n\n" + collapse + "\n\n"
            + "\n\n".join(parts)), [csv_header, *numbers]
