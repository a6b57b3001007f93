"""Batch execution (`make run-all`): run the training notebook once per model and seed through
papermill, each with one complete, validated config; keep each executed notebook in its run
folder; then run the comparison notebook."""

from __future__ import annotations

import datetime
import logging
import os
import shutil
import sys
import time
from pathlib import Path

from mnistlab.config import TrainConfig, make_config
from mnistlab.data import PROJECT_DIR
from mnistlab.machine import available_cores
from mnistlab.recipes import expand_model_names
from mnistlab.results import completed_runs_by_hash
from mnistlab.runs import check_writable, new_run_name, resolve_runs_dir, write_json

NOTEBOOKS_DIR = PROJECT_DIR / "notebooks"
KERNEL_NAME = "mnistlab"  # installed into the venv by `make setup`
# Keys run-all sets itself, per run: an override of them would make every run the same.
PLAN_KEYS = ("model", "seed")


def check_kernel(kernel_name: str = KERNEL_NAME) -> None:
    """Raise RuntimeError with the fix if the project's Jupyter kernel is not installed."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(kernel_name)
    except NoSuchKernel:
        raise RuntimeError(
            f"Jupyter kernel {kernel_name!r} is not installed. Run `make setup`, or "
            f"`{sys.executable} -m ipykernel install --sys-prefix --name {kernel_name}`."
        ) from None


def execute_notebook(name: str, output: Path, parameters: dict, log_output: bool = True,
                     progress_bar: bool = True) -> Path:
    """Execute `notebooks/<name>` with papermill on the project's kernel, in the notebooks folder.

    Writes the executed copy to `output`; raises papermill.PapermillExecutionError (naming the
    failing cell and its error) if any cell fails.
    """
    import papermill as pm

    output.parent.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(str(NOTEBOOKS_DIR / name), str(output), parameters=parameters,
                        kernel_name=KERNEL_NAME, cwd=str(NOTEBOOKS_DIR), progress_bar=progress_bar,
                        log_output=log_output, stdout_file=None)
    return output


def _show_papermill_log() -> None:
    # papermill logs each cell's output (the epoch lines) at INFO on its own logger.
    logger = logging.getLogger("papermill")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def train_one(run_name: str, config: dict, runs_dir: Path, log_output: bool = True,
              progress_bar: bool = True, prune: dict | None = None) -> str | None:
    """Execute train_model.ipynb for one run of `config` (a complete TrainConfig as a dict) and
    keep the executed notebook in its run folder.

    Returns None on success, else a one-line description of the failure (the full cell error
    is printed). Runs in this process, or in a Dask worker for parallel batches.
    """
    partial = runs_dir / ".notebooks" / f"{run_name}.ipynb"
    failure = None
    try:
        execute_notebook("train_model.ipynb", partial, log_output=log_output, progress_bar=progress_bar,
                         parameters={"config": config, "runs_dir": str(runs_dir), "run_name": run_name,
                                     "prune": prune or {}})
    except Exception as e:  # noqa: BLE001 -- papermill's error names the cell and shows its traceback
        print(f"FAILED {run_name}:\n{e}", file=sys.stderr, flush=True)
        failure = f"{run_name}: {str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__}"
    if (runs_dir / run_name).is_dir() and partial.is_file():
        shutil.move(partial, runs_dir / run_name / "train_model.ipynb")
    return failure


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
            **overrides) -> Path:
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
    """
    from mnistlab.train import planned_hash

    plan = plan_runs(models, seeds, workers, scheduler, **overrides)
    runs_dir = resolve_runs_dir(runs_dir)
    check_writable(runs_dir)
    check_kernel()
    if log_output:
        _show_papermill_log()
    done = {} if force else completed_runs_by_hash(runs_dir)
    start = time.perf_counter()
    jobs = []
    for i, config in enumerate(plan, 1):
        completed = done.get(planned_hash(config))
        if completed:
            print(f"[{i}/{len(plan)}] skip {config.model}, seed {config.seed}: completed as "
                  f"{completed} (FORCE=1 re-runs it)", flush=True)
            continue
        jobs.append((i, new_run_name(config.model), config))
    failures = []
    with Executor(runs_dir, workers, scheduler, log_output) as executor:
        for i, run_name, config in jobs:
            print(f"[{i}/{len(plan)}] {run_name}: {config.model}, seed {config.seed}", flush=True)
            executor.submit(run_name, config)
            while executor.in_flight >= executor.capacity or (i == jobs[-1][0] and executor.in_flight):
                done, failure = executor.next_result()
                print(f"{'FAILED' if failure else 'done'} {done}", flush=True)
                failures.append(failure)
    failures = [f for f in failures if f]
    output = runs_dir / "compare_runs.ipynb"
    comparison = None
    try:
        execute_notebook("compare_runs.ipynb", output, log_output=log_output,
                         parameters={"runs_dir": str(runs_dir), "dataset": plan[0].dataset})
    except Exception as e:  # noqa: BLE001 -- papermill's error names the failing cell
        lines = str(e).strip().splitlines()
        comparison = f"compare_runs.ipynb failed: {lines[-1] if lines else type(e).__name__}"
    write_json(runs_dir / "run_all_timing.json", {
        "seconds": round(time.perf_counter() - start, 1), "planned": len(plan), "skipped": len(plan) - len(jobs),
        "trained": len(jobs) - len(failures), "failed": len(failures), "comparison": comparison or "completed",
        "workers": workers, "scheduler": scheduler,
        "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")})
    if failures or comparison:
        raise RuntimeError(f"{len(failures)} of {len(jobs)} runs started failed" + (":\n  " if failures else "")
                           + "\n  ".join(failures) + (f"\n{comparison}" if comparison else ""))
    return output


