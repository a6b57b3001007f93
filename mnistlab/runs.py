"""Run folders: naming, atomic creation, the record files, and reading runs back for comparison.

A run folder `runs/<model>-<YYYYmmdd-HHMMSS>-<hex>/` holds config.json, history.csv,
metrics.json, status.json, curves.png and model.keras. It is written under a hidden
temporary name (`.tmp-<name>`) and renamed into place only when complete, so nothing that
reads `runs/` ever sees half a run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import platform
import secrets
import shutil
import subprocess
import traceback
from importlib import metadata
from pathlib import Path

import pandas as pd

from mnistlab.config import check_run_name, config_hash, describe_variant
from mnistlab.data import PROJECT_DIR

DEFAULT_RUNS_DIR = PROJECT_DIR / "runs"
RUNS_ROOT_ENV = "MNISTLAB_RUNS_ROOT"  # run folders may only be written below this (default runs/)
TMP_PREFIX = ".tmp-"
BACKUP_DIR = ".backup"  # runs/.backup/<config_hash>/: state of unfinished runs, for resuming
PACKAGES = ("tensorflow", "keras", "numpy", "pandas", "scikit-learn", "matplotlib", "seaborn", "papermill")
METRIC_COLUMNS = ["test_accuracy", "test_loss", "val_accuracy", "params", "train_seconds",
                  "images_per_second", "epochs_run"]
HISTORY_COLUMNS = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "epoch_seconds"]


def new_run_name(model: str) -> str:
    """`<model>-<UTC timestamp>-<4 hex digits>`: sortable by time, unique across processes."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    return f"{model}-{stamp}-{secrets.token_hex(2)}"


def runs_root() -> Path:
    """`$MNISTLAB_RUNS_ROOT` if set, else the project's runs/ folder."""
    return Path(os.environ.get(RUNS_ROOT_ENV) or DEFAULT_RUNS_DIR).resolve()


def resolve_runs_dir(runs_dir: str | os.PathLike | None) -> Path:
    """The absolute runs directory; refuses one that escapes the runs root.

    Relative paths are taken from the working directory (a notebook's is notebooks/, so its
    default "../runs" is the project's runs/). Raises ValueError naming the parameter, the
    resolved path and the root, so that a typo or a crafted path cannot write elsewhere.
    """
    root = runs_root()
    if runs_dir is None or str(runs_dir) == "":
        return root
    resolved = Path(runs_dir).expanduser().resolve()
    if resolved != root and root not in resolved.parents:
        raise ValueError(
            f"runs_dir={str(runs_dir)!r} resolves to {resolved}, outside the runs root {root}. "
            f"Use a folder inside it, or set {RUNS_ROOT_ENV} to the folder that should hold runs."
        )
    return resolved


def write_json(path: Path, obj) -> None:
    """Write `obj` as indented JSON via a temporary file and a rename (never half-written)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def environment_info() -> dict:
    """Package versions, Python, platform and the project's git commit (None outside git)."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
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


@contextlib.contextmanager
def open_run(runs_dir: str | os.PathLike, run_name: str):
    """Yield a RunFolder to write a run into; on leaving, rename it to `runs_dir/run_name`.

    Without an exception, status.json gets `run.status` ("completed" unless the body set
    "diverged"). On an exception the folder is still renamed into place with status "failed"
    ("interrupted" for Ctrl-C) and the error, so the failure is visible but never
    counted as a result; the exception propagates. A kill -9 leaves only the hidden
    `.tmp-<name>` folder, which comparisons list as incomplete. Raises FileExistsError if
    the run exists, ValueError if `runs_dir` escapes the runs root (see resolve_runs_dir).
    """
    runs_dir = resolve_runs_dir(runs_dir)
    check_run_name(run_name)
    final = runs_dir / run_name
    if final.exists():
        raise FileExistsError(f"{final} exists already; choose another run_name")
    tmp = runs_dir / f"{TMP_PREFIX}{run_name}"
    runs_dir.mkdir(parents=True, exist_ok=True)
    tmp.mkdir(exist_ok=False)  # two processes cannot both get the same name
    run = RunFolder(tmp)
    started = _now()
    try:
        yield run
    except BaseException as e:
        write_json(tmp / "status.json", {
            "status": "interrupted" if isinstance(e, KeyboardInterrupt) else "failed",
            "error": f"{type(e).__name__}: {e}",
            "traceback": traceback.format_exc(), "started": started, "ended": _now()})
        os.replace(tmp, final)
        raise
    write_json(tmp / "status.json", {"status": run.status, "detail": run.detail,
                                     "started": started, "ended": _now()})
    os.replace(tmp, final)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def run_status(run_dir: Path) -> str:
    """"completed", "diverged", "failed", "interrupted", or "incomplete" (no status.json, or a
    temporary folder: a run still going, or one that was killed)."""
    if Path(run_dir).name.startswith(TMP_PREFIX) or not (Path(run_dir) / "status.json").is_file():
        return "incomplete"
    return read_json(Path(run_dir) / "status.json").get("status", "incomplete")


