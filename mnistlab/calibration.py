"""Calibration of a classifier's probabilities: ECE and reliability tables, NLL, Brier score,
and temperature scaling fitted from saved probabilities (no TensorFlow)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from mpl_toolkits.axes_grid1 import make_axes_locatable
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from sklearn.metrics import brier_score_loss, log_loss

# Below float32's smallest normal number a saved probability has lost its value (a subnormal
# keeps few digits, 0 keeps none), so log p is clipped there rather than made -inf.
MIN_PROBABILITY = float(np.finfo(np.float32).tiny)
# Temperatures searched by fit_temperature: wide enough that only a degenerate validation split
# (one the model gets entirely right, say) drives the fit to a bound.
TEMPERATURE_BOUNDS = (0.01, 100.0)
# Rows of float32 softmax outputs sum to 1 within ~1e-6; logits or unnormalised scores miss by far more.
ROW_SUM_TOLERANCE = 1e-3


def _check_probabilities(probabilities, name: str = "probabilities") -> np.ndarray:
    """Validate (N, C) probabilities; return them as float64, rows renormalised to sum to 1."""
    p = np.asarray(probabilities)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"{name} must be (N, C) with C >= 2 classes, got shape {p.shape}")
    if not np.issubdtype(p.dtype, np.floating):
        raise ValueError(f"{name} must be floating point, got dtype {p.dtype}")
    if len(p) == 0:
        raise ValueError(f"{name} is empty (0 rows)")
    if not np.all(np.isfinite(p)) or p.min() < 0 or p.max() > 1:
        raise ValueError(f"{name} must be finite and in [0, 1]; pass softmax outputs, not logits")
    sums = p.sum(axis=1, dtype=np.float64)
    if np.any(np.abs(sums - 1) > ROW_SUM_TOLERANCE):
        bad = int(np.argmax(np.abs(sums - 1)))
        raise ValueError(f"{name} rows must sum to 1; row {bad} sums to {sums[bad]:.6g}")
    # Renormalised in float64 so that float32 rounding does not trip scikit-learn's
    # sum-to-one check (its tolerance follows the dtype it is given).
    p = p.astype(np.float64)
    return p / p.sum(axis=1, keepdims=True)


def _check(probabilities, y_true, bins: int | None = None,
           names: tuple[str, str] = ("probabilities", "y_true")) -> tuple[np.ndarray, np.ndarray]:
    """Validate and return (probabilities (N, C) float64 with rows summing to 1, y_true (N,) int64)."""
    p = _check_probabilities(probabilities, names[0])
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise ValueError(f"{names[1]} must be (N,) integer labels, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{names[1]} must hold integer labels, got dtype {y.dtype}")
    if len(p) != len(y):
        raise ValueError(f"{names[0]} holds {len(p)} rows but {names[1]} holds {len(y)} labels")
    num_classes = p.shape[1]
    if y.min() < 0 or y.max() >= num_classes:
        bad = int(np.argmax((y < 0) | (y >= num_classes)))
        raise ValueError(f"{names[1]}[{bad}] = {int(y[bad])} is outside [0, {num_classes}) "
                         f"(the {num_classes} columns of {names[0]})")
    if bins is not None and (isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1):
        raise ValueError(f"bins must be an integer >= 1, got {bins!r}")
    return p, y.astype(np.int64)


def reliability_table(probabilities, y_true, bins: int = 15) -> pd.DataFrame:
    """Top-label reliability table: per confidence bin, how many images, their mean confidence
    and their accuracy.

    probabilities: (N, C) float32 or float64, rows summing to 1; y_true: (N,) integer in [0, C).
    The confidence of an image is its largest probability; `bins` equal-width bins split [0, 1]
    with edges np.linspace(0, 1, bins + 1). Bin b holds the confidences in (low, high] (the
    intervals of Guo et al. 2017), the first bin also holds 0, so a confidence of exactly 1 is
    in the last bin.

    Returns a DataFrame of `bins` rows (empty bins kept): bin (0-based int), low, high, count
    (int), confidence (mean confidence, NaN when empty), accuracy (share right, NaN when empty).
    Raises ValueError naming the argument for mismatched lengths, wrong dimensions or dtypes,
    labels outside [0, C), rows that are not probabilities, or bins < 1.
    """
    p, y = _check(probabilities, y_true, bins)
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # right=True against the inner edges: edges[b] < c <= edges[b + 1] lands in bin b.
    index = np.digitize(confidence, edges[1:-1], right=True)
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):  # empty bins: 0/0 -> NaN, by design
        mean_confidence = np.bincount(index, confidence, minlength=bins) / count
        accuracy = np.bincount(index, correct, minlength=bins) / count
    return pd.DataFrame({"bin": np.arange(bins), "low": edges[:-1], "high": edges[1:], "count": count,
                         "confidence": mean_confidence, "accuracy": accuracy})


def ece_from_table(table: pd.DataFrame) -> float:
    """Expected calibration error from a reliability_table: sum over non-empty bins of
    |accuracy - confidence| weighted by the bin's share of images. In [0, 1]."""
    share = table["count"] / table["count"].sum()
    return float(np.nansum(share * (table["accuracy"] - table["confidence"]).abs()))


