"""Writing run folders: names, atomic creation, the record files, and the locked state that lets
an interrupted run resume.

A run folder `<runs_dir>/<model>-<YYYYmmdd-HHMMSS>-<hex>/` holds config.json, history.csv,
metrics.json, status.json, curves.png and model.keras. It is written under a hidden
temporary name (`.tmp-<name>`) and renamed into place only when complete, so nothing that
reads the runs folder ever sees half a run. Reading runs back is mnistlab.results.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import fcntl
import json
import os
import platform
import secrets
import shutil
import subprocess
import tempfile
import traceback
from importlib import metadata
from pathlib import Path

from mnistlab.config import check_run_name
from mnistlab.data import PROJECT_DIR
from mnistlab.machine import describe_machine

RUNS_DIR_ENV = "MNISTLAB_RUNS_DIR"  # the default runs folder (else the project's runs/)
TMP_PREFIX = ".tmp-"
BACKUP_DIR = ".backup"  # <runs_dir>/.backup/<config_hash>/: state of unfinished runs, for resuming
PACKAGES = ("tensorflow", "keras", "numpy", "pandas", "scikit-learn", "matplotlib", "seaborn", "papermill")
HISTORY_COLUMNS = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "epoch_seconds"]


def new_run_name(model: str) -> str:
    """`<model>-<UTC timestamp>-<12 hex digits>`: sortable by time; 48 random bits keep names
    unique across the thousands of runs a sweep or several machines may start in one second."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    return f"{model}-{stamp}-{secrets.token_hex(6)}"


def default_runs_dir() -> Path:
    """`$MNISTLAB_RUNS_DIR` if set, else the project's runs/ folder."""
    return Path(os.environ.get(RUNS_DIR_ENV) or PROJECT_DIR / "runs")


def resolve_runs_dir(runs_dir: str | os.PathLike | None) -> Path:
    """The absolute runs folder: `runs_dir` as the user named it (relative to the working
    directory), or `default_runs_dir()` when None or empty. A folder the user names is theirs to
    choose; what may never escape it is a run name (see mnistlab.config.check_run_name)."""
    if runs_dir is None or str(runs_dir) == "":
        runs_dir = default_runs_dir()
    return Path(runs_dir).expanduser().resolve()


def write_json(path: Path, obj) -> None:
    """Write `obj` as indented JSON via a uniquely named temporary file and a rename, so a
    reader never sees half a file and two writers never share a temporary file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(obj, indent=2, default=str) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: str | os.PathLike) -> dict:
    """A JSON object from `path`. Raises ValueError naming the file if it is missing,
    unreadable, not JSON (e.g. truncated by a kill) or not an object."""
    path = Path(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read it as JSON ({e})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected a JSON object, found {type(value).__name__}")
    return value


def environment_info() -> dict:
    """Package versions, Python, platform, CPU model, oneDNN's ISA and the project's git commit."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        **describe_machine(),
        "packages": versions,
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
    }


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(PROJECT_DIR), *args], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@dataclasses.dataclass
class RunFolder:
    """The run being written: its temporary `path`, and the `status` it will end with."""

    path: Path
    status: str = "completed"  # or "diverged", set by the trainer
    detail: str | None = None


def check_writable(runs_dir: Path) -> None:
    """Create `runs_dir` if needed and make sure a run folder can be written there. Raises
    ValueError naming the folder and the reason (read-only, not a folder, a name the file system
    cannot hold), before any data is loaded or model built."""
    try:
        str(runs_dir).encode("utf-8")  # TensorFlow and Keras take paths as UTF-8 strings
        runs_dir.mkdir(parents=True, exist_ok=True)
        probe = Path(tempfile.mkdtemp(dir=runs_dir, prefix=f"{TMP_PREFIX}probe-"))
        probe.rmdir()
    except (OSError, UnicodeEncodeError) as e:
        reason = ("it is read-only" if getattr(e, "errno", None) in (errno.EACCES, errno.EROFS, errno.EPERM)
                  else "its name is not valid UTF-8" if isinstance(e, UnicodeEncodeError) else e)
        raise ValueError(f"runs_dir {str(runs_dir)!r} cannot hold run folders ({reason}); "
                         "choose another folder with --runs-dir") from None