def list_run_dirs(runs_dir: str | os.PathLike) -> list[Path]:
    """Every run folder in `runs_dir` (temporary ones included), sorted by name."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    return sorted(p for p in runs_dir.iterdir() if p.is_dir() and (p / "config.json").is_file())


def load_history(run_dir: str | os.PathLike) -> pd.DataFrame:
    """A run's per-epoch history: one row per epoch, columns HISTORY_COLUMNS."""
    return pd.read_csv(Path(run_dir) / "history.csv")


def load_runs(runs_dir: str | os.PathLike = DEFAULT_RUNS_DIR) -> pd.DataFrame:
    """One row per run folder: run, model, dataset, seed, status, the settings and final metrics.

    Runs that are not completed have NaN metrics; filter on `status == "completed"` before
    comparing (the comparison notebook does).
    """
    rows = []
    for run_dir in list_run_dirs(runs_dir):
        config = read_json(run_dir / "config.json")
        settings = config.get("config", {})
        metrics_path = run_dir / "metrics.json"
        metrics = read_json(metrics_path) if metrics_path.is_file() else {}
        status = run_status(run_dir)
        rows.append({
            "run": run_dir.name, "model": settings.get("model"), "variant": describe_variant(settings),
            "dataset": settings.get("dataset"),
            "seed": settings.get("seed"), "status": status,
            "epochs": settings.get("epochs"), "batch_size": settings.get("batch_size"),
            "learning_rate": settings.get("learning_rate"), "limit": settings.get("limit"),
            **{k: metrics.get(k) if status == "completed" else None for k in METRIC_COLUMNS},
            "run_dir": str(run_dir),
        })
    # Integer columns stay integers even when a failed run leaves them empty.
    return pd.DataFrame(rows).astype({"params": "Int64", "epochs_run": "Int64"}) if rows else pd.DataFrame(rows)


def completed_runs_by_hash(runs_dir: str | os.PathLike) -> dict[str, str]:
    """config_hash -> name of a completed run with that config, for incremental batches."""
    done = {}
    for run_dir in list_run_dirs(runs_dir):
        if run_status(run_dir) == "completed":
            config_hash = read_json(run_dir / "config.json").get("config_hash")
            if config_hash:
                done[config_hash] = run_dir.name
    return done


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid > 0


@contextlib.contextmanager
def backup_dir(runs_dir: str | os.PathLike, config_hash: str, run_name: str):
    """Yield the folder where an unfinished run of this config keeps its state.

    `runs_dir/.backup/<config_hash>/` is shared by every run of the same config, so a run that
    was killed or interrupted is resumed by the next run of that config (Keras'
    BackupAndRestore). A pid file marks the folder in use: a second run of the same config
    while the first is alive gets a folder of its own and starts from scratch. The folder is
    removed when the body finishes without an exception, and kept (for resuming) otherwise.
    """
    base = Path(runs_dir) / BACKUP_DIR
    path = base / config_hash
    path.mkdir(parents=True, exist_ok=True)
    owner = path / "owner.pid"
    try:
        fd = os.open(owner, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
    except FileExistsError:
        text = owner.read_text().strip()
        if text.isdigit() and _pid_alive(int(text)) and int(text) != os.getpid():
            path = base / f"{config_hash}-{run_name}"  # the same config is training right now
            path.mkdir(parents=True, exist_ok=False)
            owner = path / "owner.pid"
        owner.write_text(str(os.getpid()))  # a stale owner (killed): take over and resume
    try:
        yield path
    except BaseException:
        owner.unlink(missing_ok=True)
        raise
    shutil.rmtree(path, ignore_errors=True)


def load_model(run_dir: str | os.PathLike):
    """A run's trained model. Keras' safe mode refuses models that would run arbitrary code
    (e.g. a Lambda layer holding pickled Python), so a run folder from elsewhere cannot."""
    import keras

    return keras.models.load_model(Path(run_dir) / "model.keras", safe_mode=True)


def find_completed_run(runs_dir: str | os.PathLike, config) -> Path | None:
    """A completed run of exactly `config` (same config_hash) in `runs_dir`, or None."""
    name = completed_runs_by_hash(runs_dir).get(config_hash(config))
    return Path(runs_dir) / name if name else None