def expected_calibration_error(probabilities, y_true, bins: int = 15) -> float:
    """Top-label expected calibration error (Guo et al. 2017, "On Calibration of Modern Neural
    Networks"), a fraction in [0, 1] (0.012 is 1.2 points).

    Sum over `bins` equal-width confidence bins of |accuracy - mean confidence| times the bin's
    share of images; the bins are those of reliability_table ((low, high], a confidence of 1 in
    the last bin). Inputs and errors as reliability_table.
    """
    return ece_from_table(reliability_table(probabilities, y_true, bins))


def negative_log_likelihood(probabilities, y_true) -> float:
    """Mean negative log-likelihood of the true labels, in nats (scikit-learn's log_loss with
    labels=range(C), so a class absent from y_true still counts). A probability of 0 on the
    true class is clipped by scikit-learn to float64's eps (about 36 nats), not infinity.
    Inputs and errors as reliability_table."""
    p, y = _check(probabilities, y_true)
    return float(log_loss(y, p, labels=np.arange(p.shape[1])))


def brier_score(probabilities, y_true) -> float:
    """Multi-class Brier score (Brier 1950): mean over images of sum_c (p_c - onehot_c)^2, in
    [0, 2], 0 for certain and right. Not halved, whatever C (scikit-learn halves by default
    for two classes only); scikit-learn's brier_score_loss computes exactly this with
    scale_by_half=False. Inputs and errors as reliability_table."""
    p, y = _check(probabilities, y_true)
    return float(brier_score_loss(y, p, labels=np.arange(p.shape[1]), scale_by_half=False))


def _log_probabilities(p: np.ndarray) -> np.ndarray:
    # log p equals the logits up to a per-image constant, which softmax ignores.
    return np.log(np.clip(p, MIN_PROBABILITY, 1.0))


def fit_temperature(probabilities_val, y_val) -> float:
    """Temperature scaling (Guo et al. 2017) fitted from saved probabilities: the T > 0 that
    minimises the mean NLL of softmax(log p / T) on the validation split.

    probabilities_val: (N, C) float, rows summing to 1; y_val: (N,) integer in [0, C).
    log p (p clipped below at MIN_PROBABILITY) are the logits up to a per-image constant, so
    this equals fitting T on the logits. Bounded Brent search (scipy.optimize.minimize_scalar)
    on log T within TEMPERATURE_BOUNDS; T > 1 softens over-confident probabilities. A
    validation split the model gets entirely right drives T to the lower bound. Fit on
    validation data only, never on the test set. Raises ValueError as reliability_table.
    """
    p, y = _check(probabilities_val, y_val, names=("probabilities_val", "y_val"))
    logits = _log_probabilities(p)
    rows = np.arange(len(y))

    def nll(log_t: float) -> float:
        return -float(np.mean(log_softmax(logits / np.exp(log_t), axis=1)[rows, y]))

    result = minimize_scalar(nll, bounds=np.log(TEMPERATURE_BOUNDS), method="bounded",
                             options={"xatol": 1e-6})
    return float(np.exp(result.x))


