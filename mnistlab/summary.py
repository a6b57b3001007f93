"""The answer to "which variant is best, and is the difference real?": one table per comparison,
the same in the terminal (after run-all) and in the report.

Per variant: runs, test accuracy mean ± std and 95% CI over seeds, mean training seconds, and
whether it differs from the best variant by McNemar's exact test on paired predictions, seed
against seed, Holm-corrected over all pairs of that seed (as the comparison notebook tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mnistlab.evaluate import load_predictions
from mnistlab.results import latest_runs, load_runs
from mnistlab.stats import pairwise_mcnemar, pairwise_verdicts, summarize_by_model


def correct_by_run(counted: pd.DataFrame) -> dict[tuple[str, int], np.ndarray]:
    """McNemar's input: (variant, seed) -> (N,) bool, whether the run got each clean test image
    right, from each counted run's predictions.npz (runs without one are left out)."""
    correct = {}
    for row in counted.itertuples():
        path = Path(row.run_dir) / "predictions.npz"
        if path.is_file():
            predictions = load_predictions(path)
            correct[row.variant, int(row.seed)] = predictions["y_pred"] == predictions["y_true"]
    return correct


def comparison(runs_dir: str | Path, dataset: str = "mnist", alpha: float = 0.05,
               counted: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per variant of the counted runs (mnistlab.results.latest_runs; or `counted`, if
    given), best first: variant, runs, mean, std, ci_low, ci_high, train_seconds, versus_best
    ("best", "worse on every seed", "not significantly different", "no paired runs") and p_holm_max."""
    if counted is None:
        counted, _ = latest_runs(load_runs(runs_dir), dataset)
    if counted.empty:
        return pd.DataFrame(columns=["variant", "runs", "mean", "std", "ci_low", "ci_high", "train_seconds",
                                     "versus_best", "p_holm_max"])
    table = summarize_by_model(counted, by="variant").sort_values("test_accuracy_mean", ascending=False)
    best = table.variant.iloc[0]
    verdicts = pairwise_verdicts(pairwise_mcnemar(correct_by_run(counted), alpha=alpha))
    versus, p_max = [], []
    for variant in table.variant:
        pair = verdicts[((verdicts.model_a == best) & (verdicts.model_b == variant))
                        | ((verdicts.model_b == best) & (verdicts.model_a == variant))]
        if variant == best:
            versus.append("best"), p_max.append(None)
        elif pair.empty:
            versus.append("no paired runs"), p_max.append(None)
        else:
            significant = bool(pair.significant_all_seeds.iloc[0])
            versus.append("worse on every seed" if significant else "not significantly different")
            p_max.append(float(pair.p_holm_max.iloc[0]))
    return pd.DataFrame({
        "variant": table.variant, "runs": table.n_runs, "mean": table.test_accuracy_mean,
        "std": table.test_accuracy_std, "ci_low": table.test_accuracy_ci95_low,
        "ci_high": table.test_accuracy_ci95_high, "train_seconds": table.train_seconds_mean,
        "versus_best": versus, "p_holm_max": p_max}).reset_index(drop=True)


def headline(table: pd.DataFrame, tolerance: float = 0.001) -> str:
    """Two sentences: the best variant with its mean and interval and which others it beats on
    every seed; the fastest variant within `tolerance` of the best's mean accuracy."""
    if table.empty:
        return "No completed runs to compare."
    best = table.iloc[0]
    interval = f" (95% CI {best.ci_low:.4f}-{best.ci_high:.4f})" if best.ci_low == best.ci_low else ""
    if len(table) == 1:
        return (f"One variant: {best.variant}, test accuracy {best['mean']:.4f}{interval} over {best.runs} run(s), "
                f"{best.train_seconds:.1f} s of training per run.")
    beaten = table.variant[table.versus_best == "worse on every seed"].tolist()
    close = table[table["mean"] >= best["mean"] - tolerance].sort_values("train_seconds").iloc[0]
    text = (f"Best: {best.variant}, test accuracy {best['mean']:.4f}{interval} over {best.runs} run(s); "
            f"significantly better on every seed than {', '.join(beaten) if beaten else 'none of the others'}.")
    return text + (f" Fastest within {tolerance} of it: {close.variant} ({close.train_seconds:.1f} s per run)."
                   if close.variant != best.variant else f" No variant within {tolerance} of it trains faster.")


def print_comparison(table: pd.DataFrame, where: str | None = None, beyond: str = "") -> None:
    """The comparison as a table in the terminal (rich), then the headline, the line on robustness
    and calibration (`beyond`), and where the report is."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    import shutil

    # Logs and CI are not terminals: rich would assume 80 columns and wrap every row.
    console = Console(width=max(120, shutil.get_terminal_size((120, 24)).columns))
    view = Table(title="Comparison (test accuracy over seeds; McNemar/Holm against the best)")
    for column, justify in (("variant", "left"), ("runs", "right"), ("test accuracy", "right"),
                            ("95% CI", "right"), ("train s", "right"), ("vs the best", "left")):
        view.add_column(column, justify=justify, no_wrap=column not in ("variant", "vs the best"))
    for row in table.itertuples():
        spread = f" ± {row.std:.4f}" if row.std == row.std else ""
        interval = f"{row.ci_low:.4f}-{row.ci_high:.4f}" if row.ci_low == row.ci_low else "-"
        verdict = row.versus_best + (f" (Holm p ≤ {row.p_holm_max:.1e})" if row.p_holm_max is not None
                                     and row.p_holm_max == row.p_holm_max else "")
        view.add_row(escape(row.variant), str(row.runs), f"{row.mean:.4f}{spread}", interval, f"{row.train_seconds:.1f}",
                     verdict)
    console.print(view)
    console.print(escape(headline(table)))
    if beyond:
        console.print(escape(beyond))
    if where:
        console.print(escape(where))