class Executor:
    """Runs train_model.ipynb tasks (train_one) one at a time in this process, or `workers` at a
    time on a Dask LocalCluster, or on an existing Dask cluster at `scheduler`. Submit tasks,
    then take results as they finish with `next_result`."""

    def __init__(self, runs_dir: Path, workers: int = 1, scheduler: str | None = None, log_output: bool = True):
        self.runs_dir, self.workers, self.scheduler, self.log_output = runs_dir, workers, scheduler, log_output
        self.parallel = workers > 1 or bool(scheduler)
        self._pending: dict = {}  # future (or run name, in process) -> run name
        self._done: list[tuple[str, str | None]] = []

    def __enter__(self):
        if self.parallel:
            from dask.distributed import Client, LocalCluster

            self._cluster = None if self.scheduler else LocalCluster(
                n_workers=self.workers, threads_per_worker=1, processes=True, dashboard_address=None)
            self._client = Client(self.scheduler or self._cluster)
            print(f"Dask: {self._client}", flush=True)
        return self

    def __exit__(self, *exc):
        if self.parallel:
            self._client.close()
            if self._cluster is not None:
                self._cluster.close()

    @property
    def capacity(self) -> int:
        """Tasks that can run at once."""
        return max(1, self.workers) if self.parallel else 1

    @property
    def in_flight(self) -> int:
        return len(self._pending) + len(self._done)

    def submit(self, run_name: str, config: TrainConfig, prune: dict | None = None) -> None:
        if self.parallel:
            future = self._client.submit(train_one, run_name, config.to_dict(), self.runs_dir, False, False, prune,
                                         pure=False)
            self._pending[future] = run_name
        else:
            self._done.append((run_name, train_one(run_name, config.to_dict(), self.runs_dir, self.log_output,
                                                   prune=prune)))

    def next_result(self) -> tuple[str, str | None]:
        """(run name, failure or None) of a finished task; blocks until one finishes."""
        if self._done:
            return self._done.pop(0)
        from dask.distributed import wait

        finished = next(iter(wait(list(self._pending), return_when="FIRST_COMPLETED").done))
        run_name = self._pending.pop(finished)
        try:
            return run_name, finished.result()
        except Exception as e:  # noqa: BLE001 -- a task that could not even start on its worker
            return run_name, f"{run_name}: {type(e).__name__}: {e}"
