"""Where tasks run: `Executor` runs training tasks (mnistlab.task.train_one) in this process, on a
Dask LocalCluster or on an existing cluster at a scheduler address; `run_tasks` is the one submit /
collect / progress loop that run-all and sweeps share.

A task carries everything its run needs (the complete config, the runs folder, the data folder),
not the environment of whichever process runs it. On Dask, the client ships the plan's model files
to every worker, and each worker is checked before the first task (`check_worker`): one without
mnistlab, the data, the runs folder, the kernel or a model file it can import is named once with
the fix, and no task is sent to it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from mnistlab.data import DATA_DIR_ENV, default_data_dir
from mnistlab.progress import Progress
from mnistlab.registry import LOCATIONS_ENV, is_file_source, load_models_from, resolve_source
from mnistlab.task import KERNEL_NAME, Outcome, Task, check_kernel, train_one, worker_name


def model_files(sources: Iterable[str]) -> dict[str, dict]:
    """The plan's model sources as the client sees them: {as given: {"path", "name", "sha256",
    "content"}} for files, {module name: {"sha256"}} for modules (as imported here)."""
    from mnistlab.registry import REGISTRY

    files = {}
    for source in sources:
        if is_file_source(source):
            path = resolve_source(source)
            content = path.read_bytes()
            files[source] = {"path": str(path), "name": path.name, "content": content,
                             "sha256": hashlib.sha256(content).hexdigest()}
        else:
            origins = [e.origin for e in REGISTRY.values() if e.origin and e.origin.get("module") == source]
            files[source] = {"sha256": origins[0].get("sha256") if origins else None}
    return files


def local_locations(models_from: Iterable[str]) -> dict[str, str]:
    """Where the model files of `models_from` are in this process: {as given: resolved path}."""
    return {source: str(resolve_source(source)) for source in models_from if is_file_source(source)}


def receive_model_files(files: dict[str, dict]) -> dict[str, str]:
    """On a Dask worker: write the client's model files into the worker's own folder
    (<local directory>/mnistlab-models/<sha256>/<name>) and make this process (and the kernels it
    starts) find them there. Returns {as given: path}."""
    try:
        from distributed import get_worker

        base = Path(get_worker().local_directory)
    except (ImportError, ValueError):
        base = Path(tempfile.gettempdir())
    locations = {}
    for given, file in files.items():
        if "content" not in file:
            continue
        folder = base / "mnistlab-models" / file["sha256"]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / file["name"]).write_bytes(file["content"])
        locations[given] = str(folder / file["name"])
    os.environ[LOCATIONS_ENV] = json.dumps({**json.loads(os.environ.get(LOCATIONS_ENV) or "{}"), **locations})
    return locations


def check_worker(runs_dir: str, data_dir: str, dataset: str, kernel: str = KERNEL_NAME,
                 models: dict[str, str | None] | None = None) -> str | None:
    """On a worker, before any of its tasks: None if it can run them, else one line naming the
    worker, what it lacks and the fix. The runs folder must already exist at the same path (a
    shared folder: creating it here would split the results); the data must verify against the
    published SHA-256 (the worker's own $MNISTLAB_DATA_DIR, else the client's data folder); every
    model source of `models` ({as given: the client's SHA-256}) must import here with the client's
    digest."""
    from mnistlab.data import DataError, dataset_info, verify_dataset
    from mnistlab.registry import REGISTRY

    name = worker_name()
    runs = Path(runs_dir)
    if not runs.is_dir() or not os.access(runs, os.W_OK):
        return (f"worker {name}: the runs folder {runs} is not there or not writable; share it with every "
                "worker at the same path (an NFS mount, say)")
    data = Path(os.environ.get(DATA_DIR_ENV) or data_dir)
    try:
        verify_dataset(dataset, data)
    except DataError as e:
        first = str(e).splitlines()[0]
        return (f"worker {name}: the {dataset_info(dataset).folder} data in {data} cannot be used ({first}); "
                f"copy the verified files there (`python -m mnistlab data --data-dir {data}`) or set "
                f"{DATA_DIR_ENV} on the worker")
    try:
        check_kernel(kernel)
    except RuntimeError as e:
        return f"worker {name}: {e}"
    for source, sha256 in (models or {}).items():
        try:
            load_models_from([source])
        except ValueError as e:
            return (f"worker {name}: cannot import the model source {source} ({e}); install what it imports on "
                    "every worker")
        here = {e.origin.get("sha256") for e in REGISTRY.values()
                if e.origin and source in (e.origin.get("given"), e.origin.get("module"))}
        if sha256 and here != {sha256}:
            return (f"worker {name}: imports {source} with SHA-256 {', '.join(sorted(map(str, here)))}, the client's is "
                    f"{sha256}; install the same version of it on every worker")
    return None


class Executor:
    """Runs tasks (train_one) one at a time in this process, or `workers` at a time on a Dask
    LocalCluster, or on an existing Dask cluster at `scheduler`. Submit tasks, then take
    (task, outcome) pairs as they finish with `next_result`. `models_from`: the model sources of
    the plan (files are shipped to Dask workers; in this process, their paths as the client
    resolved them are handed to the kernels)."""

    def __init__(self, runs_dir: Path, workers: int = 1, scheduler: str | None = None, log_output: bool = True,
                 dataset: str = "mnist", verbose: bool = False, force: bool = False, models_from: Iterable[str] = ()):
        self.runs_dir, self.workers, self.scheduler, self.log_output = Path(runs_dir), workers, scheduler, log_output
        self.verbose, self.force = verbose, force
        self.dataset, self.data_dir = dataset, str(default_data_dir().resolve())
        self.models_from = list(dict.fromkeys(models_from))
        self.parallel = workers > 1 or bool(scheduler)
        self._pending: dict = {}  # future -> task
        self._done: list[tuple[Task, Outcome]] = []
        self.bad_workers: dict[str, str] = {}

    def __enter__(self):
        if not self.parallel:
            self.locations = local_locations(self.models_from)
            return self
        from dask.distributed import Client, LocalCluster

        files = model_files(self.models_from)
        # No dashboard, and the scheduler's own HTTP server (which it starts even so) on a free port rather
        # than 8787: no "Port 8787 is already in use" warning beside another cluster or a second run-all.
        self._cluster = None if self.scheduler else LocalCluster(
            n_workers=self.workers, threads_per_worker=1, processes=True, dashboard_address=None,
            scheduler_kwargs={"dashboard_address": ":0"})
        self._client = Client(self.scheduler or self._cluster, timeout="30s")
        shipped = {s: f for s, f in files.items() if "content" in f}
        if shipped:
            self._client.run(receive_model_files, shipped)
        checks = self._client.run(check_worker, str(self.runs_dir), self.data_dir, self.dataset, KERNEL_NAME,
                                  {s: f["sha256"] for s, f in files.items()}, on_error="return")
        for worker, result in checks.items():
            if isinstance(result, BaseException):  # it could not even load mnistlab's check
                result = (f"worker {worker}: cannot run mnistlab ({type(result).__name__}: {result}); install "
                          "the project and its requirements on every worker (pip install -e .)")
            if result:
                self.bad_workers[worker] = result
                print(result, file=sys.stderr, flush=True)
        self.good_workers = [w for w in checks if w not in self.bad_workers]
        self.workers = len(self.good_workers)
        print(f"Dask: {len(self.good_workers)} of {len(checks)} workers can run tasks "
              f"({self.scheduler or 'a LocalCluster'})", flush=True)
        if not self.good_workers:
            self.__exit__()
            raise RuntimeError("no Dask worker can run mnistlab's tasks: see the lines above")
        return self

    def execute_notebook(self, name: str, output: Path, parameters: dict) -> Path:
        """Execute a notebook that follows the tasks (mnistlab.task.execute_notebook), such as a
        comparison or a report: in this process's kernel of the runs, where one is alive (run one
        at a time), else in a new kernel."""
        from mnistlab.task import KERNELS, execute_notebook

        return execute_notebook(name, output, parameters=parameters, kernel=KERNELS.reuse())

    def __exit__(self, *exc):
        from mnistlab.task import KERNELS

        KERNELS.shutdown()
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

    def submit(self, task: Task) -> None:
        if self.parallel:
            future = self._client.submit(train_one, task, self.runs_dir, self.data_dir, self.force, False, False,
                                         pure=False, workers=self.good_workers)
            self._pending[future] = task
        else:
            self._done.append((task, train_one(task, self.runs_dir, force=self.force, log_output=self.log_output,
                                               verbose=self.verbose, locations=self.locations)))

    def next_result(self) -> tuple[Task, Outcome]:
        """(task, outcome) of a finished task; blocks until one finishes."""
        if self._done:
            return self._done.pop(0)
        from dask.distributed import wait

        finished = next(iter(wait(list(self._pending), return_when="FIRST_COMPLETED").done))
        task = self._pending.pop(finished)
        try:
            return task, finished.result()
        except Exception as e:  # noqa: BLE001 -- a task that could not even start on its worker
            return task, Outcome("failed", detail=f"{task.run_name}: {type(e).__name__}: {e}")


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a plan: its message says what was kept and how to resume."""


def run_tasks(executor: Executor, tasks: Iterable[Task], progress: Progress,
              on_outcome: Callable[[Task, Outcome], None] | None = None,
              remaining: Callable[[], list[Task]] | None = None) -> list[tuple[Task, Outcome]]:
    """Submit `tasks` (an iterable, pulled only when the executor has room, so that a search can
    ask for its next trial after the last results; one that yields None has nothing to submit
    until a running task finishes), collect each outcome as it finishes, call
    `on_outcome`, and print the progress. `remaining()` lists the tasks not yet finished, for the
    time left (default: those of `tasks`, if it is a list, not yet finished). Returns every
    (task, outcome), in the order they finished."""
    source = iter(tasks)
    planned = list(tasks) if isinstance(tasks, list) else None
    finished: list[tuple[Task, Outcome]] = []
    try:
        _loop(executor, source, planned, finished, progress, on_outcome, remaining)
    except KeyboardInterrupt:
        kept = sum(o.state in ("trained", "skipped") and o.status == "completed" for _, o in finished)
        raise Interrupted(f"interrupted: {kept} completed run(s) are kept in {executor.runs_dir}; the run in progress "
                          "is kept as interrupted, and running the same command again resumes it from its last "
                          "finished epoch and skips the completed ones") from None
    return finished


def _loop(executor, source, planned, finished, progress, on_outcome, remaining) -> None:
    exhausted = False
    while True:
        while not exhausted and executor.in_flight < executor.capacity:
            try:
                task = next(source)
            except StopIteration:
                exhausted = True
                break
            if task is None:
                break
            progress.run_started(task)
            executor.submit(task)
        if not executor.in_flight:
            return
        task, outcome = executor.next_result()
        finished.append((task, outcome))
        if outcome.status == "interrupted":  # Ctrl-C reached the run's kernel first: the plan stops too
            raise KeyboardInterrupt
        if on_outcome is not None:
            on_outcome(task, outcome)
        done = {t.run_name for t, _ in finished}
        left = remaining() if remaining else [t for t in planned or [] if t.run_name not in done]
        progress.run_finished(task, outcome, left, parallel=executor.parallel)
