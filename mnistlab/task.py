"""One training run as a task, wherever it runs (this process or a Dask worker): `run_state`
decides whether its config is completed, locked by a live run or to run, and `train_one` then
executes train_model.ipynb with papermill and reports an `Outcome`. `execute_notebook` and
`run_log` are the papermill plumbing that run-all and sweeps share."""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import logging
import os
import shutil
import socket
import sys
import time
from pathlib import Path

from mnistlab.config import TrainConfig, validate
from mnistlab.data import DATA_DIR_ENV, PROJECT_DIR
from mnistlab.registry import LOCATIONS_ENV

NOTEBOOKS_DIR = PROJECT_DIR / "notebooks"
KERNEL_NAME = "mnistlab"  # installed into the venv by `make setup`


@dataclasses.dataclass(frozen=True)
class Task:
    """One planned run: its folder name, its complete config (built once, by the client), what the
    console calls it ("bn_cnn seed 1", "learning_rate=0.003 seed 0") and, for a sweep's trial, the
    Optuna trial that may prune it."""

    run_name: str
    config: TrainConfig
    label: str
    prune: dict | None = None


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How a task ended. `state`: "trained" (its run folder's status is `status`), "skipped" (a
    completed run of the same config exists: `run_dir`), "locked" (the same config is training in
    another process now) or "failed" (the notebook failed before a run folder was written, or the
    run could not start: `detail`). `seconds`: the task's wall time, kernel start included."""

    state: str
    run_dir: str | None = None
    status: str | None = None
    detail: str | None = None
    metrics: dict | None = None
    where: str = ""
    seconds: float = 0.0


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
                     progress_bar: bool = False, kernel=None) -> Path:
    """Execute `notebooks/<name>` with papermill on the project's kernel, in the notebooks folder:
    a new kernel, or `kernel` (a started jupyter_client KernelManager, see `Kernels`).

    Writes the executed copy to `output`; raises papermill.PapermillExecutionError (naming the
    failing cell and its error) if any cell fails. With `log_output`, each cell's output goes to
    the "papermill" logger (see `run_log`).
    """
    import papermill as pm

    output.parent.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(str(NOTEBOOKS_DIR / name), str(output), parameters=parameters,
                        kernel_name=KERNEL_NAME, cwd=str(NOTEBOOKS_DIR), progress_bar=progress_bar,
                        log_output=log_output, stdout_file=None, **({"km": kernel} if kernel is not None else {}))
    return output


def warm(dataset: str) -> None:
    """What a run's kernel does as it starts (Kernels.WARM), before any run needs it: import
    what train_model.ipynb imports (TensorFlow and Keras with it), read `dataset` into
    mnistlab.data's cache, and draw one small figure (matplotlib's fonts and renderer load once).
    An error here (a missing data file) goes to the kernel's log; the run's notebook then meets
    it and says it."""
    import gc
    import io

    import matplotlib.pyplot as plt

    from mnistlab import callbacks, compare, config, live, results, train  # noqa: F401
    from mnistlab.data import load_dataset

    load_dataset(dataset)
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.set_title("0")
    fig.savefig(io.BytesIO(), format="png")
    plt.close(fig)
    # The collection and freeze of Kernels.RESET, done here once (walking everything the imports
    # made takes about 0.6 s), so that the first run's reset finds them done, as later runs' do.
    gc.collect()
    gc.freeze()


