"""The Hypernet-SDE-Flow forgetting study, its repair by partial hypernetworks, and the fair
baselines the repair is measured against.

Five tasks of 3-D points (:mod:`jaxcl.data.points`), trained in sequence, 300 epochs each
with AdamW at 5e-4. After each task the test MSE on every task fills one row of the MSE matrix.
Models (:mod:`jaxcl.learners.sde_flow_variant`, trained as learners of the one loop,
:mod:`jaxcl.learners.sde_flow`; ``--variants`` picks them, by default the main job's seven,
:data:`experiments.sde_flow_settings.MAIN_VARIANTS`):

=============================  ===============================================================
``mlp``                        MLP autoencoder, nothing against forgetting
``mlp_task``                   the same, reading the task's one-hot code
``mlp_task_wide``              ``mlp_task`` widened to the repair's parameter count
``replay_mlp_task``            ``mlp_task`` replaying stored points, as many floats per task
                               as the repair keeps (capped at the task's training set)
``hypernet_sde_flow``          the study's model: MSE + beta NLL + gamma replay + delta sep.
``ablation_no_replay_sep``     the same without replay and separation (gamma = delta = 0)
``ablation_penalties_x10``     replay and separation weights times ``ablation_factor``
``hnet_mlp_order1`` / ``2``    a hypernetwork generating the whole MLP autoencoder, with the
                               repair's output regulariser and look-ahead
``repair_order1`` / ``2``      flow and SDEs frozen after task 0; output regulariser through a
                               first- / second-order look-ahead; replay weight 0 (see below)
``repair_none``                the repair without look-ahead (the regulariser on ``psi``)
``repair_generated_order1/2``  the same with flow and SDE networks generated per task too
``oracle_stored``              ``repair_order1``, each finished task evaluated with the
                               generated weights stored when it ended (zero forgetting);
                               with ``repair_order1`` in the run, derived from its training
                               (:func:`shares_training`) rather than trained again
=============================  ===============================================================

The repairs store no data points (``memory_per_task=0``, replay weight 0); what they keep
against forgetting is each task's generated encoder and decoder (the output regulariser's
targets). Every table prints each model's parameters and the floats it keeps per finished task
beside its numbers. With the models of the fair protocol's claims
(``docs/protocols/sde_flow_fair.md``) the run also prints those claims as its rules read them
on this run's seeds (:mod:`experiments.sde_flow_fair_rules`).

The NLL (``--nll``, :func:`jaxcl.models.sde_flow.negative_log_likelihood`): ``rectangular`` (the
default) is the density of ``x`` on the decoder's manifold, ``-log p(z0) + 0.5 log det(G^T G)``
with ``G = dDec/dz`` at ``z0 = Enc(x)`` (rectangular flows, Caterini et al. 2021); ``paper`` is
the paper's Eq. 2 through the encoder, ``-log N(u; 0, I) - log|det du/dz0| - log_vol(x)`` with
``u = F(Enc(x))``, exact at latent 3 and below it a heuristic (``0.5 log det(J J^T)`` of the
encoder, which steepness off the data manifold lowers); ``flow_only`` is ``-log p(z0)``, which
rewards shrinking ``z0``. ``--latent`` (1, 2 or 3; the paper gives no size; 2 by default, where
the plain MLP forgets) sets every model's latent.

``--sweep`` trains a grid of cells beside the MLP instead of ``--variants``
(:func:`experiments.sde_flow_settings.cells`); cells that differ only in traced weights share
one compiled program:

* ``replay``: the study's model with 0, 1, 2, 5 or 20 replayed points per finished task times
  ``gamma`` 0.1 or 1, then at all 20 points without separation, with ``beta`` ramped once per run
  rather than per task, and with identity SDEs. Table and ``sweep_replay.png`` (forgetting
  against memory, a line per ``gamma``, the MLP and the published +0.38 as references).
* ``virtual_step``: ``repair_order1`` and ``repair_order2`` with a virtual SGD step of 1e-5 ..
  1e-2 and a virtual Adam step, each probed (``--probe``: every step logs the largest curvature
  of the task loss, step x curvature, and the ratio and cosine of order 2's correction to the
  order-1 regulariser gradient). Table and ``sweep_virtual_step.png``.

Every run reports paired comparisons by seed (model minus reference, per-seed differences, their
95 % interval): every model against the MLP; in the replay sweep, every cell against the
study's; in the virtual-step sweep, order 2 against order 1 at each step.

The run folder (``--out DIR``)::

    config.json, summary.md             the settings; every table below, in Markdown
    mse_matrices.csv                    model, seed ("mean" over seeds), after_task, task_0..
    forgetting.csv                      the forgetting table, with the study's numbers
    steps.csv                           model, seed, step, task, then every step's metrics
                                        (jaxcl.learners.sde_flow.STEP_METRICS: the loss terms,
                                        z0_std, sigma, decoder_gain, encoder_log_det; probed
                                        repairs' PROBE_METRICS too), the first seed
    sweep_<sweep>.png                   the sweep's figure (--sweep)
    mse_matrix_<model>.png              heat maps of the MSE matrices
    checkpoints/<model>-seeds-<seeds>/  the latest checkpoints (orbax) while the run is unfinished:
                                        a killed run resumes; removed when it finishes unless
                                        ``--keep-checkpoints``
    tensorboard/<model>/seed_<s>/       event files (``--tensorboard``)
    metrics.json                        schema "jaxcl.sde_flow/1":
      {"schema", "experiment", "config", "seeds",
       "reference": {"mlp": {"forgetting_t0"}, "hypernet_sde_flow": {...}, "ratio"},
       "paired": [{"model", "against", "metric", "diff", "ci95", "lower_in", "seeds"}],
       "programs": the learners' program sets the run added (one per model that is not
                   derived, less those sharing a program), "compilations": XLA programs they
                   compiled,
       "<model>": {"mse_matrix": [[...]] (mean over seeds), "forgetting_t0", "mean_forgetting",
                   "final_mse", "diagonal_mse", "<same>_std" (ddof 1), "<same>_ci95" (the 95 %
                   interval's half-width, Student's t; null for one seed), "time_s",
                   "compile_s", "params" (trained floats), "stored_per_task" ({"points",
                   "targets", "weights"}: floats kept per finished task),
                   "end_of_task": {"z0_std", "sigma", "decoder_gain", "encoder_log_det": one
                                   value per task, the mean of its last 10 steps and the seeds},
                   "probe": {"curvature", "step_curvature", "virtual_move", "correction_ratio",
                             "correction_cosine": {"start_of_task", "end_of_task": per task,
                             first / last 10 steps, median over seeds}} (probed repairs only),
                   "per_seed": [{"seed", "mse_matrix", "forgetting_t0", "mean_forgetting",
                                 "final_mse", "diagonal_mse"}]},
       ...one entry per model run}

``forgetting_t0 = M[4, 0] - M[0, 0]`` (the MSE increase on task 0 from after task 0 to after the
last task; positive is forgetting); ``mean_forgetting`` averages ``M[4, j] - M[j, j]`` over
``j = 0..3``; ``final_mse`` is the mean of the last row, ``diagonal_mse`` of the diagonal.

    python -m experiments.sde_flow_forgetting            # the main job: 7 models, seeds 0-4
    python -m experiments.sde_flow_forgetting --quick    # seconds of training, for tests
    jaxcl run sde_flow_forgetting --seeds 0 1 2 --devices 2 --out runs/sde   # the same entry
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import sys
import time
from typing import Any

import numpy as np

from experiments.runner import (
    Job,
    concurrent_jobs,
    config_dict,
    module_main,
    train_learners,
    write_run,
)
from experiments.sde_flow_settings import NUM_TASKS, QUICK, Config, cells, learner, tasks
from experiments.sde_flow_tables import (
    REFERENCE,
    comparisons,
    paired_table,
    protocol_section,
    record,
    sweep_tables,
    tables,
)
from jaxcl import config as settings
from jaxcl.core import metrics as cl_metrics
from jaxcl.core.metrics import held_at_end
from jaxcl.io import plots, run_folder
from jaxcl.learners.sde_flow import STEP_METRICS
from jaxcl.learners.sde_flow import PROBE_METRICS
from jaxcl.learners.sde_flow_variant import param_count, stored_per_task
from jaxcl.train.events import ExperienceEnded

NAME = "sde_flow_forgetting"
PROTOCOL_NOTE = ("The rules of docs/protocols/sde_flow_fair.md applied to this run's models and "
                 "seeds {seeds} (paired by seed, Holm over the comparisons present). The "
                 "evidence is the protocol's own run, on seeds no other run used: "
                 "docs/results/sde_flow_fair.md.")
SCHEMA = "jaxcl.sde_flow/1"


@functools.cache
def _program_cache() -> dict:
    """One cache of compiled programs per process: variants differing only in their loss weights
    share programs, and a sweep, or a resumed run started again in the same process, compiles
    nothing twice."""
    return {}


def _compilations() -> int:
    """XLA programs compiled so far by the process's cached loop programs."""
    return sum(p.compilations for p in _program_cache().values())


