"""Statistics for comparing runs: mean ± std and a 95% confidence interval over seeds, and
McNemar's exact test between two models' predictions on the same test images (statsmodels)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests


def mean_ci(values, confidence: float = 0.95) -> tuple[float, float, float, float]:
    """(mean, sample std, CI low, CI high) of `values`, the interval from Student's t.

    With a single value the std and the interval are NaN: one run says nothing about spread.
    """
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, float("nan"), float("nan"), float("nan")
    std = float(values.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df=len(values) - 1) * std / np.sqrt(len(values)))
    return mean, std, mean - half, mean + half


def summarize_by_model(summary: pd.DataFrame, order: list[str] | None = None, by: str = "model") -> pd.DataFrame:
    """One row per model (or per `by`, e.g. "variant") from a one-row-per-run table (columns
    model, test_accuracy, test_loss, train_seconds): n_runs, mean, std and 95% CI of test
    accuracy, mean and std of test loss, mean train seconds."""
    rows = []
    for key, group in summary.groupby(by, sort=False):
        acc = mean_ci(group.test_accuracy)
        loss = mean_ci(group.test_loss)
        rows.append({by: key, **({"model": group.model.iloc[0]} if by != "model" else {}), "n_runs": len(group),
                     "test_accuracy_mean": acc[0], "test_accuracy_std": acc[1],
                     "test_accuracy_ci95_low": acc[2], "test_accuracy_ci95_high": acc[3],
                     "test_loss_mean": loss[0], "test_loss_std": loss[1],
                     "train_seconds_mean": float(group.train_seconds.mean())})
    table = pd.DataFrame(rows)
    if order:
        table = table.sort_values(by, key=lambda s: s.map({m: i for i, m in enumerate(order)}))
    return table.reset_index(drop=True)


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[int, int, float]:
    """McNemar's exact test on paired predictions of the same N test images.

    correct_a, correct_b: (N,) bool, whether each model got each image right.
    Returns (only_a_right, only_b_right, two-sided p-value); identical predictions give p = 1.
    """
    correct_a, correct_b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    if correct_a.shape != correct_b.shape:
        raise ValueError(f"predictions differ in shape: {correct_a.shape} vs {correct_b.shape}")
    table = [[int(np.sum(correct_a & correct_b)), int(np.sum(correct_a & ~correct_b))],
             [int(np.sum(~correct_a & correct_b)), int(np.sum(~correct_a & ~correct_b))]]
    only_a, only_b = table[0][1], table[1][0]
    p_value = 1.0 if only_a + only_b == 0 else float(mcnemar(table, exact=True).pvalue)
    return only_a, only_b, p_value


def pairwise_mcnemar(correct: dict[tuple[str, int], np.ndarray], alpha: float = 0.05) -> pd.DataFrame:
    """McNemar's exact test between every pair of models, on runs with the same seed.

    correct: (model, seed) -> (N,) bool, right or wrong on each test image.
    Returns one row per (model_a, model_b, seed): only_a_right, only_b_right, p_value, p_holm
    (Holm-corrected over the pairs of that seed) and significant (p_holm < alpha).
    """
    rows = []
    seeds = sorted({seed for _, seed in correct})
    models = list(dict.fromkeys(model for model, _ in correct))
    for seed in seeds:
        seed_rows = []
        for a, b in itertools.combinations(models, 2):
            if (a, seed) in correct and (b, seed) in correct:
                only_a, only_b, p = mcnemar_exact(correct[a, seed], correct[b, seed])
                seed_rows.append({"model_a": a, "model_b": b, "seed": seed, "only_a_right": only_a,
                                  "only_b_right": only_b, "p_value": p})
        if seed_rows:
            reject, p_holm, _, _ = multipletests([r["p_value"] for r in seed_rows], alpha=alpha, method="holm")
            for row, p_adj, rej in zip(seed_rows, p_holm, reject):
                row.update(p_holm=float(p_adj), significant=bool(rej))
        rows += seed_rows
    return pd.DataFrame(rows, columns=["model_a", "model_b", "seed", "only_a_right", "only_b_right",
                                       "p_value", "p_holm", "significant"])


def pairwise_verdicts(pairwise: pd.DataFrame) -> pd.DataFrame:
    """One row per pair of models over all seeds: seeds tested, the largest Holm p-value, and
    whether the difference was significant with every seed (the conservative verdict)."""
    if pairwise.empty:
        return pd.DataFrame(columns=["model_a", "model_b", "n_seeds", "p_holm_max", "significant_all_seeds"])
    return (pairwise.groupby(["model_a", "model_b"], sort=False)
            .agg(n_seeds=("seed", "count"), only_a_right=("only_a_right", "sum"),
                 only_b_right=("only_b_right", "sum"), p_holm_max=("p_holm", "max"),
                 significant_all_seeds=("significant", "all"))
            .reset_index())


def pareto_front(table: pd.DataFrame, maximize: str, minimize: str) -> pd.Series:
    """Whether each row is non-dominated: no other row is at least as good on both columns
    (`maximize` higher, `minimize` lower) and strictly better on one. Returns a bool Series
    aligned with `table`."""
    values = table[[maximize, minimize]].to_numpy(dtype=float)
    front = []
    for a in values:
        dominated = any(b[0] >= a[0] and b[1] <= a[1] and (b[0] > a[0] or b[1] < a[1]) for b in values)
        front.append(not dominated)
    return pd.Series(front, index=table.index, name="pareto")


def seconds_to_final(history: pd.DataFrame, tolerance: float = 0.001) -> float:
    """Training seconds (summed `epoch_seconds`) until the run's validation accuracy first came
    within `tolerance` of its final value; NaN without validation."""
    if "val_accuracy" not in history or history.val_accuracy.isna().all():
        return float("nan")
    reached = history.val_accuracy >= history.val_accuracy.iloc[-1] - tolerance
    first = int(np.argmax(reached.to_numpy()))
    return float(history.epoch_seconds.iloc[: first + 1].sum())
