"""A saved model on other test sets: the regenerated MNIST-C-style corruptions (the default), the
official MNIST-C layout, an IDX pair or an .npz (mnistlab.testsets). Each evaluation goes into the
run folder: a row per test set in `evaluations.csv` (suite, test set, its SHA-256, images,
accuracy, loss, ECE) and the predictions in `evaluations/<suite>/<test set>.npz`, so that paired
tests work across runs; `read_evaluations` gathers them for a comparison."""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mnistlab.testsets import TestSet, load_test_sets

REGENERATED = "mnist-c-regenerated"  # the suite name of the default test sets
LABEL = "MNIST-C-style (regenerated)"  # how tables and figures name it: not the official file set
EVALUATIONS_CSV = "evaluations.csv"
EVALUATIONS_DIR = "evaluations"
COLUMNS = ["suite", "test_set", "sha256", "images", "accuracy", "loss", "ece", "label"]


def regenerated_sets(data_dir: str | os.PathLike | None = None, dataset: str = "mnist", log=print,
                     images: int | None = None) -> list[TestSet]:
    """The 15 MNIST-C-style corruptions of the dataset's test images, regenerated (and cached
    under the data folder) by mnistlab.corruptions, as TestSets named after the corruptions; with
    `images`, the first that many of each (the digest says which: a run evaluated on another
    number is evaluated again)."""
    from mnistlab import corruptions
    from mnistlab.data import FILE_STEMS, default_data_dir, load_dataset
    from mnistlab.testsets import digest_of

    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    data = load_dataset(dataset, data_dir=data_dir, validation_size=0)
    corrupted = corruptions.load_corrupted(data.x_test, data.y_test, data.digests[FILE_STEMS["test_images"]],
                                           corruptions.cache_dir_for(data_dir, dataset), log=log)
    if images is not None and not (isinstance(images, int) and 1 <= images <= len(corrupted.labels)):
        raise ValueError(f"the number of images per corruption must be from 1 to {len(corrupted.labels)}, got {images!r}")
    count = images or len(corrupted.labels)
    labels = np.asarray(corrupted.labels[:count], dtype=np.uint8)
    return [TestSet(name=name, x=corrupted.images[name][:count], y=labels,
                    sha256=digest_of(corrupted.images[name][:count], labels), source=str(corrupted.folder))
            for name in corruptions.CORRUPTIONS]


def suite_name(test_set: str | None) -> str:
    """The suite a --test-set is filed under in a run folder: "mnist-c-regenerated" for the default,
    else the folder's or file's name (letters, digits, '.', '_', '-' only)."""
    if not test_set:
        return REGENERATED
    name = Path(str(test_set).rstrip("/")).name
    return re.sub(r"[^A-Za-z0-9_.-]", "_", Path(name).stem if name.endswith(".npz") else name) or "test-set"


def load_suite(test_set: str | None, num_classes: int = 10, data_dir=None, dataset: str = "mnist",
               log=print, images: int | None = None) -> tuple[str, list[TestSet]]:
    """(suite name, its test sets): the regenerated corruptions for None (the first `images` of
    each, all by default), else what `test_set` holds (mnistlab.testsets.load_test_sets). Raises
    ValueError (TestSetError) naming the file and what is wrong."""
    if not test_set:
        return REGENERATED, regenerated_sets(data_dir, dataset, log=log, images=images)
    return suite_name(test_set), load_test_sets(test_set, num_classes)


def check_run(run_dir: str | os.PathLike) -> Path:
    """`run_dir` if it holds a completed run with a model.keras; else ValueError naming the folder."""
    from mnistlab.results import run_status

    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise ValueError(f"{run_dir} is not a run folder (no config.json)")
    if run_status(run_dir) != "completed":
        raise ValueError(f"{run_dir} is not a completed run (status {run_status(run_dir)!r}): it has no model")
    if not (run_dir / "model.keras").is_file():
        raise ValueError(f"{run_dir} has no model.keras: it cannot be evaluated (train it again, e.g. `python -m "
                         f"mnistlab rerun {run_dir}`)")
    return run_dir


def _write_atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _save_npz(path: str, **arrays) -> None:
    with open(path, "wb") as f:  # a file object: numpy would add ".npz" to a temporary name
        np.savez_compressed(f, **arrays)


