"""What runs an experiment module's config: one function that trains a set of learners over the
seeded streams (:func:`train_learners`, used by the strategy modules and the Hypernet-SDE-Flow
study alike), the run folder written at the end (:func:`write_run`), and ``main`` of a module
(:func:`module_main`: parse, claim ``--out``, run, and leave nothing a failed run cannot resume
from).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import os
import pathlib
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import jax

from experiments.flags import parse_config
from experiments.settings import RunOptions, StrategyRun, stream_options, strategy_for, title
from jaxcl import config as settings
from jaxcl.data.augment import FLIP_ONLY, random_crop_flip
from jaxcl.io import compile_cache, interrupts, run_folder
from jaxcl.io.checkpoints import RunCheckpoints, content_digest
from jaxcl.io.progress import ProgressBar
from jaxcl.io.records import seed_record, strategy_record
from jaxcl.learners import Learner, StrategyConfig, build_strategy
from jaxcl.train.loop import NearChanceWarning, RunResult, stackable, train_seeds
from jaxcl.types import Experience


def default_out(name: str) -> pathlib.Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    return pathlib.Path("runs") / f"{name}-{stamp}"


def on_event(run: RunOptions, label_lines: Callable | None = None) -> Callable:
    """What the loop reports to: a progress bar when ``run.progress``, then ``label_lines``;
    first it raises a Ctrl-C swallowed since the last event
    (:func:`jaxcl.io.interrupts.raise_pending`): the loop stops there, keeping its checkpoint."""
    bar = ProgressBar(run.progress)

    def report(event):
        interrupts.raise_pending()
        bar(event)
        if label_lines is not None:
            label_lines(event)
    return report


@dataclasses.dataclass(frozen=True)
class Job:
    """One learner to train on every seed's stream.

    Attributes:
      build: ``stream -> learner`` (the stream gives its shape).
      settings: what fingerprints the learner's checkpoints beside the run's settings.
      run_name: the learner's name in its checkpoints' fingerprint.
    """

    build: Callable[[Sequence[Experience]], Learner]
    settings: dict[str, Any]
    run_name: str


def concurrent_jobs(workers: int, jobs: int) -> int:
    """How many jobs train at once: ``workers`` (0: one per CPU core), at most ``jobs``."""
    if not (isinstance(workers, int) and workers >= 0):
        raise ValueError(f"workers must be a non-negative integer (0: one per CPU core), got "
                         f"{workers!r}")
    return max(1, min(workers or os.cpu_count() or 1, jobs))


def train_learners(jobs: dict[str, Job], streams: Sequence[Sequence[Experience]], *,
                   seeds: Sequence[int], run: RunOptions, out: pathlib.Path | None,
                   batch_size: int, options: dict[str, Any], eval_batch_size: int = 256,
                   augment: bool = False, crop: bool = True, together: bool = True,
                   describe: Callable[[str, int, RunResult], str] | None = None,
                   label_lines: Callable[[str, list[int]], Callable] | None = None,
                   cache: dict | None = None) -> dict[str, list[tuple[int, RunResult]]]:
    """Train every job on the stream of every seed (same stream and init key per seed): all
    seeds as one vmapped program (:func:`jaxcl.train.loop.train_seeds`) when ``together`` and
    their streams have equal shapes, else one after another.

    ``run.workers`` jobs train at once, each in its own thread, taken in the order of ``jobs``
    (put the longest first): on a CPU a small model's program keeps about one core busy, so two
    run side by side in the time of one. The numbers are those of one at a time (each job is
    its own programs, run as they would be alone); jobs that share compiled programs
    (``cache``) compile them once, the second waiting for the first.

    With ``out``, checkpoints go to ``out/checkpoints/<label>-seeds-<seeds>`` after every
    experience and every ``run.checkpoint_epochs`` epochs (a killed run started again resumes
    from them), event files to ``out/tensorboard/<label>/seed_<seed>`` when
    ``run.tensorboard``. A checkpoint's fingerprint holds the job's ``settings``, ``options``
    (the run's settings that can change a number) and the content hash of every seed's stream,
    so that resuming another run's checkpoints is refused. ``describe(label, seed, result)``
    prints a line per seed; ``augment`` crops and flips every training minibatch (``crop=False``:
    flips only); ``label_lines(label, seeds)`` adds to what the loop reports to;
    ``cache`` shares compiled programs between jobs. Returns ``{label: [(seed, result), ...]}``.
    """
    interrupts.raise_pending()  # a Ctrl-C swallowed while the data loaded
    stack = together and stackable(streams)
    groups = [list(range(len(seeds)))] if stack else [[i] for i in range(len(seeds))]
    if together and not stack:
        print("  the seeds' streams differ in shape: training them one after another", flush=True)
    digests = [content_digest(stream) for stream in streams] if out is not None else []
    units = [(label, group) for label in jobs for group in groups]
    workers = concurrent_jobs(run.workers, len(units))
    stop = threading.Event()  # a Ctrl-C in the main thread stops the others at their next event

    def train(label: str, group: list[int]) -> list[tuple[int, RunResult]]:
        job, group_seeds = jobs[label], [seeds[i] for i in group]
        name = f"{label}-seeds-{'-'.join(map(str, group_seeds))}".replace("/", "_")
        report = on_event(run, label_lines and label_lines(label, group_seeds))

        def event(e):
            if stop.is_set():
                raise KeyboardInterrupt
            report(e)

        seed_results = train_seeds(
            job.build(streams[group[0]]), [streams[i] for i in group],
            keys=[jax.random.key(seed) for seed in group_seeds], epochs=run.epochs,
            batch_size=batch_size, eval_batch_size=eval_batch_size, on_event=event,
            label=f"{label} seeds {group_seeds}", devices=run.devices,
            augment=(random_crop_flip if crop else FLIP_ONLY) if augment else None,
            checkpoints=None if out is None else RunCheckpoints(
                out / run_folder.CHECKPOINTS / name, name=f"{label} seeds {group_seeds}",
                report=print, min_interval_s=run.checkpoint_seconds),
            checkpoint_epochs=run.checkpoint_epochs, run_name=job.run_name,
            steps_in=run.steps_in, cache=cache,
            settings={**job.settings, "options": options,
                      "data": [digests[i] for i in group] if digests else []})
        done = list(zip(group_seeds, seed_results))
        for seed, result in done:
            if out is not None and run.tensorboard and jax.process_index() == 0:
                from jaxcl.io.event_logs import write_events

                write_events(out / "tensorboard" / label.replace("/", "_") / f"seed_{seed}",
                             result)
            if describe is not None:
                print(describe(label, seed, result), flush=True)
        return done

    results: dict[str, list[tuple[int, RunResult]]] = {label: [] for label in jobs}
    # catch_warnings is process-wide: one around all the threads, the near-chance advice as
    # one line each (they name their run)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NearChanceWarning)
        if workers == 1:
            for label, group in units:
                results[label] += train(label, group)
        else:
            results = _train_side_by_side(train, units, workers, stop, results)
    for warning in caught:
        if issubclass(warning.category, NearChanceWarning):
            print(f"  warning: {warning.message}", flush=True)
        else:
            warnings.showwarning(warning.message, warning.category, warning.filename,
                                 warning.lineno)
    return results


def _train_side_by_side(train, units, workers, stop, results):
    """``train(label, group)`` of every unit in ``workers`` threads; the first failure (or a
    Ctrl-C in the main thread) stops the others at their next event, and is raised once every
    thread has ended (a Ctrl-C: the first run's report of what it kept)."""
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        futures = [(label, pool.submit(train, label, group)) for label, group in units]
        every = [f for _, f in futures]

        def stop_all():  # the queued never start, the running stop at their next event
            stop.set()
            for f in every:
                f.cancel()
            concurrent.futures.wait(every)
            return [f.exception() for f in every if not f.cancelled() and f.exception()]

        try:
            done, _ = concurrent.futures.wait(every, return_when=concurrent.futures.FIRST_EXCEPTION)
        except KeyboardInterrupt:
            kept = [e for e in stop_all() if isinstance(e, KeyboardInterrupt)]
            raise (kept[0] if kept else KeyboardInterrupt()) from None
        failed = [f.exception() for f in done if f.exception() is not None]
        if failed:
            stop_all()
            raise failed[0]
    for label, future in futures:
        results[label] += future.result()
    return results


def stream_for(config: StrategyRun, seed: int, cache: dict | None = None) -> list[Experience]:
    """The stream of ``config.data`` for ``seed`` (:func:`jaxcl.data.load_benchmark`; a
    module's :attr:`~experiments.settings.StrategyRun.SYNTHETIC_OPTIONS` under the synthetic
    streams' options); ``cache`` keeps the arrays of TFDS datasets read."""
    from jaxcl.data import SYNTHETIC, load_benchmark

    data = config.data
    options = stream_options(data)
    if data.benchmark in SYNTHETIC:
        options = {**config.SYNTHETIC_OPTIONS, **options}
    return load_benchmark(data.benchmark, seed=seed, data_dir=data.data_dir or None,
                          manual_dir=data.manual_dir or None, download=data.download,
                          cache=cache, **options)


def load_streams(config: StrategyRun) -> list[list[Experience]]:
    """Every seed's stream (:func:`stream_for`), a TFDS dataset read once for all of them."""
    arrays: dict = {}
    return [stream_for(config, seed, cache=arrays) for seed in config.run.seeds]


def run_strategies(config: StrategyRun, strategies: dict[str, StrategyConfig],
                   out: pathlib.Path | None = None, *,
                   streams: Sequence[Sequence[Experience]] | None = None,
                   results: dict | None = None):
    """Train ``strategies`` on ``config``'s seeded streams (:func:`train_learners`; ``streams``:
    those :func:`load_streams` gives, when the module has already loaded them), checkpointed in
    ``out`` when given. Returns ``(records, steps)``: :func:`jaxcl.io.records.strategy_record`
    per label (with its resolved settings, normalisation included), and the per-step logs
    ``steps[label][seed]``; ``results``, when given, receives each run's
    :class:`jaxcl.train.loop.RunResult` (its final ``state`` too) as ``results[label][seed]``."""
    data = config.data
    streams = load_streams(config) if streams is None else streams
    shape = streams[0][0].x_train.shape
    if data.augment and len(shape) != 4:
        raise ValueError(f"augment crops and flips images (N, H, W, C), but the stream's inputs "
                         f"have shape {shape}; pass --no-augment")
    batch = config.strategy.batch_size

    def job(label: str, strategy: StrategyConfig) -> Job:
        return Job(build=lambda stream: build_strategy(
                       strategy, num_tasks=len(stream), classes_per_task=len(stream[0].classes),
                       sample_x=stream[0].x_train[:batch]),
                   settings={"strategy": dataclasses.asdict(strategy)}, run_name=label)

    per_seed: dict[str, list[dict]] = {label: [] for label in strategies}

    def describe(label, seed, result):
        record = seed_record(seed, result)
        per_seed[label].append(record)
        return (f"  {label} seed {seed}: ACA {record['aca']:.3f}, forgetting "
                f"{record['forgetting']:.3f}, {record['time_s']:.1f} s "
                f"(+{record['compile_s']:.1f} s compile)")

    trained = train_learners({label: job(label, s) for label, s in strategies.items()}, streams,
                             seeds=config.run.seeds, run=config.run, out=out, batch_size=batch,
                             options=settings.fingerprint(config),
                             eval_batch_size=config.eval_batch_size, augment=data.augment,
                             crop=data.crop,
                             together=config.seeds_together, describe=describe)
    records = {label: strategy_record(rows) for label, rows in per_seed.items()}
    steps = {label: {s: r.step_metrics for s, r in runs} for label, runs in trained.items()}
    if results is not None:
        results.update({label: dict(runs) for label, runs in trained.items()})
    for label, strategy in strategies.items():
        records[label]["settings"] = {**dataclasses.asdict(strategy), "norms": list(strategy.norms)}
    return records, steps


def write_run(out: pathlib.Path | None, files: dict[str, Any], *, keep_checkpoints: bool) -> None:
    """Write the run folder's ``files`` into ``out`` (when given) and drop its checkpoints unless
    ``keep_checkpoints`` (:func:`jaxcl.io.run_folder.drop_checkpoints`)."""
    if out is None:
        return
    run_folder.write_files(out, files)
    print(f"\nresults: {out}")
    dropped = run_folder.drop_checkpoints(out, keep=keep_checkpoints)
    if dropped:
        print(dropped)


def config_dict(config: Any) -> dict[str, Any]:
    """``config`` as ``config.json`` holds it: its sections, and what had no effect and why."""
    out = dataclasses.asdict(config)
    if hasattr(config, "unused"):
        out["unused"] = config.unused()
    return out


def finish(out: pathlib.Path | None, experiment: str, config: StrategyRun, records: dict,
           steps: dict, table: str, *, what: str = "", extra: dict | None = None,
           extra_files: dict | None = None, paper: dict | None = None) -> dict:
    """Print the table last, write the run folder; return ``metrics.json``'s content (with the
    paper's numbers under ``"paper"`` when given, :mod:`experiments.paper`)."""
    heading = title(config, experiment, what)
    written = config_dict(config)
    resolved = {label: r["settings"] for label, r in records.items() if "settings" in r}
    if resolved:  # each strategy's resolved settings (e.g. norm "reference" -> its norms)
        written["strategy_settings"] = resolved
    files = run_folder.run_files(experiment=experiment, config=written,
                                 seeds=list(config.run.seeds), records=records, steps=steps,
                                 summary_md=f"# {heading}\n\n{table}\n", extra=extra, paper=paper)
    files.update(extra_files or {})
    print(f"\n{heading}\n{table}")
    write_run(out, files, keep_checkpoints=config.run.keep_checkpoints)
    return files["metrics.json"]


def finish_tables(out: pathlib.Path | None, *, experiment: str, config: Any, title: str,
                  table: str, metrics: dict, paper: dict | None = None) -> dict:
    """For modules that train nothing: print the table, write config, metrics (the paper's
    numbers under ``"paper"`` when given) and summary."""
    if paper is not None:
        metrics = {**metrics, "paper": paper}
    print(f"{title}\n{table}")
    if out is not None:
        run_folder.write_files(out, {"config.json": run_folder.config_json(
                                         dataclasses.asdict(config), experiment),
                                     "metrics.json": metrics,
                                     "summary.md": f"# {title}\n\n{table}\n"})
        print(f"\nresults: {out}")
    return metrics


def use_compile_cache(run: RunOptions) -> None:
    """JAX's persistent compilation cache on (in ``run.compile_cache_dir``) or off, as asked
    (:mod:`jaxcl.io.compile_cache`); before anything compiles."""
    if run.compile_cache:
        compile_cache.enable(run.compile_cache_dir or None)
    else:
        compile_cache.disable()


def module_main(name: str, config_cls: type, quick: dict, run: Callable, doc: str) -> Callable:
    """The ``main(argv)`` of an experiment module: parse, refuse an ``--out`` that holds a
    finished run (:func:`jaxcl.io.run_folder.check_out`) before any work, then
    ``run(config, out)``. A training run (a config with a ``run`` section) first claims ``out``
    (:func:`jaxcl.io.run_folder.claim`: an unfinished run of other settings is refused there);
    if it fails, what it wrote and nothing can resume from is removed
    (:func:`jaxcl.io.run_folder.release`)."""
    def main(argv: list[str] | None = None):
        config, out = parse_config(config_cls, argv, name=name,
                                   description=doc.splitlines()[0], quick=quick)
        out = out if out is not None else default_out(name)
        run_folder.check_out(out)
        if not isinstance(getattr(config, "run", None), RunOptions):  # trains nothing
            return run(config, out)
        created = not out.exists()
        run_folder.claim(out, name, settings.identity(config))
        use_compile_cache(config.run)
        try:
            with interrupts.kept():
                return run(config, out)
        except BaseException:  # a failed or interrupted run leaves only what can resume
            run_folder.release(out, created=created)
            raise
    return main


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


__all__ = ["Job", "config_dict", "default_out", "finish", "finish_tables", "load_streams",
           "markdown_table", "module_main", "on_event", "run_strategies", "stream_for",
           "strategy_for", "train_learners", "use_compile_cache", "write_run"]
