"""Per-run evaluation artifacts: test-set predictions, confusion matrix, classification report,
the most confidently wrong images, and calibration (ECE, NLL, Brier, a temperature fitted on the
validation split, the reliability diagram). scikit-learn computes; seaborn/matplotlib draw."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from sklearn.metrics import classification_report, confusion_matrix

from mnistlab import timing

EVALUATION_FILES = ("predictions.npz", "confusion_matrix.csv", "confusion_matrix.png",
                    "classification_report.csv", "misclassified.png", "reliability.png")


def save_predictions(path: Path, y_true: np.ndarray, probabilities: np.ndarray) -> None:
    """`predictions.npz`: y_true (N,) uint8, y_pred (N,) uint8, probabilities (N, C) float32.

    Plain arrays only, so `np.load(path, allow_pickle=False)` reads it.
    """
    np.savez_compressed(path, y_true=y_true.astype(np.uint8),
                        y_pred=probabilities.argmax(axis=1).astype(np.uint8),
                        probabilities=probabilities.astype(np.float32))


def load_predictions(path: str | Path) -> dict[str, np.ndarray]:
    """Read a run's predictions.npz (never unpickles)."""
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def plot_confusion_matrix(cm: np.ndarray, class_names, title: str = "") -> plt.Figure:
    """Counts and row-normalised (recall per true class) heatmaps side by side."""
    fig, axes = plt.subplots(1, 2, figsize=(14, 6), constrained_layout=True)
    normalised = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    for ax, data, fmt, name in ((axes[0], cm, "d", "counts"), (axes[1], normalised, ".2f", "row-normalised")):
        sns.heatmap(data, annot=True, fmt=fmt, cmap="Blues", cbar=False, square=True, ax=ax,
                    xticklabels=class_names, yticklabels=class_names, annot_kws={"fontsize": 7})
        ax.set(xlabel="predicted", ylabel="true", title=name)
    if title:
        fig.suptitle(title)
    return fig


