"""Reading run folders back: one table of runs, the latest run per variant and seed, histories,
completed runs by config hash, and trained models.

Everything is taken from what each run recorded (config.json's variant and hash were computed
when the run was written); nothing is re-derived on the reading machine. A value read from a run
folder is not trusted: a folder whose record cannot be read is listed as "unreadable", naming
the file, and never counted.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from mnistlab.runs import HISTORY_COLUMNS, TMP_PREFIX, read_json

METRIC_COLUMNS = ["test_accuracy", "test_loss", "val_accuracy", "best_val_accuracy", "params", "train_seconds",
                  "images_per_second", "epochs_run", "ece", "nll", "brier", "temperature", "ece_after_temperature"]
STATUSES = ("completed", "diverged", "pruned", "failed", "interrupted", "incomplete", "unreadable")


def run_status(run_dir: Path) -> str:
    """"completed", "diverged", "pruned" (stopped by a sweep), "failed", "interrupted", "incomplete" (no status.json, or a
    temporary folder: a run still going, or one that was killed) or "unreadable"."""
    run_dir = Path(run_dir)
    if run_dir.name.startswith(TMP_PREFIX) or not (run_dir / "status.json").is_file():
        return "incomplete"
    try:
        status = read_json(run_dir / "status.json").get("status")
    except ValueError:
        return "unreadable"
    return status if status in STATUSES else "unreadable"


def list_run_dirs(runs_dir: str | os.PathLike) -> list[Path]:
    """Every run folder directly in `runs_dir` (temporary ones included), sorted by name."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    return sorted(p for p in runs_dir.iterdir() if p.is_dir() and (p / "config.json").is_file())


def _row(run_dir: Path) -> dict:
    status = run_status(run_dir)
    try:
        record = read_json(run_dir / "config.json")
        settings = record["config"]
        metrics = read_json(run_dir / "metrics.json") if status == "completed" else {}
    except (ValueError, KeyError, TypeError) as e:
        return {"run": run_dir.name, "status": "unreadable", "detail": f"{e}", "run_dir": str(run_dir)}
    return {
        "run": run_dir.name, "model": settings.get("model"), "variant": record.get("variant", settings.get("model")),
        "variant_hash": record.get("variant_hash"), "config_hash": record.get("config_hash"),
        "dataset": settings.get("dataset"), "recipe": settings.get("recipe"), "seed": settings.get("seed"),
        "status": status, "epochs": settings.get("epochs"), "batch_size": settings.get("batch_size"),
        "learning_rate": settings.get("learning_rate"), "limit": settings.get("limit"),
        "precision": record.get("resolved", {}).get("precision", settings.get("precision")),
        "threads": record.get("resolved", {}).get("threads"),
        "reported_accuracy": (record.get("model") or {}).get("reported_accuracy"),
        **{k: metrics.get(k) for k in METRIC_COLUMNS},
        "run_dir": str(run_dir),
    }


