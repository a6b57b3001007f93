"""Batch execution (`make run-all`): every model and seed of a plan, each run one complete,
validated config trained through train_model.ipynb (mnistlab.engine), then the comparison
notebook; skipped runs, failures and the comparison's own status counted apart."""

from __future__ import annotations

import datetime
import os
import time
from pathlib import Path

from mnistlab.config import TrainConfig, make_config
from mnistlab.engine import Executor, check_kernel, execute_notebook, run_log
from mnistlab.machine import available_cores
from mnistlab.recipes import expand_model_names
from mnistlab.results import completed_runs_by_hash
from mnistlab.runs import check_writable, is_locked, new_run_name, resolve_runs_dir, write_json

# Keys run-all sets itself, per run: an override of them would make every run the same.
PLAN_KEYS = ("model", "seed")


def plan_runs(models, seeds: int, workers: int = 1, scheduler: str | None = None, **overrides) -> list[TrainConfig]:
    """The validated config of every run of a batch: each model of `models` (names or groups)
    with seeds 0..seeds-1 and `overrides` (any config key but model and seed). With `workers` > 1
    on this machine, each run gets `threads` = cores / workers unless the overrides set it.
    Raises ValueError naming the first bad model, key or value."""
    models = expand_model_names(models)
    for key, value in (("seeds", seeds), ("workers", workers)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be a positive integer, got {value!r}")
    for key in PLAN_KEYS:
        if key in overrides:
            raise ValueError(f"{key} is set per run by run-all; use --models for models and --seeds N "
                             f"for seeds 0..N-1, not --set {key}=...")
    if workers > 1 and not scheduler and overrides.get("threads") is None:
        overrides["threads"] = max(1, available_cores() // workers)
    return [make_config(model, seed=seed, **overrides) for model in models for seed in range(seeds)]


def run_all(models: list[str] | str | None = None, seeds: int = 1, runs_dir: str | os.PathLike | None = None,
            log_output: bool = True, force: bool = False, workers: int = 1, scheduler: str | None = None,
            verbose: bool = False, **overrides) -> Path:
    """Train every model of `models` (names or groups, see mnistlab.recipes.expand_model_names;
    default: the "core" comparison) `seeds` times via train_model.ipynb, then execute
    compare_runs.ipynb. `overrides` (epochs, limit, recipe, ...) apply to every run.

    Every config is validated before the first notebook starts, so a bad parameter costs no
    training time; the notebook trains exactly the config planned here. Incremental: a config
    (by config hash) that already has a completed run in `runs_dir` is skipped unless `force`;
    an interrupted run resumes from its backup. A run whose notebook fails does not stop the
    others; the failures are raised together (as RuntimeError, each with its cell's error) after
    the comparison has been written.

    Parallel: `workers` > 1 runs that many notebooks at once on a Dask LocalCluster (one
    process each, TensorFlow limited to cores / workers threads per run); `scheduler`
    ("tcp://host:port") sends them to an existing Dask cluster whose workers can import
    mnistlab and see `runs_dir`. Returns the executed comparison notebook's path.

    The console shows a line per run, its epoch lines (not with `log_output=False`) and its
    result, the progress with the time elapsed and left, and at the end the comparison table;
    everything else (TensorFlow's and the kernel's logs, papermill's) goes to each run's
    train.log (`verbose`: to the console too).
    """
    from mnistlab.machine import planned_hash

    plan = plan_runs(models, seeds, workers, scheduler, **overrides)
    runs_dir = resolve_runs_dir(runs_dir)
    check_writable(runs_dir)
    check_kernel()
    done = {} if force else completed_runs_by_hash(runs_dir)
    start = time.perf_counter()
    jobs, skipped = [], 0
    for i, config in enumerate(plan, 1):
        config_hash = planned_hash(config)
        if config_hash in done:
            print(f"[{i}/{len(plan)}] skip {config.model}, seed {config.seed}: completed as "
                  f"{done[config_hash]} (FORCE=1 re-runs it)", flush=True)
            skipped += 1
        elif is_locked(runs_dir, config_hash):
            print(f"[{i}/{len(plan)}] skip {config.model}, seed {config.seed}: training right now in another "
                  "process (its backup is locked); run again once it ends", flush=True)
            skipped += 1
        else:
            jobs.append((i, new_run_name(config.model), config))
    failures = []
    with Executor(runs_dir, workers, scheduler, log_output, dataset=plan[0].dataset, verbose=verbose,
                  force=force) as executor:

        def collect():
            finished, failure = executor.next_result()
            failures.append(failure)
            elapsed, done = time.perf_counter() - start, len(failures)
            left = elapsed / done * (len(jobs) - done)
            where = f" on {executor.where(finished)}" if executor.parallel else ""
            print(f"{'FAILED ' + failure if failure else 'finished ' + finished + where}; {done - sum(map(bool, failures))} "
                  f"done, {sum(map(bool, failures))} failed, {len(jobs) - done} left; {_minutes(elapsed)} elapsed, "
                  f"~{_minutes(left)} left", flush=True)

        for i, run_name, config in jobs:
            print(f"[{i}/{len(plan)}] {config.model} seed {config.seed}  ({run_name})", flush=True)
            executor.submit(run_name, config)
            while executor.in_flight >= executor.capacity:
                collect()
        while executor.in_flight:
            collect()
    failures = [f for f in failures if f]
    output = runs_dir / "compare_runs.ipynb"
    comparison = None
    try:
        with run_log(runs_dir / "compare_runs.log", echo=False, echo_all=verbose):
            execute_notebook("compare_runs.ipynb", output, parameters={"runs_dir": str(runs_dir),
                                                                       "dataset": plan[0].dataset})
    except Exception as e:  # noqa: BLE001 -- papermill's error names the failing cell
        lines = str(e).strip().splitlines()
        comparison = f"compare_runs.ipynb failed: {lines[-1] if lines else type(e).__name__} (log: {runs_dir / 'compare_runs.log'})"
    if log_output and comparison is None:
        from mnistlab.summary import comparison as comparison_table, print_comparison

        print_comparison(comparison_table(runs_dir, plan[0].dataset),
                         where=f"Report: make report (from {output}); figures and tables: {runs_dir}/*.png, *.csv")
    write_json(runs_dir / "run_all_timing.json", {
        "seconds": round(time.perf_counter() - start, 1), "planned": len(plan), "skipped": skipped,
        "trained": len(jobs) - len(failures), "failed": len(failures), "comparison": comparison or "completed",
        "workers": workers, "scheduler": scheduler,
        "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")})
    if failures or comparison:
        raise RuntimeError(f"{len(failures)} of {len(jobs)} runs started failed" + (":\n  " if failures else "")
                           + "\n  ".join(failures) + (f"\n{comparison}" if comparison else ""))
    return output




def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {int(seconds % 60):02d} s" if seconds >= 60 else f"{seconds:.0f} s"