def plot_misclassified(x: np.ndarray, y_true: np.ndarray, probabilities: np.ndarray, class_names,
                       count: int = 24, columns: int = 8) -> plt.Figure:
    """Grid of the `count` most confidently wrong images: true label, predicted label, probability.

    x: (N, 28, 28) uint8 images; y_true: (N,); probabilities: (N, C). One axes holding a mosaic
    (a quarter of the drawing time of one axes per image).
    """
    y_pred = probabilities.argmax(axis=1)
    errors = np.flatnonzero(y_pred != y_true)
    wrong = errors[np.argsort(-probabilities[errors, y_pred[errors]])][:count]
    rows = max(1, -(-len(wrong) // columns))
    height, width = x.shape[1:3]
    pad_x, pad_y = width // 4, int(height * 0.9)  # room for two lines of caption above each image
    mosaic = np.zeros((rows * (height + pad_y), columns * (width + pad_x)), dtype=np.float32)
    fig, ax = plt.subplots(figsize=(1.6 * columns, 1.9 * rows))
    for k, i in enumerate(wrong):
        top, left = (k // columns) * (height + pad_y) + pad_y, (k % columns) * (width + pad_x) + pad_x // 2
        mosaic[top:top + height, left:left + width] = x[i]
        ax.text(left + width / 2, top - 2, f"true {class_names[y_true[i]]}\npred {class_names[y_pred[i]]} "
                f"{probabilities[i, y_pred[i]]:.2f}", ha="center", va="bottom", fontsize=8)
    ax.imshow(mosaic, cmap="gray_r", interpolation="nearest", vmin=0, vmax=255)
    ax.axis("off")
    fig.suptitle(f"{len(wrong)} most confidently wrong of {len(errors)} errors")
    fig.tight_layout()
    return fig


def write_evaluation(run_dir: Path, x_test: np.ndarray, y_test: np.ndarray, probabilities: np.ndarray,
                     class_names, title: str = "", probabilities_val: np.ndarray | None = None,
                     y_val: np.ndarray | None = None) -> dict:
    """Write EVALUATION_FILES into `run_dir` from the test set and the model's probabilities, and
    return the test set's calibration (mnistlab.calibration.calibration_metrics: ece, nll, brier,
    and with a validation split the temperature fitted on it, ece and nll after it).

    x_test: (N, 28, 28) uint8; y_test: (N,) integer labels; probabilities: (N, C) float;
    probabilities_val, y_val: the validation split's, (M, C) and (M,), or None.
    """
    from mnistlab.calibration import apply_temperature, calibration_metrics, plot_reliability, reliability_table

    run_dir = Path(run_dir)
    labels = list(range(len(class_names)))
    y_pred = probabilities.argmax(axis=1)
    with timing.stage("evaluation"):
        cm = confusion_matrix(y_test, y_pred, labels=labels)
        report = classification_report(y_test, y_pred, labels=labels, target_names=list(class_names),
                                       output_dict=True, zero_division=0)
        report.pop("accuracy", None)  # a scalar, not a per-class row; metrics.json has it
        calibration = calibration_metrics(probabilities, y_test, probabilities_val,
                                          y_val if probabilities_val is not None else None)
        tables = {"test set": reliability_table(probabilities, y_test)}
        if calibration["temperature"] is not None:
            tables[f"after temperature {calibration['temperature']:.2f} (fitted on validation)"] = reliability_table(
                apply_temperature(probabilities, calibration["temperature"]), y_test)
    with timing.stage("saving"):
        save_predictions(run_dir / "predictions.npz", y_test, probabilities)
        pd.DataFrame(cm, index=pd.Index(class_names, name="true"),
                     columns=pd.Index(class_names, name="predicted")).to_csv(run_dir / "confusion_matrix.csv")
        pd.DataFrame(report).T.rename_axis("class").to_csv(run_dir / "classification_report.csv")
    with timing.stage("figures"):
        for name, draw in (("confusion_matrix.png", lambda: plot_confusion_matrix(cm, class_names, title)),
                           ("misclassified.png", lambda: plot_misclassified(x_test, y_test, probabilities, class_names)),
                           ("reliability.png",
                            lambda: plot_reliability(tables, title=f"Reliability: {title}" if title else ""))):
            fig = draw()
            fig.savefig(run_dir / name, dpi=100)
            plt.close(fig)
    return calibration


def ensemble(run_dirs, against=()) -> dict:
    """Average the test-set class probabilities of several runs (their predictions.npz) and
    score the average; compare it image by image with each run of `against` (run folders, e.g.
    bn_cnn's seeds). All runs must have predicted the same test labels in the same order.

    Returns {"runs": [...], "run_accuracies": [...], "ensemble_accuracy": float, "images": int,
    "ensemble_ci95": [low, high] (Clopper-Pearson over the test images: the uncertainty of one
    ensemble's score, not of the recipe over seeds), "against": [{"run", "accuracy",
    "only_ensemble_right", "only_run_right", "p_value"} (McNemar's exact test) per run]}. Raises
    ValueError for fewer than two runs or runs of different test sets.
    """
    from scipy.stats import binomtest

    from mnistlab.stats import mcnemar_exact

    run_dirs, against = [Path(d) for d in run_dirs], [Path(d) for d in against]
    if len(run_dirs) < 2:
        raise ValueError(f"an ensemble needs at least two runs, got {len(run_dirs)}")
    predictions = [load_predictions(d / "predictions.npz") for d in run_dirs]
    others = [load_predictions(d / "predictions.npz") for d in against]
    y_true = predictions[0]["y_true"]
    for d, p in zip(run_dirs + against, predictions + others):
        if not np.array_equal(p["y_true"], y_true):
            raise ValueError(f"{d} was scored on other test labels than {run_dirs[0]}: not the same test set")
    mean = np.mean([p["probabilities"] for p in predictions], axis=0)
    correct = mean.argmax(axis=1) == y_true
    interval = binomtest(int(correct.sum()), len(correct)).proportion_ci(0.95, method="exact")
    compared = []
    for d, p in zip(against, others):
        only_ensemble, only_run, p_value = mcnemar_exact(correct, p["y_pred"] == y_true)
        compared.append({"run": d.name, "accuracy": float(np.mean(p["y_pred"] == y_true)),
                         "only_ensemble_right": only_ensemble, "only_run_right": only_run, "p_value": p_value})
    return {"runs": [d.name for d in run_dirs],
            "run_accuracies": [float(np.mean(p["y_pred"] == y_true)) for p in predictions],
            "ensemble_accuracy": float(np.mean(correct)), "images": int(len(correct)),
            "ensemble_ci95": [float(interval.low), float(interval.high)], "against": compared}