def evaluate_run(run_dir: str | os.PathLike, suite: str, test_sets: list[TestSet], model=None,
                 batch_size: int = 1000, label: str = "") -> pd.DataFrame:
    """Evaluate a run's saved model on `test_sets` and record it in the run folder: a row per set
    in evaluations.csv (rows of the same suite and set replaced) and its predictions in
    evaluations/<suite>/<set>.npz (y_true, y_pred uint8; probabilities float16). The checks come
    before anything is written. Returns this evaluation's rows: suite, test_set, sha256, images,
    accuracy, loss (mean NLL, nats), ece (top label, 15 bins), label."""
    from mnistlab.calibration import expected_calibration_error, negative_log_likelihood
    from mnistlab.results import load_model

    run_dir = check_run(run_dir)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", suite) or suite.startswith("."):
        raise ValueError(f"suite {suite!r} is not a plain folder name")
    classes = len(json.loads((run_dir / "config.json").read_text())["data"]["class_names"])
    for test_set in test_sets:
        if int(test_set.y.max(initial=0)) >= classes:
            raise ValueError(f"{test_set.source}: label {int(test_set.y.max())} is outside the run's {classes} classes")
    model = load_model(run_dir) if model is None else model
    rows = []
    for test_set in test_sets:
        probabilities = model.predict(test_set.x, batch_size=batch_size, verbose=0).astype(np.float32)
        probabilities /= probabilities.sum(axis=1, keepdims=True)  # float32 round-off of the softmax
        y_pred = probabilities.argmax(axis=1).astype(np.uint8)
        target = run_dir / EVALUATIONS_DIR / suite / f"{test_set.name}.npz"
        _write_atomic(target, lambda tmp, p=probabilities, y=y_pred, t=test_set: _save_npz(
            tmp, y_true=t.y, y_pred=y, probabilities=p.astype(np.float16)))
        rows.append({"suite": suite, "test_set": test_set.name, "sha256": test_set.sha256, "images": len(test_set.y),
                     "accuracy": float(np.mean(y_pred == test_set.y)),
                     "loss": negative_log_likelihood(probabilities, test_set.y),
                     "ece": expected_calibration_error(probabilities, test_set.y), "label": label})
    new = pd.DataFrame(rows, columns=COLUMNS)
    table = read_run_evaluations(run_dir)
    if not table.empty:
        table = table[~((table.suite == suite) & table.test_set.isin(new.test_set))]
    table = pd.concat([table, new], ignore_index=True) if not table.empty else new
    _write_atomic(run_dir / EVALUATIONS_CSV, lambda tmp: table.to_csv(tmp, index=False))
    return new


def read_run_evaluations(run_dir: str | os.PathLike) -> pd.DataFrame:
    """A run's evaluations.csv (empty, with COLUMNS, if it has none)."""
    path = Path(run_dir) / EVALUATIONS_CSV
    if not path.is_file():
        return pd.DataFrame(columns=COLUMNS)
    return pd.read_csv(path, dtype={"sha256": str})


def has_suite(run_dir: str | os.PathLike, suite: str, test_sets: list[TestSet]) -> bool:
    """Whether the run was evaluated on exactly these test sets (same names and digests)."""
    table = read_run_evaluations(run_dir)
    done = set(zip(table.test_set[table.suite == suite], table.sha256[table.suite == suite]))
    return all((t.name, t.sha256) in done for t in test_sets)


def evaluate_runs(run_dirs: list[Path], suite: str, test_sets: list[TestSet], label: str = "",
                  log=print) -> float:
    """Evaluate every run of `run_dirs` not yet evaluated on these test sets; one line each.
    Returns the seconds it took."""
    start = time.perf_counter()
    for run_dir in run_dirs:
        if has_suite(run_dir, suite, test_sets):
            continue
        begun = time.perf_counter()
        rows = evaluate_run(run_dir, suite, test_sets, label=label)
        log(f"    {label or suite}: {Path(run_dir).name}: mean accuracy {rows.accuracy.mean():.4f} over "
            f"{len(rows)} test sets ({time.perf_counter() - begun:.1f} s)")
    return time.perf_counter() - start


def load_evaluation_predictions(run_dir: str | os.PathLike, suite: str, test_set: str) -> dict[str, np.ndarray]:
    """A run's predictions on one test set of a suite (never unpickles)."""
    with np.load(Path(run_dir) / EVALUATIONS_DIR / suite / f"{test_set}.npz", allow_pickle=False) as f:
        return {k: f[k] for k in f.files}