def load_runs(runs_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per run folder in `runs_dir`: run, model, variant, dataset, seed, status, the main
    settings and final metrics, run_dir. Runs that are not completed have NaN metrics; filter on
    `status == "completed"` before comparing (`latest_runs` does)."""
    rows = [_row(d) for d in list_run_dirs(runs_dir)]
    table = pd.DataFrame(rows, columns=list(dict.fromkeys(
        ["run", "model", "variant", "variant_hash", "config_hash", "dataset", "recipe", "seed", "status",
         "epochs", "batch_size", "learning_rate", "limit", "precision", "threads", "reported_accuracy",
         *METRIC_COLUMNS, "run_dir", "detail"])))
    return name_machine_choices(table.astype({"params": "Int64", "epochs_run": "Int64", "seed": "Int64"}))


def name_machine_choices(table: pd.DataFrame) -> pd.DataFrame:
    """A variant's label lists what the user changed, not what the machine resolved; where runs of
    one label differ in the precision their machines resolved (bfloat16 on one CPU, float32 on
    another), they are different variants, and each label names its precision:
    "bn_cnn[precision=mixed_bfloat16]", "bn_cnn[epochs=3,precision=float32]"."""
    completed = table[table.status == "completed"]
    shared = completed.groupby("variant").precision.nunique()
    for label in shared[shared > 1].index:
        rows = table.variant == label
        table.loc[rows, "variant"] = [label[:-1] + f",precision={p}]" if label.endswith("]") else f"{label}[precision={p}]"
                                      for p in table.loc[rows, "precision"]]
    return table


def latest_runs(runs: pd.DataFrame, dataset: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a `load_runs` table into (counted, not_counted).

    counted: the completed runs of `dataset` (all datasets if None), the latest run (names sort
    by time) of each variant and seed; not_counted: every other run of that dataset (failed,
    diverged, incomplete, unreadable, or superseded by a later run of the same variant and seed),
    with a `reason` column.
    """
    if dataset is not None and "dataset" in runs:
        runs = runs[(runs.dataset == dataset) | (runs.status == "unreadable")]
    completed = runs[runs.status == "completed"]
    counted = completed.sort_values("run").drop_duplicates(["variant", "seed"], keep="last")
    not_counted = runs[~runs.run.isin(counted.run)].copy()
    not_counted["reason"] = not_counted.status.where(not_counted.status != "completed",
                                                      "superseded by a later run")
    return counted.reset_index(drop=True), not_counted.reset_index(drop=True)


def load_history(run_dir: str | os.PathLike) -> pd.DataFrame:
    """A run's per-epoch history: one row per epoch, columns HISTORY_COLUMNS."""
    return pd.read_csv(Path(run_dir) / "history.csv")


def completed_runs_by_hash(runs_dir: str | os.PathLike) -> dict[str, str]:
    """config_hash -> name of the latest completed run with that config."""
    done = {}
    for run_dir in list_run_dirs(runs_dir):
        if run_status(run_dir) == "completed":
            try:
                config_hash = read_json(run_dir / "config.json").get("config_hash")
            except ValueError:
                continue
            if isinstance(config_hash, str):
                done[config_hash] = run_dir.name
    return done


def load_model(run_dir: str | os.PathLike):
    """A run's trained model: raw pixels (N, 28, 28) in [0, 255] -> (N, num_classes)
    probabilities. A model of the user's is loaded after importing the file its run recorded, so
    that custom layers in it load too (a file changed since the run is named on stderr). Keras'
    safe mode refuses models that would run arbitrary code (e.g. a Lambda layer holding pickled
    Python), so a run folder from elsewhere cannot."""
    import sys

    import keras

    import mnistlab.models  # noqa: F401  runs saved before model.keras held Keras' own BatchNormalization

    run_dir = Path(run_dir)
    custom_objects = {}
    record = read_json(run_dir / "config.json") if (run_dir / "config.json").is_file() else {}
    origin = (record.get("model") or {}).get("origin") or {}
    if origin.get("kind") in ("file", "module"):
        from mnistlab.registry import REGISTRY, load_models_from

        source = str(origin.get("given") or origin.get("module"))

        def loaded():
            return next((e for e in REGISTRY.values()
                         if e.origin and source in (e.origin.get("given"), e.origin.get("module"))), None)

        entry = loaded()
        if entry is None or entry.origin.get("sha256") != origin.get("sha256"):  # not loaded here as it ran
            recorded = Path(str(origin.get("path")))
            load_models_from([source], locations={source: str(recorded)} if recorded.is_file() else {})
            entry = loaded()
        if entry is not None and entry.origin.get("sha256") != origin.get("sha256"):
            print(f"warning: {source} changed since {run_dir.name} trained (SHA-256 {entry.origin.get('sha256')}, the "
                  f"run recorded {origin.get('sha256')}); its custom layers are loaded as they are now", file=sys.stderr)
        module = sys.modules.get((entry.builder_name if entry else "").partition(":")[0])
        custom_objects = {name: value for name, value in vars(module).items()
                          if isinstance(value, type) and issubclass(value, keras.layers.Layer)} if module else {}
    # compile=False: predicting needs no optimizer (and a frozen part's saved optimizer state would not match)
    return keras.models.load_model(run_dir / "model.keras", safe_mode=True, custom_objects=custom_objects,
                                   compile=False)


def read_history_log(log_path: Path) -> pd.DataFrame:
    """A CSVLogger file as a history table: epochs from 1, HISTORY_COLUMNS order, one row per
    epoch (the last, if a resumed run logged an epoch twice)."""
    if not log_path.is_file() or log_path.stat().st_size == 0:
        return pd.DataFrame(columns=HISTORY_COLUMNS)
    hist = pd.read_csv(log_path)
    hist["epoch"] = hist["epoch"] + 1
    hist = hist.drop_duplicates("epoch", keep="last").sort_values("epoch").reset_index(drop=True)
    return hist[[c for c in HISTORY_COLUMNS if c in hist]]


def run_result(run_dir: str | os.PathLike) -> str:
    """One line on how a run ended: "completed: test accuracy 0.9801, 14.2 s of training (<folder>)",
    or its status and why ("diverged: training loss ... (<folder>)")."""
    run_dir = Path(run_dir)
    status = run_status(run_dir)
    if status == "completed":
        metrics = read_json(run_dir / "metrics.json")
        return (f"completed: test accuracy {metrics['test_accuracy']:.4f}, {metrics['train_seconds']:.1f} s of training "
                f"({run_dir})")
    recorded = read_json(run_dir / "status.json") if status != "incomplete" else {}
    return f"{status}: {recorded.get('detail') or recorded.get('error') or ''} ({run_dir})"


def metrics_table(run_dir: str | os.PathLike) -> pd.DataFrame:
    """A completed run's metrics.json as a two-column table a person reads: accuracies and
    calibration to 4 decimals, counts as whole numbers, seconds to one decimal."""
    metrics = read_json(Path(run_dir) / "metrics.json")
    rows = []
    for key, value in metrics.items():
        if value is None or isinstance(value, (dict, list)):
            continue
        if key in ("params", "epochs_run", "resumed_from_epoch", "epochs_trained_here", "replicas"):
            text = f"{int(value):,}"
        elif key.endswith("seconds") or key == "images_per_second":
            text = f"{float(value):,.1f}"
        elif isinstance(value, float):
            text = f"{value:.4f}"
        else:
            text = str(value)
        rows.append({"metric": key, "value": text})
    return pd.DataFrame(rows)
