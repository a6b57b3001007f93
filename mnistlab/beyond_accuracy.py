"""Comparisons beyond clean accuracy, over seeds: accuracy per variant and corruption with 95%
intervals and McNemar/Holm against the best clean variant per corruption; calibration per variant;
where two variants disagree (the test images one gets right on every seed and the other wrong on
every seed) and their per-class accuracy difference. Every function takes the counted runs of a
comparison (mnistlab.results.latest_runs) and reads only their run folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from statsmodels.stats.multitest import multipletests

from mnistlab.evaluate import load_predictions
from mnistlab.robustness import REGENERATED, load_evaluation_predictions, read_run_evaluations
from mnistlab.stats import mcnemar_exact, mean_ci

CALIBRATION_COLUMNS = ["ece", "ece_after_temperature", "nll", "brier", "temperature"]


def corruption_accuracy(counted: pd.DataFrame, suite: str = REGENERATED) -> pd.DataFrame:
    """One row per counted run and test set of `suite`: variant, seed, run, test_set, accuracy
    (from each run's evaluations.csv; runs not evaluated on the suite are left out)."""
    rows = []
    for run in counted.itertuples():
        table = read_run_evaluations(run.run_dir)
        for row in table[table.suite == suite].itertuples():
            rows.append({"variant": run.variant, "seed": int(run.seed), "run": run.run, "test_set": row.test_set,
                         "accuracy": float(row.accuracy)})
    return pd.DataFrame(rows, columns=["variant", "seed", "run", "test_set", "accuracy"])


def corruption_summary(long: pd.DataFrame) -> pd.DataFrame:
    """Per variant and test set: runs, mean accuracy and its 95% t-interval over seeds; plus a
    row per variant for "mean over corruptions" (each seed's mean over the test sets, then the
    interval over seeds). Columns: variant, test_set, runs, mean, ci_low, ci_high."""
    rows = []
    for (variant, test_set), group in long.groupby(["variant", "test_set"], sort=False):
        mean, _, low, high = mean_ci(group.accuracy)
        rows.append({"variant": variant, "test_set": test_set, "runs": len(group), "mean": mean,
                     "ci_low": low, "ci_high": high})
    for variant, group in long.groupby("variant", sort=False):
        per_seed = group.groupby("seed").accuracy.mean()
        mean, _, low, high = mean_ci(per_seed)
        rows.append({"variant": variant, "test_set": "mean over corruptions", "runs": len(per_seed), "mean": mean,
                     "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=["variant", "test_set", "runs", "mean", "ci_low", "ci_high"])


def _correct(run_dir: str, suite: str | None, test_set: str | None) -> np.ndarray:
    predictions = (load_predictions(Path(run_dir) / "predictions.npz") if suite is None
                   else load_evaluation_predictions(run_dir, suite, test_set))
    return predictions["y_pred"] == predictions["y_true"]


def corruption_mcnemar(counted: pd.DataFrame, best: str, suite: str = REGENERATED,
                       alpha: float = 0.05) -> pd.DataFrame:
    """McNemar's exact test per test set of `suite` between the `best` (clean) variant and each
    other, seed against seed, Holm-corrected within each test set and seed over the variants
    compared with the best; a difference counts only if significant with every seed. Columns:
    test_set, variant, n_seeds, only_best_right, only_other_right, p_holm_max, significant_all_seeds,
    verdict ("best better", "best worse", "no significant difference")."""
    long = corruption_accuracy(counted, suite)
    runs = {(r.variant, int(r.seed)): r.run_dir for r in counted.itertuples()}
    rows = []
    for test_set in long.test_set.unique():
        tests = []
        for seed in sorted({s for v, s in runs if v == best}):
            others = [v for (v, s) in runs if s == seed and v != best]
            results = []
            for other in others:
                try:
                    only_best, only_other, p = mcnemar_exact(_correct(runs[best, seed], suite, test_set),
                                                             _correct(runs[other, seed], suite, test_set))
                except (OSError, KeyError, ValueError):  # a run not evaluated on this set
                    continue
                results.append((other, only_best, only_other, p))
            if results:
                reject, p_holm, _, _ = multipletests([r[3] for r in results], alpha=alpha, method="holm")
                tests += [(seed, *r, float(ph), bool(rj)) for r, ph, rj in zip(results, p_holm, reject)]
        frame = pd.DataFrame(tests, columns=["seed", "variant", "only_best", "only_other", "p", "p_holm", "significant"])
        for other, group in frame.groupby("variant", sort=False):
            significant = bool(group.significant.all())
            best_ahead = group.only_best.sum() > group.only_other.sum()
            rows.append({"test_set": test_set, "variant": other, "n_seeds": len(group),
                         "only_best_right": int(group.only_best.sum()), "only_other_right": int(group.only_other.sum()),
                         "p_holm_max": float(group.p_holm.max()), "significant_all_seeds": significant,
                         "verdict": ("best better" if best_ahead else "best worse") if significant
                         else "no significant difference"})
    return pd.DataFrame(rows, columns=["test_set", "variant", "n_seeds", "only_best_right", "only_other_right",
                                       "p_holm_max", "significant_all_seeds", "verdict"])


def calibration_summary(counted: pd.DataFrame) -> pd.DataFrame:
    """Per variant, over its seeds: the mean and 95% interval of the test set's ECE (top label,
    15 bins) before and after the temperature fitted on validation, and the mean NLL, Brier score
    and temperature. Runs recorded before mnistlab measured calibration are left out."""
    rows = []
    for variant, group in counted.groupby("variant", sort=False):
        group = group.dropna(subset=["ece"])
        if group.empty:
            continue
        ece, after = mean_ci(group.ece), mean_ci(group.ece_after_temperature.dropna()) \
            if group.ece_after_temperature.notna().any() else (np.nan,) * 4
        rows.append({"variant": variant, "runs": len(group), "ece": ece[0], "ece_ci_low": ece[2],
                     "ece_ci_high": ece[3], "ece_after_temperature": after[0], "ece_after_ci_low": after[2],
                     "ece_after_ci_high": after[3], "nll": float(group.nll.mean()), "brier": float(group.brier.mean()),
                     "temperature": float(group.temperature.mean()) if group.temperature.notna().any() else np.nan})
    return pd.DataFrame(rows, columns=["variant", "runs", "ece", "ece_ci_low", "ece_ci_high", "ece_after_temperature",
                                       "ece_after_ci_low", "ece_after_ci_high", "nll", "brier", "temperature"])


def _predictions_over_seeds(counted: pd.DataFrame, variant: str, suite: str | None, test_set: str | None):
    """{seed: predictions dict} of a variant's counted runs on the clean test set (suite None) or
    one test set of a suite."""
    out = {}
    for run in counted[counted.variant == variant].itertuples():
        try:
            out[int(run.seed)] = (load_predictions(Path(run.run_dir) / "predictions.npz") if suite is None
                                  else load_evaluation_predictions(run.run_dir, suite, test_set))
        except (OSError, KeyError):
            continue
    return out


def disagreements(counted: pd.DataFrame, variant_a: str, variant_b: str, suite: str | None = None,
                  test_set: str | None = None) -> pd.DataFrame:
    """The test images where one variant is right on every seed and the other wrong on every seed
    (seeds both have), on the clean test set or one test set of a suite. One row per image:
    index, y_true, right ("a" or "b"), each variant's most frequent prediction and its mean
    confidence in that prediction over the seeds; sorted by the loser's confidence, highest first."""
    a = _predictions_over_seeds(counted, variant_a, suite, test_set)
    b = _predictions_over_seeds(counted, variant_b, suite, test_set)
    seeds = sorted(set(a) & set(b))
    columns = ["index", "y_true", "right", "pred_a", "confidence_a", "pred_b", "confidence_b"]
    if not seeds:
        return pd.DataFrame(columns=columns)
    y_true = a[seeds[0]]["y_true"]
    right_a = np.all([a[s]["y_pred"] == y_true for s in seeds], axis=0)
    wrong_a = np.all([a[s]["y_pred"] != y_true for s in seeds], axis=0)
    right_b = np.all([b[s]["y_pred"] == y_true for s in seeds], axis=0)
    wrong_b = np.all([b[s]["y_pred"] != y_true for s in seeds], axis=0)

    def vote(predictions, index):
        labels = np.array([predictions[s]["y_pred"][index] for s in seeds])
        label = int(np.bincount(labels).argmax())
        confidence = float(np.mean([predictions[s]["probabilities"][index, label] for s in seeds]))
        return label, confidence

    rows = []
    for index in np.flatnonzero((right_a & wrong_b) | (right_b & wrong_a)):
        pred_a, conf_a = vote(a, index)
        pred_b, conf_b = vote(b, index)
        rows.append({"index": int(index), "y_true": int(y_true[index]), "right": "a" if right_a[index] else "b",
                     "pred_a": pred_a, "confidence_a": conf_a, "pred_b": pred_b, "confidence_b": conf_b})
    table = pd.DataFrame(rows, columns=columns)
    loser_confidence = np.where(table.right == "a", table.confidence_b, table.confidence_a)
    return table.iloc[np.argsort(-loser_confidence, kind="stable")].reset_index(drop=True)


def per_class_difference(counted: pd.DataFrame, variant_a: str, variant_b: str,
                         class_names: list[str] | None = None) -> pd.DataFrame:
    """Per class of the clean test set: the accuracy (recall) of `variant_a` minus that of
    `variant_b`, seed against seed, with its mean and 95% t-interval over the seeds both have.
    Columns: class, mean, ci_low, ci_high, seeds."""
    a = _predictions_over_seeds(counted, variant_a, None, None)
    b = _predictions_over_seeds(counted, variant_b, None, None)
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return pd.DataFrame(columns=["class", "mean", "ci_low", "ci_high", "seeds"])
    y_true = a[seeds[0]]["y_true"]
    classes = np.unique(y_true)
    rows = []
    for c in classes:
        mask = y_true == c
        diffs = [np.mean(a[s]["y_pred"][mask] == c) - np.mean(b[s]["y_pred"][mask] == c) for s in seeds]
        mean, _, low, high = mean_ci(diffs)
        rows.append({"class": class_names[c] if class_names else str(c), "mean": mean, "ci_low": low,
                     "ci_high": high, "seeds": len(seeds)})
    return pd.DataFrame(rows)


def beyond_accuracy_line(corruptions: pd.DataFrame, calibration: pd.DataFrame) -> str:
    """One sentence naming the most robust variant (highest mean accuracy over the corruptions)
    and the best-calibrated one (lowest ECE as trained, and after temperature scaling)."""
    parts = []
    means = corruptions[corruptions.test_set == "mean over corruptions"] if not corruptions.empty else corruptions
    if not means.empty:
        top = means.sort_values("mean", ascending=False).iloc[0]
        parts.append(f"Most robust: {top.variant}, mean accuracy {top['mean']:.4f} over the MNIST-C-style "
                     "(regenerated) corruptions")
    if not calibration.empty:
        best = calibration.sort_values("ece").iloc[0]
        after = (f"; {best.ece_after_temperature:.4f} after temperature scaling"
                 if best.ece_after_temperature == best.ece_after_temperature else "")
        parts.append(f"best calibrated: {best.variant}, ECE {best.ece:.4f}{after}")
    text = "; ".join(parts)
    return (text[0].upper() + text[1:] + ".") if text else ""