def apply_temperature(probabilities, temperature: float) -> np.ndarray:
    """softmax(log p / temperature): (N, C) float32, rows summing to 1.

    probabilities: (N, C) float, rows summing to 1. Raises ValueError naming `temperature`
    unless it is a finite number > 0, or `probabilities` if it is not (N, C) probabilities.
    """
    if not np.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    p = _check_probabilities(probabilities)
    return softmax(_log_probabilities(p) / temperature, axis=1).astype(np.float32)


def calibration_metrics(probabilities_test, y_test, probabilities_val=None, y_val=None,
                        bins: int = 15) -> dict:
    """Calibration of a model's test-set probabilities, before and after temperature scaling.

    Returns {"ece", "nll", "brier", "temperature", "ece_after_temperature",
    "nll_after_temperature"} as floats (ECE a fraction, NLL in nats). The temperature is fitted
    on (probabilities_val, y_val) only, never on the test set; without a validation split the
    three temperature entries are None. Raises ValueError if only one of probabilities_val and
    y_val is given, for validation and test probabilities over different numbers of classes,
    or as reliability_table for bad inputs (naming probabilities_test, y_test, ...).
    """
    if (probabilities_val is None) != (y_val is None):
        raise ValueError("give both probabilities_val and y_val, or neither")
    test, _ = _check(probabilities_test, y_test, bins, names=("probabilities_test", "y_test"))
    if probabilities_val is not None:
        val, _ = _check(probabilities_val, y_val, names=("probabilities_val", "y_val"))
        if val.shape[1] != test.shape[1]:
            raise ValueError(f"probabilities_val has {val.shape[1]} classes but probabilities_test "
                             f"has {test.shape[1]}: not the same model")
    metrics = {"ece": expected_calibration_error(probabilities_test, y_test, bins),
               "nll": negative_log_likelihood(probabilities_test, y_test),
               "brier": brier_score(probabilities_test, y_test),
               "temperature": None, "ece_after_temperature": None, "nll_after_temperature": None}
    if probabilities_val is not None:
        temperature = fit_temperature(probabilities_val, y_val)
        scaled = apply_temperature(probabilities_test, temperature)
        metrics.update(temperature=temperature,
                       ece_after_temperature=expected_calibration_error(scaled, y_test, bins),
                       nll_after_temperature=negative_log_likelihood(scaled, y_test))
    return metrics


def plot_reliability(tables: dict[str, pd.DataFrame], title: str = "", ax=None) -> plt.Figure:
    """Overlaid reliability diagrams: accuracy against mean confidence per bin, one line per
    name (legend with its ECE), the diagonal of perfect calibration dashed, and below, on a log
    scale, each name's share of images per bin.

    tables: name -> reliability_table(...) (the same bins for all). ax: the Axes to draw the
    diagram on (the share panel is appended below it); default a new figure. Empty bins are
    skipped, so a line joins the bins that hold images. Reads well with up to ~8 names.
    Raises ValueError for no tables.
    """
    if not tables:
        raise ValueError("tables is empty: give at least one name -> reliability_table")
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 7))
    fig = ax.figure
    share_ax = make_axes_locatable(ax).append_axes("bottom", size="28%", pad=0.12, sharex=ax)
    palette = sns.color_palette("colorblind" if len(tables) <= 10 else "husl", len(tables))
    markers = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">"]
    ax.plot([0, 1], [0, 1], "--", color="0.5", linewidth=1, label="perfect calibration")
    for i, (name, table) in enumerate(tables.items()):
        filled = table[table["count"] > 0]
        ax.plot(filled["confidence"], filled["accuracy"], marker=markers[i % len(markers)], markersize=5,
                linewidth=1.5, alpha=0.9, color=palette[i], label=f"{name} (ECE {ece_from_table(table):.2%})")
        edges = np.append(table["low"].to_numpy(), table["high"].iloc[-1])
        share = (table["count"] / table["count"].sum()).to_numpy()
        share_ax.stairs(share, edges, color=palette[i], alpha=0.6, linewidth=1.2)
    ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy", title=title or "reliability diagram")
    ax.tick_params(labelbottom=False)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8, framealpha=0.9)
    share_ax.set_yscale("log")
    share_ax.set(xlabel="mean confidence (top label)", ylabel="share of\nimages")
    share_ax.grid(alpha=0.3)
    return fig