def _task_lines(config: Config, name: str, seeds: list[int]):
    """One line per seed after every task: its loss, MSE and regulariser (last 10 steps)."""
    def report(event):
        if config.run.progress and isinstance(event, ExperienceEnded):
            m = event.metrics
            for i, seed in enumerate(seeds):
                print(f"    {name} seed {seed}: task {event.experience} done, loss "
                      f"{m['loss'][i]:.4f}, mse {m['mse'][i]:.4f}, reg {m['reg'][i]:.4f}",
                      flush=True)
    return report


def shares_training(models: dict) -> dict[str, str]:
    """``{oracle: source}`` for every stored-weights oracle (``Variant.evaluate_stored``) whose
    training another model of the run repeats exactly (the same variant without the oracle's
    evaluation): it is derived from that model's matrix rather than trained again."""
    trained = {v: name for name, v in models.items() if not v.evaluate_stored}
    return {name: trained[dataclasses.replace(v, evaluate_stored=False)]
            for name, v in models.items()
            if v.evaluate_stored and dataclasses.replace(v, evaluate_stored=False) in trained}


def train_order(config: Config, models: dict) -> list[str]:
    """The names of ``models`` in the order they start training: the costliest first (the SDE
    path, then a hypernetwork, then a replayed memory), so that models trained side by side
    (``run.workers``) end together; of two that share compiled programs, the second starts after
    one other model, not at once waiting for the first's compilation."""
    order = sorted(models, key=lambda n: (not models[n].model.has_latent_path,
                                          not models[n].is_hypernet,
                                          -models[n].memory_per_task))
    for i in range(1, len(order) - 1):
        if learner(config, models[order[i]]) == learner(config, models[order[i - 1]]):
            order[i], order[i + 1] = order[i + 1], order[i]
    return order