@contextlib.contextmanager
def open_run(runs_dir: Path, run_name: str):
    """Yield a RunFolder to write a run into; on leaving, rename it to `runs_dir/run_name`.

    Without an exception, status.json gets `run.status` ("completed" unless the body set
    "diverged"). On an exception the folder is still renamed into place with status "failed"
    ("interrupted" for Ctrl-C) and the error, so the failure is visible but never counted as a
    result; the exception propagates. A kill -9 leaves only the hidden `.tmp-<name>` folder,
    which comparisons list as incomplete. Raises FileExistsError if the run exists.
    """
    check_run_name(run_name)
    final = runs_dir / run_name
    tmp = runs_dir / f"{TMP_PREFIX}{run_name}"
    if final.exists() or tmp.exists():
        raise FileExistsError(f"{final} exists already; choose another run_name")
    runs_dir.mkdir(parents=True, exist_ok=True)
    tmp.mkdir(exist_ok=False)  # two processes cannot both get the same name
    run = RunFolder(tmp)
    started = _now()
    try:
        yield run
    except BaseException as e:
        with contextlib.suppress(OSError):  # the disk may be what failed: keep the original error
            write_json(tmp / "status.json", {
                "status": "interrupted" if isinstance(e, KeyboardInterrupt) else "failed",
                "error": f"{type(e).__name__}: {e}",
                "traceback": traceback.format_exc(), "started": started, "ended": _now()})
        with contextlib.suppress(OSError):
            os.replace(tmp, final)
        raise
    write_json(tmp / "status.json", {"status": run.status, "detail": run.detail,
                                     "started": started, "ended": _now()})
    os.replace(tmp, final)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _lock(path: Path):
    """Open and lock `path/lock` (fcntl.flock, exclusive, non-blocking) if no live process holds
    it; return the open file, or None if it is held. The lock lasts while the file is open and
    ends with the process, however it ends (a kill included)."""
    while True:
        f = open(path / "lock", "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            return None
        try:  # the folder may have been removed and made anew while we waited: lock the live file
            if os.fstat(f.fileno()).st_ino == os.stat(path / "lock").st_ino:
                return f
        except FileNotFoundError:
            pass
        f.close()
        path.mkdir(parents=True, exist_ok=True)


@contextlib.contextmanager
def backup_dir(runs_dir: Path, config_hash: str, run_name: str):
    """Yield the folder where an unfinished run of this config keeps its state.

    `runs_dir/.backup/<config_hash>/` is shared by every run of the same config, so a run that
    was killed or interrupted is resumed by the next run of that config. The folder is owned
    through an OS file lock held for the run's life: a second run of the same config while the
    first is alive gets a folder of its own (`<config_hash>-<run_name>`) and starts from scratch.
    The folder is removed when the body finishes without an exception, and kept (for resuming)
    otherwise.
    """
    path = runs_dir / BACKUP_DIR / config_hash
    path.mkdir(parents=True, exist_ok=True)
    lock = _lock(path)
    if lock is None:  # the same config is training right now
        path = runs_dir / BACKUP_DIR / f"{config_hash}-{run_name}"
        path.mkdir(parents=True, exist_ok=False)
        lock = _lock(path)
    try:
        yield path
    except BaseException:
        lock.close()
        raise
    shutil.rmtree(path, ignore_errors=True)
    lock.close()


def is_locked(runs_dir: Path, config_hash: str) -> bool:
    """Whether a live process holds the state folder of `config_hash` (a run of it is training)."""
    path = Path(runs_dir) / BACKUP_DIR / config_hash
    if not (path / "lock").is_file():
        return False
    with open(path / "lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False
