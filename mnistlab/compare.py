"""The comparison of a runs folder, section by section, for compare_runs.ipynb, the report and the
console: each method computes one section from the counted runs, writes its files into the runs
folder (CSV tables, PNG figures) and returns what a notebook displays (a table, a figure).

    cmp = Comparison("runs")
    cmp.answer()        # the headline and the table of variants, McNemar against the best
    cmp.robustness()    # accuracy per corruption (heatmap), McNemar/Holm per corruption
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from mnistlab import beyond_accuracy as beyond
from mnistlab.plots import (plot_class_difference, plot_comparison, plot_corruption_heatmap, plot_disagreements,
                            wrap_labels)
from mnistlab.registry import model_names
from mnistlab.results import latest_runs, load_history, load_runs
from mnistlab.robustness import LABEL, REGENERATED
from mnistlab.runs import read_json
from mnistlab.stats import pairwise_mcnemar, pairwise_verdicts, pareto_front, seconds_to_final, summarize_by_model
from mnistlab.summary import comparison, correct_by_run, headline


def _pm(mean: float, std: float) -> str:
    return f"{mean:.4f} ± {std:.4f}" if std == std else f"{mean:.4f}"


def _interval(low: float, high: float) -> str:
    return f"{low:.4f}-{high:.4f}" if low == low else "-"


class Comparison:
    """The counted runs of `dataset` in `runs_dir` (the latest completed run of each variant and
    seed; mnistlab.results.latest_runs) and every section of their comparison. Raises
    FileNotFoundError for a folder without runs, RuntimeError if none of `dataset` completed."""

    def __init__(self, runs_dir: str | Path, dataset: str = "mnist", alpha: float = 0.05):
        self.runs_dir, self.dataset, self.alpha = Path(runs_dir), dataset, alpha
        runs = load_runs(self.runs_dir)
        if runs.empty:
            raise FileNotFoundError(f"No run folders in {self.runs_dir.resolve()}; train some first (make run-all)")
        counted, self.not_counted = latest_runs(runs, dataset)
        if counted.empty:
            raise RuntimeError(f"No completed run of {dataset!r} in {self.runs_dir.resolve()} to compare: every run "
                               "failed, diverged or is incomplete (see each run's status.json)")
        zoo = {m: i for i, m in enumerate(model_names())}
        self.order = sorted(set(counted.variant), key=lambda v: (zoo.get(v.split("[")[0], len(zoo)), v))
        rank = {v: i for i, v in enumerate(self.order)}
        self.counted = counted.sort_values(["variant", "seed"], key=lambda s: s.map(rank) if s.name == "variant" else s)
        self.table = comparison(self.runs_dir, dataset, alpha, counted=self.counted)
        self.best = self.table.variant.iloc[0]
        self.class_names = list(read_json(Path(self.counted.run_dir.iloc[0]) / "config.json")["data"]["class_names"])
        self._images = None

    def test_images(self):
        """The dataset's test images, (10000, 28, 28) uint8 (for galleries of the runs' predictions)."""
        if self._images is None:
            from mnistlab.data import load_dataset

            self._images = load_dataset(self.dataset, validation_size=0).x_test
        return self._images

    # ---- clean accuracy ---------------------------------------------------------------------

    def counted_note(self) -> str:
        """How many runs are compared and how many are not, and why."""
        reasons = self.not_counted.reason.value_counts()
        apart = ", ".join(f"{n} {reason}" for reason, n in reasons.items())
        return f"{len(self.counted)} runs compared" + (f"; not counted: {apart}" if apart else "; none left out")

    def answer(self) -> tuple[str, pd.DataFrame]:
        """(headline, table): each variant's test accuracy (mean ± std, 95% CI over seeds), its
        training seconds and McNemar's verdict against the best; writes answer.csv."""
        self.table.to_csv(self.runs_dir / "answer.csv", index=False)
        view = pd.DataFrame({
            "variant": self.table.variant, "runs": self.table.runs,
            "test accuracy": [_pm(m, s) for m, s in zip(self.table["mean"], self.table["std"])],
            "95% CI": [_interval(lo, hi) for lo, hi in zip(self.table.ci_low, self.table.ci_high)],
            "train s": self.table.train_seconds.map("{:.1f}".format),
            "vs the best": [v + (f" (p ≤ {p:.1e})" if p is not None and p == p else "")
                            for v, p in zip(self.table.versus_best, self.table.p_holm_max)]})
        return headline(self.table), view

    def every_run(self) -> pd.DataFrame:
        """One row per counted run (summary.csv): variant, seed, its metrics, and what the machine
        resolved (precision, threads)."""
        columns = ["run", "model", "variant", "dataset", "seed", "test_accuracy", "test_loss", "val_accuracy", "ece",
                   "params", "train_seconds", "images_per_second", "epochs_run", "limit", "precision", "threads"]
        summary = self.counted[[c for c in columns if c in self.counted]]
        summary.to_csv(self.runs_dir / "summary.csv", index=False)
        view = summary.drop(columns=["model", "dataset"]).dropna(axis=1, how="all")  # no column of blanks
        view = view.assign(**{c: view[c].round().astype("Int64") for c in ("images_per_second",) if c in view})
        return view.rename(columns={"precision": "machine: precision", "threads": "machine: threads"})

    def by_variant(self) -> pd.DataFrame:
        """Per variant (by_model.csv): runs, test accuracy and loss (mean ± std, 95% CI), the
        accuracy its source reports, training seconds and the precision the machine resolved."""
        by_model = summarize_by_model(self.counted, self.order, by="variant")
        by_model["reported_accuracy"] = by_model.variant.map(self.counted.groupby("variant").reported_accuracy.first())
        by_model["precision"] = by_model.variant.map(
            self.counted.groupby("variant").precision.agg(lambda p: ", ".join(sorted(set(map(str, p))))))
        by_model.to_csv(self.runs_dir / "by_model.csv", index=False)
        return pd.DataFrame({
            "variant": by_model.variant, "runs": by_model.n_runs,
            "test accuracy": [_pm(m, s) for m, s in zip(by_model.test_accuracy_mean, by_model.test_accuracy_std)],
            "95% CI": [_interval(lo, hi) for lo, hi in zip(by_model.test_accuracy_ci95_low,
                                                            by_model.test_accuracy_ci95_high)],
            "test loss": [_pm(m, s) for m, s in zip(by_model.test_loss_mean, by_model.test_loss_std)],
            "reported by the source": by_model.reported_accuracy.map(
                lambda v: f"{v:.4f}" if v is not None and v == v else "-"),
            "train seconds": by_model.train_seconds_mean.map("{:.1f}".format),
            "machine: precision": by_model.precision})

    def accuracy_figure(self) -> plt.Figure:
        """Test accuracy per run (dots) and per variant (mean with 95% CI): accuracy.png."""
        fig, ax = plt.subplots(figsize=(max(9, 1.25 * len(self.order)), 4.6), constrained_layout=True)
        sns.pointplot(data=self.counted, x="variant", y="test_accuracy", order=self.order, errorbar=("ci", 95),
                      linestyle="none", capsize=0.2, color="black", ax=ax)
        sns.stripplot(data=self.counted, x="variant", y="test_accuracy", order=self.order, hue="variant",
                      legend=False, alpha=0.6, ax=ax)
        ax.set(title="Test accuracy per run (dots) and mean with 95% CI", ylabel="test accuracy", xlabel="")
        wrap_labels(ax)
        ax.grid(alpha=0.3)
        fig.savefig(self.runs_dir / "accuracy.png", dpi=100)
        return fig

    def curves(self) -> plt.Figure:
        """Validation accuracy and loss per epoch, a band over seeds: comparison.png."""
        return plot_comparison(self._histories(), path=self.runs_dir / "comparison.png", hue="variant")

    def _histories(self) -> pd.DataFrame:
        return pd.concat([load_history(row.run_dir).assign(variant=row.variant, run=row.run)
                          for row in self.counted.itertuples()], ignore_index=True)

    def cost(self) -> tuple[pd.DataFrame, plt.Figure]:
        """Accuracy against training seconds and parameters, the Pareto front marked (cost.csv,
        pareto.png); `seconds_to_final` is the training time until validation accuracy first came
        within 0.001 of its final value."""
        by_model = summarize_by_model(self.counted, self.order, by="variant")
        cost = by_model[["variant", "n_runs", "test_accuracy_mean", "test_accuracy_ci95_low",
                         "test_accuracy_ci95_high", "train_seconds_mean"]].copy()
        cost["params"] = cost.variant.map(self.counted.groupby("variant").params.first()).astype(float)
        histories = self._histories()
        cost["seconds_to_final"] = cost.variant.map(histories.groupby(["variant", "run"]).apply(
            seconds_to_final, include_groups=False).groupby("variant").mean())
        cost["pareto_time"] = pareto_front(cost, "test_accuracy_mean", "train_seconds_mean")
        cost["pareto_params"] = pareto_front(cost, "test_accuracy_mean", "params")
        cost.to_csv(self.runs_dir / "cost.csv", index=False)
        from mnistlab.plots import plot_pareto

        fig = plot_pareto(cost, path=self.runs_dir / "pareto.png")
        return cost[["variant", "test_accuracy_mean", "train_seconds_mean", "seconds_to_final", "params",
                     "pareto_time", "pareto_params"]], fig

    def pairwise(self) -> tuple[pd.DataFrame, plt.Figure | None]:
        """McNemar's exact test between every pair, seed against seed, Holm-corrected over the pairs
        of each seed; a pair is significant only with every seed (pairwise.csv, pairwise.png)."""
        from mnistlab.plots import plot_pvalues

        pairwise = pairwise_mcnemar(correct_by_run(self.counted), alpha=self.alpha)
        pairwise.to_csv(self.runs_dir / "pairwise.csv", index=False)
        verdicts = pairwise_verdicts(pairwise)
        if verdicts.empty:
            return verdicts, None
        return verdicts, plot_pvalues(verdicts, self.order, self.alpha, path=self.runs_dir / "pairwise.png")

    # ---- beyond clean accuracy --------------------------------------------------------------

    def robustness(self) -> tuple[pd.DataFrame, pd.DataFrame, plt.Figure] | None:
        """Accuracy per variant and corruption (mean, 95% CI over seeds), the mean over corruptions,
        and McNemar/Holm per corruption between the best clean variant and each other, on every
        seed (robustness.csv, robustness_mcnemar.csv, robustness.png). None if no run was
        evaluated on the corruptions (`python -m mnistlab evaluate`, or run-all)."""
        long = beyond.corruption_accuracy(self.counted, REGENERATED)
        if long.empty:
            return None
        summary = beyond.corruption_summary(long)
        summary.to_csv(self.runs_dir / "robustness.csv", index=False)
        tests = beyond.corruption_mcnemar(self.counted, self.best, REGENERATED, self.alpha)
        tests.to_csv(self.runs_dir / "robustness_mcnemar.csv", index=False)
        wide = summary.pivot(index="variant", columns="test_set", values="mean")
        columns = [c for c in dict.fromkeys(summary.test_set) if c != "mean over corruptions"]
        wide = wide.loc[[v for v in self.order if v in wide.index], ["mean over corruptions", *columns]]
        fig = plot_corruption_heatmap(summary, title=f"{LABEL}: test accuracy per corruption (mean ± 95% CI "
                                      "half-width over seeds)", path=self.runs_dir / "robustness.png")
        verdicts = tests.pivot(index="variant", columns="test_set", values="verdict") if not tests.empty else tests
        return wide.round(4), verdicts, fig

    def calibration(self) -> tuple[pd.DataFrame, plt.Figure] | None:
        """Per variant over seeds: ECE before and after the temperature fitted on validation (mean,
        95% CI), NLL, Brier score (calibration.csv), and the reliability diagrams of the test set,
        seeds pooled, overlaid (reliability.png). None if no run recorded calibration."""
        from mnistlab.calibration import plot_reliability, reliability_table
        from mnistlab.evaluate import load_predictions

        table = beyond.calibration_summary(self.counted)
        if table.empty:
            return None
        table.to_csv(self.runs_dir / "calibration.csv", index=False)
        tables = {}
        for variant in table.variant:
            runs = self.counted[self.counted.variant == variant]
            predictions = [load_predictions(Path(d) / "predictions.npz") for d in runs.run_dir]
            tables[variant] = reliability_table(np.concatenate([p["probabilities"] for p in predictions]),
                                                np.concatenate([p["y_true"] for p in predictions]))
        fig = plot_reliability(tables, title="Reliability on the test set (seeds pooled; as trained)")
        fig.savefig(self.runs_dir / "reliability.png", dpi=100)
        view = pd.DataFrame({
            "variant": table.variant, "runs": table.runs,
            "ECE": [f"{m:.4f} ({_interval(lo, hi)})" for m, lo, hi in zip(table.ece, table.ece_ci_low,
                                                                         table.ece_ci_high)],
            "ECE after temperature": [f"{m:.4f} ({_interval(lo, hi)})" if m == m else "-" for m, lo, hi in zip(
                table.ece_after_temperature, table.ece_after_ci_low, table.ece_after_ci_high)],
            "temperature": table.temperature.map(lambda t: f"{t:.2f}" if t == t else "-"),
            "NLL": table.nll.map("{:.4f}".format), "Brier": table.brier.map("{:.4f}".format)})
        return view, fig

    def default_pair(self) -> tuple[str, str] | None:
        """The best clean variant and the runner-up: the pair the disagreement view shows first."""
        return (self.table.variant.iloc[0], self.table.variant.iloc[1]) if len(self.table) > 1 else None

    def disagreements(self, variant_a: str | None = None, variant_b: str | None = None,
                      count: int = 16) -> tuple[pd.DataFrame, plt.Figure, plt.Figure] | None:
        """Where two variants disagree on the clean test set (default: the best and the runner-up):
        the images one gets right on every seed and the other wrong on every seed, as a gallery
        with both predictions and confidences (disagreements.csv, disagreements.png), and the
        per-class accuracy difference with its interval over seeds (class_difference.png)."""
        if variant_a is None or variant_b is None:
            pair = self.default_pair()
            if pair is None:
                return None
            variant_a, variant_b = pair
        table = beyond.disagreements(self.counted, variant_a, variant_b)
        table.to_csv(self.runs_dir / "disagreements.csv", index=False)
        gallery = plot_disagreements(self.test_images(), table, variant_a, variant_b, self.class_names, count=count,
                                     path=self.runs_dir / "disagreements.png")
        difference = beyond.per_class_difference(self.counted, variant_a, variant_b, self.class_names)
        bars = plot_class_difference(difference, variant_a, variant_b, path=self.runs_dir / "class_difference.png")
        return table, gallery, bars

    def beyond_line(self) -> str:
        """One sentence: the most robust variant and the best-calibrated one."""
        long = beyond.corruption_accuracy(self.counted, REGENERATED)
        summary = beyond.corruption_summary(long) if not long.empty else pd.DataFrame(columns=["test_set"])
        return beyond.beyond_accuracy_line(summary, beyond.calibration_summary(self.counted))


def show(table: pd.DataFrame, floats: str = "{:.4f}"):
    """A table as a notebook shows it: no index, numbers to 4 decimals, run names and variant
    labels never broken in the middle (they wrap only at their commas)."""
    styler = table.style.hide(axis="index").format(precision=4, na_rep="-", thousands=",",
                                                    subset=table.select_dtypes("float").columns)
    text = [c for c in table.columns if table[c].dtype == object]
    if text:  # words read from the left; numbers stay right-aligned
        styler = styler.set_properties(subset=text, **{"text-align": "left"})
    if "run" in table:
        styler = styler.set_properties(subset=["run"], **{"white-space": "nowrap"})
    return styler.set_table_styles([{"selector": "th", "props": [("text-align", "left")]}])
