"""Running training notebooks: `train_one` executes train_model.ipynb for one run, and
`Executor` runs such tasks in this process or on Dask workers (a LocalCluster, or an existing
cluster at a scheduler address). run-all and sweeps both use it.

A task carries everything its run needs (the complete config, the runs folder, the data folder,
the kernel's name), not the environment of whichever process runs it. Before the first task, every
Dask worker is checked (`check_worker`): one without mnistlab, the data, the runs folder or the
kernel is named once with the fix, and no task is sent to it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import sys
from pathlib import Path

from mnistlab.config import TrainConfig
from mnistlab.data import DATA_DIR_ENV, PROJECT_DIR, default_data_dir

NOTEBOOKS_DIR = PROJECT_DIR / "notebooks"
KERNEL_NAME = "mnistlab"  # installed into the venv by `make setup`


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
                     progress_bar: bool = False) -> Path:
    """Execute `notebooks/<name>` with papermill on the project's kernel, in the notebooks folder.

    Writes the executed copy to `output`; raises papermill.PapermillExecutionError (naming the
    failing cell and its error) if any cell fails. With `log_output`, each cell's output goes to
    the "papermill" logger (see `run_log`).
    """
    import papermill as pm

    output.parent.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(str(NOTEBOOKS_DIR / name), str(output), parameters=parameters,
                        kernel_name=KERNEL_NAME, cwd=str(NOTEBOOKS_DIR), progress_bar=progress_bar,
                        log_output=log_output, stdout_file=None)
    return output


class _LogLines(logging.Handler):
    """Writes every papermill record to the log file; echoes to stdout the lines a person wants
    on the console (epoch lines, resumption), or every line with `echo_all`."""

    def __init__(self, log, echo_all: bool, echo: bool):
        super().__init__(logging.INFO)
        self.log, self.echo_all, self.echo = log, echo_all, echo

    def emit(self, record):
        message = record.getMessage()
        self.log.write(message.rstrip("\n") + "\n")
        for line in message.splitlines():
            if self.echo_all or (self.echo and line.startswith(("epoch ", "Resuming ", "The backup "))):
                print(f"    {line}", flush=True)


@contextlib.contextmanager
def run_log(path: Path, echo: bool = True, echo_all: bool = False):
    """While the body runs, send this process's standard error (file descriptor 2, which a kernel
    started meanwhile inherits: TensorFlow's C++ log, the kernel's warnings) and papermill's cell
    chatter to `path`; print only the epoch lines (`echo`), or everything (`echo_all`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger("papermill")
    with open(path, "a", buffering=1, encoding="utf-8", errors="replace") as log:
        handler = _LogLines(log, echo_all, echo)
        saved_level, saved_propagate = logger.level, logger.propagate
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
        sys.stderr.flush()
        saved_fd = os.dup(2)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
            logger.removeHandler(handler)
            logger.setLevel(saved_level)
            logger.propagate = saved_propagate


def result_line(run_dir: Path) -> str:
    """One line on how a run ended: "test accuracy 0.9801, 14.2 s of training, <folder>"."""
    from mnistlab.results import run_status
    from mnistlab.runs import read_json

    status = run_status(run_dir)
    if status != "completed":
        detail = read_json(run_dir / "status.json").get("detail") or read_json(run_dir / "status.json").get("error")
        return f"{status}: {detail} ({run_dir})"
    return f"{result_text(read_json(run_dir / 'metrics.json'))}, {run_dir}"


def result_text(metrics: dict) -> str:
    """A completed run's result from its metrics.json: "test accuracy 0.9801, 14.2 s of training"."""
    return f"test accuracy {metrics['test_accuracy']:.4f}, {metrics['train_seconds']:.1f} s of training"


def train_one(run_name: str, config: dict, runs_dir: Path, log_output: bool = True, verbose: bool = False,
              prune: dict | None = None, data_dir: str | None = None, force: bool = False) -> str | None:
    """Execute train_model.ipynb for one run of `config` (a complete TrainConfig as a dict), keep
    the executed notebook and `train.log` (everything the kernel and papermill printed) in its run
    folder, and print its epoch lines (`log_output`; every line with `verbose`) and a result line.
    `data_dir`: where the kernel reads the data (a worker's own $MNISTLAB_DATA_DIR wins).
    Unless `force`, a config with a completed run in `runs_dir` is not trained again.

    Returns None on success, else a one-line description of the failure. Runs in this process,
    or in a Dask worker for parallel batches.
    """
    from mnistlab.config import make_config
    from mnistlab.machine import planned_hash
    from mnistlab.results import completed_runs_by_hash
    from mnistlab.runs import is_locked

    runs_dir = Path(runs_dir)
    partial = runs_dir / ".notebooks" / f"{run_name}.ipynb"
    log_path = runs_dir / ".logs" / f"{run_name}.log"
    failure = None
    if data_dir and not os.environ.get(DATA_DIR_ENV):
        os.environ[DATA_DIR_ENV] = str(data_dir)  # the kernel started next inherits it
    # Checked where the run would start (a client may have planned it before another finished it).
    config_hash = planned_hash(make_config(**config))
    if not force and config_hash in completed_runs_by_hash(runs_dir):
        return None
    if is_locked(runs_dir, config_hash):
        return f"{run_name}: not started: the same config is training right now (its backup is locked)"
    try:
        with run_log(log_path, echo=log_output, echo_all=verbose):
            execute_notebook("train_model.ipynb", partial,
                             parameters={"config": config, "runs_dir": str(runs_dir), "run_name": run_name,
                                         "prune": prune or {}})
    except Exception as e:  # noqa: BLE001 -- papermill's error names the cell and shows its traceback
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(f"\n{e}\n")
        lines = str(e).strip().splitlines()
        failure = f"{run_name} on {worker_name()}: {lines[-1] if lines else type(e).__name__} (log: {log_path})"
    run_dir = runs_dir / run_name
    if run_dir.is_dir():
        for source, name in ((partial, "train_model.ipynb"), (log_path, "train.log")):
            if source.is_file():
                shutil.move(source, run_dir / name)
        failure = failure.replace(str(log_path), str(run_dir / "train.log")) if failure else None
        if log_output:
            print(f"    {result_line(run_dir)}", flush=True)
    return failure


def worker_name() -> str:
    """This Dask worker's address, or the host and process id outside Dask."""
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"{socket.gethostname()}:{os.getpid()}"


def check_worker(runs_dir: str, data_dir: str, dataset: str, kernel: str = KERNEL_NAME) -> str | None:
    """On a worker, before any of its tasks: None if it can run them, else one line naming the
    worker, what it lacks and the fix. The runs folder must already exist at the same path (a
    shared folder: creating it here would split the results); the data must verify against the
    published SHA-256 (the worker's own $MNISTLAB_DATA_DIR, else the client's data folder)."""
    from mnistlab.data import DataError, dataset_info, verify_dataset

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
    return None


class Executor:
    """Runs train_model.ipynb tasks (train_one) one at a time in this process, or `workers` at a
    time on a Dask LocalCluster, or on an existing Dask cluster at `scheduler`. Submit tasks,
    then take results as they finish with `next_result`."""

    def __init__(self, runs_dir: Path, workers: int = 1, scheduler: str | None = None, log_output: bool = True,
                 dataset: str = "mnist", verbose: bool = False, force: bool = False):
        self.runs_dir, self.workers, self.scheduler, self.log_output = Path(runs_dir), workers, scheduler, log_output
        self.verbose, self.force = verbose, force
        self.dataset, self.data_dir = dataset, str(default_data_dir().resolve())
        self.parallel = workers > 1 or bool(scheduler)
        self._pending: dict = {}  # future (or run name, in process) -> run name
        self._done: list[tuple[str, str | None]] = []
        self.bad_workers: dict[str, str] = {}
        self._where: dict[str, str] = {}

    def __enter__(self):
        if self.parallel:
            from dask.distributed import Client, LocalCluster

            self._cluster = None if self.scheduler else LocalCluster(
                n_workers=self.workers, threads_per_worker=1, processes=True, dashboard_address=None)
            self._client = Client(self.scheduler or self._cluster, timeout="30s")
            checks = self._client.run(check_worker, str(self.runs_dir), self.data_dir, self.dataset,
                                      on_error="return")
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
                raise RuntimeError("no Dask worker can run mnistlab's tasks: see the lines above")
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
                                         self.data_dir, self.force, pure=False, workers=self.good_workers)
            self._pending[future] = run_name
        else:
            self._done.append((run_name, train_one(run_name, config.to_dict(), self.runs_dir, self.log_output,
                                                   self.verbose, prune=prune, force=self.force)))

    def next_result(self) -> tuple[str, str | None]:
        """(run name, failure or None) of a finished task; blocks until one finishes."""
        if self._done:
            return self._done.pop(0)
        from dask.distributed import wait

        finished = next(iter(wait(list(self._pending), return_when="FIRST_COMPLETED").done))
        run_name = self._pending.pop(finished)
        with contextlib.suppress(Exception):  # only for display
            self._where[run_name] = ", ".join(self._client.who_has([finished]).get(finished.key, ())) or "?"
        try:
            return run_name, finished.result()
        except Exception as e:  # noqa: BLE001 -- a task that could not even start on its worker
            return run_name, f"{run_name}: {type(e).__name__}: {e}"

    def where(self, run_name: str) -> str:
        """The worker that ran `run_name` (this process when not on Dask)."""
        return self._where.get(run_name, "this process")