def run(config: Config, out) -> dict:
    out = pathlib.Path(out)  # module_main has checked it holds no finished run
    seeds = list(config.run.seeds)
    models = cells(config)
    programs_before, compiled_before = len(_program_cache()), _compilations()
    wall = time.perf_counter()

    def job(v) -> Job:
        return Job(build=lambda stream: learner(config, v), settings={}, run_name=repr(v))

    def describe(name, seed, result):
        forgetting = cl_metrics.error_summary(result.matrix)
        line = (f"  {name} seed {seed}: forgetting t0 {forgetting['forgetting_t0']:+.4f}, "
                f"mean {forgetting['mean_forgetting']:+.4f}")
        if seed != seeds[-1]:
            return line
        together = f"seeds {seeds} in one program" if len(seeds) > 1 else f"seed {seeds[0]}"
        return (f"{line}\n  {name}, {together}: {result.time_s:.1f} s "
                f"(+{result.compile_s:.1f} s compile)")

    derived = shares_training(models)
    trained = train_order(config, {n: v for n, v in models.items() if n not in derived})
    runs = train_learners({name: job(models[name]) for name in trained},
                          [tasks(config, seed) for seed in seeds], seeds=seeds, run=config.run,
                          out=out, batch_size=config.model.batch_size,
                          options=settings.fingerprint(config), describe=describe,
                          label_lines=lambda name, s: _task_lines(config, name, s),
                          cache=_program_cache())
    for name, source in derived.items():
        print(f"  {name}: {source}'s training, each finished task held at its end-of-task MSE "
              "(jaxcl.core.metrics.held_at_end; exactly what training it again would give)",
              flush=True)
        runs[name] = [(seed, dataclasses.replace(r, matrix=held_at_end(r.matrix), time_s=0.0,
                                                 compile_s=0.0)) for seed, r in runs[source]]
    runs = {name: runs[name] for name in models}  # the requested order
    records = {name: {**record(r), "params": param_count(models[name], NUM_TASKS),
                      "stored_per_task": stored_per_task(models[name])}
               for name, r in runs.items()}
    title = (f"{NAME}: 5 tasks x {config.data.train_per_task} points, {config.run.epochs} "
             f"epochs per task, NLL {config.model.nll}, latent {config.model.latent}, seeds "
             f"{seeds}")
    summary, forgetting_rows = tables(config, records)
    pairs = comparisons(config, records)
    if pairs:
        summary += ("\n\n## Paired by seed (model minus reference; negative: the model forgets "
                    "less)\n\n" + paired_table(pairs))
    fair = protocol_section(records, PROTOCOL_NOTE.format(seeds=seeds))
    if fair and config.sweep == "none":
        summary = fair + "\n\n" + summary
    sweep_md, sweep_png = sweep_tables(config, models, records)
    programs = len(_program_cache()) - programs_before
    compilations = _compilations() - compiled_before
    cost = (f"cost: {len(models)} models ({len(trained)} trained, {len(derived)} derived), "
            f"{concurrent_jobs(config.run.workers, len(trained))} at once, seeds {seeds} in one "
            f"program per model, {compilations} programs "
            f"compiled, training {sum(r[0][1].time_s for r in runs.values()):.1f} s, compile "
            f"{sum(r[0][1].compile_s for r in runs.values()):.1f} s, wall "
            f"{time.perf_counter() - wall:.1f} s")
    if sweep_md:
        summary += (f"\n\n{sweep_md}\n\n{len(models)} models trained by {programs} compiled "
                    "loop programs (cells that differ only in traced weights share one).")
    study_ratio = REFERENCE["hypernet_sde_flow"] / REFERENCE["mlp"]
    written = config_dict(config)
    metrics = {"schema": SCHEMA, "experiment": NAME, "config": written,
               "seeds": seeds,
               "reference": {"mlp": {"forgetting_t0": REFERENCE["mlp"]},
                             "hypernet_sde_flow": {"forgetting_t0": REFERENCE["hypernet_sde_flow"]},
                             "ratio": study_ratio},
               "paired": pairs, "programs": programs, "compilations": compilations, **records}
    matrix_rows, step_rows = [], []
    step_names = STEP_METRICS + (PROBE_METRICS if any(v.probe for v in models.values()) else ())
    for name, seeded in runs.items():
        for seed, r in seeded:
            matrix_rows += [[name, seed, i, *row] for i, row in enumerate(r.matrix.tolist())]
        matrix_rows += [[name, "mean", i, *row] for i, row in
                        enumerate(records[name]["mse_matrix"])]
        seed, r = seeded[0]
        log = r.step_metrics
        step_rows += [[name, seed, s, int(log["experience"][s]),
                       *(float(log[k][s]) if k in log else None for k in step_names)]
                      for s in range(len(log["loss"]))]
    n = len(next(iter(records.values()))["mse_matrix"])
    files: dict[str, Any] = {
        "config.json": run_folder.config_json(written, NAME),
        "metrics.json": metrics,
        "summary.md": f"# {title}\n\n{summary}\n\n{cost}\n",
        "mse_matrices.csv": run_folder.csv_text(
            ["model", "seed", "after_task", *(f"task_{j}" for j in range(n))],
            matrix_rows),
        "forgetting.csv": run_folder.csv_text(forgetting_rows[0], forgetting_rows[1:]),
        "steps.csv": run_folder.csv_text(["model", "seed", "step", "task", *step_names],
                                         step_rows),
    }
    if sweep_png is not None:
        files[f"sweep_{config.sweep}.png"] = sweep_png
    shared = (min(np.min(r["mse_matrix"]) for r in records.values()),
              max(np.max(r["mse_matrix"]) for r in records.values()))  # one scale: comparable
    for name, rec in records.items():
        files[f"mse_matrix_{name}.png"] = plots.matrix_heatmap(
            rec["mse_matrix"], f"{name}: test MSE (mean over seeds {seeds})",
            label="test MSE", limits=shared)
    print(f"\n{title}\n\n{summary}\n\n{cost}")
    write_run(out, files, keep_checkpoints=config.run.keep_checkpoints)
    return metrics


main = module_main(NAME, Config, QUICK, run, __doc__)


if __name__ == "__main__":
    from jaxcl.cli import run_main

    sys.exit(run_main(main, NAME, sys.argv[1:]))