class Kernels:
    """One Jupyter kernel kept alive across the training notebooks this process executes, so that
    a run does not pay again for a kernel's start and TensorFlow's import (about 10 s on 2 cores).
    A kernel imports the training stack and reads the data as it starts (`WARM`); run-all starts
    the first one early (`prestart`). Before each run the kernel's namespace is emptied
    (`%reset -f`) and Keras' state cleared; a new kernel starts when something its process fixes
    once differs (TensorFlow's threads and op determinism, the environment: the data folder,
    where model files are, oneDNN's settings), and after a kernel died. `shutdown()` (also at
    exit) stops it."""

    ENVIRONMENT = (DATA_DIR_ENV, LOCATIONS_ENV, "TF_ENABLE_ONEDNN_OPTS", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
    # One garbage collection, then the survivors (TensorFlow's and the libraries' own objects, alive
    # for the kernel's life) frozen out of later collections: each full collection of a kernel
    # that imported TensorFlow walks them all (about 0.3 s), and a reset with three of them cost a
    # run 1.3 s; frozen, the reset takes 0.3 s. A run's garbage is created after the freeze and
    # collected as usual.
    RESET = ("%reset -f\nimport gc as _gc, keras as _keras\n_keras.backend.clear_session(free_memory=False)\n"
             "_gc.collect()\n_gc.freeze()\ndel _gc, _keras")

    # Done by every kernel as it starts (IPython's exec_lines: before it answers any request).
    WARM = ("import mnistlab.task", "mnistlab.task.warm({dataset!r})")
    READY_SECONDS = 300  # a kernel's start and WARM, on a loaded machine

    def __init__(self):
        self.manager, self.key = None, None

    def prestart(self, config: TrainConfig) -> None:
        """Start the kernel a run of `config` will use, and return at once: the kernel does its
        `WARM` work while this process goes on (run-all checks the plan's builders meanwhile, which
        takes about as long), and the first run finds it ready instead of waiting about 5 s."""
        self.for_config(config, wait=False)

    def for_config(self, config: TrainConfig, wait: bool = True):
        """A started kernel manager for a run of `config`, ready, with a fresh namespace (with
        `wait=False`, a kernel that may still be starting)."""
        key = (config.threads, config.deterministic, config.onednn_ops,
               tuple(os.environ.get(name) for name in self.ENVIRONMENT))
        if self.manager is not None and (key != self.key or not self.manager.is_alive()):
            self.shutdown()
        if self.manager is None:
            from jupyter_client.manager import KernelManager

            self.manager = KernelManager(kernel_name=KERNEL_NAME)
            self.manager.start_kernel(cwd=str(NOTEBOOKS_DIR), extra_arguments=[
                f"--IPKernelApp.exec_lines={line.format(dataset=config.dataset)}" for line in self.WARM])
            self.key = key
            if not wait:
                return self.manager
        self._reset()
        return self.manager

    def reuse(self):
        """The kernel alive now, ready and with a fresh namespace, or None: for a notebook that
        follows the runs (run-all's comparison, a sweep's report), which then finds its imports
        done instead of starting a kernel (about 5 s on 2 cores)."""
        if self.manager is None or not self.manager.is_alive():
            return None
        self._reset()
        return self.manager

    def _reset(self) -> None:
        client = self.manager.client()
        client.start_channels()
        try:
            client.wait_for_ready(timeout=self.READY_SECONDS)
            client.execute_interactive(self.RESET, timeout=60, output_hook=lambda message: None)
        finally:
            client.stop_channels()

    def shutdown(self) -> None:
        manager, self.manager, self.key = self.manager, None, None
        if manager is None:
            return
        try:
            manager.shutdown_kernel(now=True)
        except BaseException:  # noqa: BLE001 -- at exit, or after Ctrl-C, its event loop may be gone: kill it
            with contextlib.suppress(BaseException):
                os.kill(manager.provisioner.process.pid, 9)


KERNELS = Kernels()
atexit.register(KERNELS.shutdown)


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
    from mnistlab.quiet import LOG_ENV

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
        saved_tf_log = os.environ.get(LOG_ENV)
        os.environ[LOG_ENV] = str(path)  # a kernel started meanwhile logs TensorFlow's start-up lines here
        try:
            yield
        finally:
            if saved_tf_log is None:
                os.environ.pop(LOG_ENV, None)
            else:
                os.environ[LOG_ENV] = saved_tf_log
            sys.stderr.flush()
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
            logger.removeHandler(handler)
            logger.setLevel(saved_level)
            logger.propagate = saved_propagate


def result_text(metrics: dict) -> str:
    """A completed run's result from its metrics.json: "test accuracy 0.9801, 14.2 s of training"."""
    return f"test accuracy {metrics['test_accuracy']:.4f}, {metrics['train_seconds']:.1f} s of training"


def worker_name() -> str:
    """This Dask worker's address, or the host and process id outside Dask."""
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"{socket.gethostname()}:{os.getpid()}"


def run_state(config: TrainConfig, runs_dir: Path, force: bool = False) -> tuple[str, str | None]:
    """Whether a run of `config` in `runs_dir` is ("completed", the completed run's name), ("locked",
    None): the same config is training in a live process, or ("to run", None). Decided by the
    config hash a run started here would record (settings as they resolve here, the architecture
    fingerprint and model file digest); `force` ignores completed runs. The one place this is
    decided: where the run would start. Raises BuilderError for a builder that breaks the contract."""
    from mnistlab.architecture import planned_hash
    from mnistlab.results import completed_runs_by_hash
    from mnistlab.runs import is_locked

    config_hash = planned_hash(config)
    if not force:
        existing = completed_runs_by_hash(runs_dir).get(config_hash)
        if existing is not None:
            return "completed", existing
    if is_locked(runs_dir, config_hash):
        return "locked", None
    return "to run", None


def export_locations(locations: dict | None) -> None:
    """Tell the kernels started from now on where the config's model files are in this process
    ({as given: path}), added to those already told."""
    if locations:
        os.environ[LOCATIONS_ENV] = json.dumps({**json.loads(os.environ.get(LOCATIONS_ENV) or "{}"), **locations})


def train_one(task: Task, runs_dir: Path, data_dir: str | None = None, force: bool = False,
              log_output: bool = True, verbose: bool = False, locations: dict | None = None) -> Outcome:
    """Run `task` where this function runs: decide its state (`run_state`), and if it is to run,
    execute train_model.ipynb with its complete config, keep the executed notebook and `train.log`
    (everything the kernel and papermill printed) in its run folder, and print its epoch lines
    (`log_output`; every line with `verbose`).

    `data_dir`: where the kernel reads the data (a worker's own $MNISTLAB_DATA_DIR wins).
    `locations`: where the config's model files are in this process ({as given: path}; a Dask
    worker has its own, from the client's copies). Never raises for a failed run: the Outcome
    says how the task ended.
    """
    from mnistlab.results import run_status
    from mnistlab.runs import read_json

    started = time.perf_counter()
    where = worker_name()
    runs_dir = Path(runs_dir)
    if data_dir and not os.environ.get(DATA_DIR_ENV):
        os.environ[DATA_DIR_ENV] = str(data_dir)  # the kernel started next inherits it
    export_locations(locations)
    try:
        validate(task.config)  # once per process: on a Dask worker, the model files load here
        state, existing = run_state(task.config, runs_dir, force)
    except ValueError as e:
        return Outcome("failed", detail=f"{task.run_name} on {where}: {e}", where=where)
    if state == "completed":
        return Outcome("skipped", run_dir=str(runs_dir / existing), status="completed", where=where,
                       metrics=read_json(runs_dir / existing / "metrics.json"))
    if state == "locked":
        return Outcome("locked", detail=f"{task.run_name}: not started: the same config is training right now "
                       "(its backup is locked); run again once it ends", where=where)
    partial = runs_dir / ".notebooks" / f"{task.run_name}.ipynb"
    log_path = runs_dir / ".logs" / f"{task.run_name}.log"
    failure = None
    try:
        with run_log(log_path, echo=log_output, echo_all=verbose):
            execute_notebook("train_model.ipynb", partial,
                             parameters={"config": task.config.to_dict(), "runs_dir": str(runs_dir),
                                         "run_name": task.run_name, "prune": task.prune or {}, "live": False},
                             kernel=KERNELS.for_config(task.config))
    except Exception as e:  # noqa: BLE001 -- papermill's error names the cell and shows its traceback
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(f"\n{e}\n")
        lines = str(e).strip().splitlines()
        failure = f"{lines[-1] if lines else type(e).__name__}"
        KERNELS.shutdown()  # whatever went wrong, the next run starts in a new kernel
    run_dir = runs_dir / task.run_name
    seconds = time.perf_counter() - started
    if not run_dir.is_dir():
        return Outcome("failed", detail=f"{task.run_name} on {where}: {failure} (log: {log_path})", where=where,
                       seconds=seconds)
    for source, name in ((partial, "train_model.ipynb"), (log_path, "train.log")):
        if source.is_file():
            shutil.move(source, run_dir / name)
    status = run_status(run_dir)
    if status == "completed":
        return Outcome("trained", run_dir=str(run_dir), status=status, where=where, seconds=seconds,
                       metrics=read_json(run_dir / "metrics.json"))
    recorded = read_json(run_dir / "status.json")
    detail = recorded.get("detail") or recorded.get("error") or failure
    return Outcome("trained", run_dir=str(run_dir), status=status, where=where, seconds=seconds,
                   detail=f"{detail} (log: {run_dir / 'train.log'})")
