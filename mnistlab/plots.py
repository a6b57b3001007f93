"""Figures: one run's learning curves, the overlaid validation curves of many runs, and the
comparisons beyond clean accuracy (accuracy under corruptions, disagreements, per-class
differences)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator


def _epoch_axis(ax, epochs) -> None:
    """Whole epochs on the x axis, also for a run of one or two epochs (no 0.95, 1.05 ticks)."""
    epochs = sorted(set(int(e) for e in epochs))
    if 0 < len(epochs) <= 2:
        ax.set_xticks(epochs)
        ax.set_xlim(epochs[0] - 0.5, epochs[-1] + 0.5)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def plot_curves(history: pd.DataFrame, title: str = "", path: str | Path | None = None) -> plt.Figure:
    """Train and validation accuracy and loss per epoch, side by side.

    `history` has the columns of a run's history.csv (epoch, loss, accuracy, val_loss,
    val_accuracy, ...). Saves a PNG to `path` if given; returns the figure.
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for ax, metric in zip(axes, ("accuracy", "loss")):
        columns = {metric: "train", f"val_{metric}": "validation"}
        long = (history[["epoch", *[c for c in columns if c in history]]].rename(columns=columns)
                .melt(id_vars="epoch", var_name="split", value_name=metric))
        sns.lineplot(data=long, x="epoch", y=metric, hue="split", marker="o", ax=ax)
        ax.set_title(metric)
        _epoch_axis(ax, history["epoch"] if "epoch" in history else [])
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


def plot_comparison(histories: pd.DataFrame, path: str | Path | None = None, hue: str = "model") -> plt.Figure:
    """Overlaid validation accuracy and loss per epoch, one line per model (or per `hue`).

    `histories` is the concatenation of runs' history.csv with a `model` (or `hue`) column
    added; with several runs per model seaborn draws the mean and a 95% confidence band.
    """
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
    for ax, metric in zip(axes, ("val_accuracy", "val_loss")):
        sns.lineplot(data=histories, x="epoch", y=metric, hue=hue, marker="o", ax=ax)
        ax.set_title(f"{metric} per epoch")
        _epoch_axis(ax, histories["epoch"])
        ax.grid(alpha=0.3)
    axes[0].set_ylim(max(0.0, histories["val_accuracy"].quantile(0.05) - 0.01), 1.0)
    axes[1].set_yscale("log")
    axes[0].get_legend().remove()  # one legend, outside the curves
    sns.move_legend(axes[1], "upper left", bbox_to_anchor=(1.02, 1))
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


def plot_corruption_heatmap(summary: pd.DataFrame, title: str = "", path: str | Path | None = None) -> plt.Figure:
    """Mean test accuracy per variant (rows) and test set (columns, "mean over corruptions" last),
    annotated with the mean and its 95% interval's half-width over seeds. `summary` is
    mnistlab.comparisons.corruption_summary's table."""
    means = summary.pivot(index="variant", columns="test_set", values="mean")
    half = (summary.assign(half=(summary.ci_high - summary.ci_low) / 2)
            .pivot(index="variant", columns="test_set", values="half"))
    columns = [c for c in dict.fromkeys(summary.test_set) if c != "mean over corruptions"] + ["mean over corruptions"]
    rows = list(dict.fromkeys(summary.variant))
    means, half = means.loc[rows, columns], half.loc[rows, columns]
    labels = means.map(lambda v: f"{v:.3f}") + half.map(lambda h: f"\n±{h:.3f}" if h == h else "")
    fig, ax = plt.subplots(figsize=(max(9, 0.75 * len(columns) + 3), 0.7 * len(rows) + 2.6), constrained_layout=True)
    sns.heatmap(means, annot=labels, fmt="", cmap="viridis", vmin=max(0.0, float(np.nanmin(means.values)) - 0.02),
                vmax=1.0, cbar_kws={"label": "test accuracy (mean over seeds)"}, annot_kws={"fontsize": 7}, ax=ax)
    ax.set(xlabel="", ylabel="", title=title or "Accuracy under each corruption (mean ± 95% CI half-width)")
    ax.set_xticklabels(ax.get_xticklabels(), rotation=40, ha="right")
    ax.axvline(len(columns) - 1, color="white", linewidth=3)  # the mean apart from the corruptions
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


def plot_disagreements(x: np.ndarray, table: pd.DataFrame, variant_a: str, variant_b: str, class_names,
                       count: int = 16, columns: int = 8, path: str | Path | None = None) -> plt.Figure:
    """The test images two variants disagree on (mnistlab.comparisons.disagreements): for each,
    the true class and both variants' predictions with their mean confidence over seeds; the
    images `variant_a` gets right first, then those `variant_b` gets right."""
    shown = pd.concat([table[table.right == "a"].head(count // 2), table[table.right == "b"].head(count // 2)])
    rows = max(1, -(-len(shown) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.75 * columns, 2.25 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, row in zip(axes.ravel(), shown.itertuples()):
        ax.imshow(x[row.index], cmap="gray_r")
        ax.set_title(f"true {class_names[row.y_true]}\nA: {class_names[row.pred_a]} {row.confidence_a:.2f}\n"
                     f"B: {class_names[row.pred_b]} {row.confidence_b:.2f}", fontsize=7,
                     color="tab:green" if row.right == "a" else "tab:red")
    counts = table.right.value_counts()
    fig.suptitle(f"A = {variant_a} right on every seed, B wrong: {counts.get('a', 0)} images (green); "
                 f"the reverse: {counts.get('b', 0)} (red)", fontsize=9)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


def plot_class_difference(table: pd.DataFrame, variant_a: str, variant_b: str,
                          path: str | Path | None = None) -> plt.Figure:
    """Per-class accuracy of `variant_a` minus `variant_b` with its 95% interval over seeds
    (mnistlab.comparisons.per_class_difference)."""
    fig, ax = plt.subplots(figsize=(8, 3.6), constrained_layout=True)
    err = np.vstack([table["mean"] - table.ci_low, table.ci_high - table["mean"]])
    ax.bar(table["class"].astype(str), table["mean"], color=np.where(table["mean"] >= 0, "tab:green", "tab:red"),
           yerr=np.nan_to_num(err), capsize=3)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set(xlabel="class", ylabel="accuracy difference", title=f"{variant_a} minus {variant_b}, per class "
           "(mean and 95% CI over seeds)")
    ax.grid(axis="y", alpha=0.3)
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


def wrap_labels(ax, width: int = 16, axis: str = "x") -> None:
    """Break long tick labels (variant names) at their commas and brackets so that they do not run
    into each other; rotate them when there are many."""
    import textwrap

    ticks = ax.get_xticklabels() if axis == "x" else ax.get_yticklabels()
    labels = []
    for tick in ticks:
        text = tick.get_text().replace(",", ", ").replace("[", " [")
        labels.append("\n".join(textwrap.wrap(text, width=width, break_long_words=False, break_on_hyphens=False)))
    if axis == "x":
        ax.set_xticks(ax.get_xticks(), labels, rotation=30 if len(labels) > 8 else 0,
                      ha="right" if len(labels) > 8 else "center", fontsize=8)
    else:
        ax.set_yticks(ax.get_yticks(), labels, fontsize=8)


def plot_pareto(cost: pd.DataFrame, path: str | Path | None = None) -> plt.Figure:
    """Each variant's mean test accuracy (95% CI bars) against its training seconds per run and
    against its parameters, on log axes with plain tick labels; the Pareto front in red. `cost`:
    mnistlab.compare.Comparison.cost's table (test_accuracy_mean, ..._ci95_low/high,
    train_seconds_mean, params, pareto_time, pareto_params)."""
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    fig, axes = plt.subplots(1, 2, figsize=(13, 5), constrained_layout=True)
    for ax, x, front, label in ((axes[0], "train_seconds_mean", "pareto_time", "training seconds per run"),
                                (axes[1], "params", "pareto_params", "parameters")):
        err = np.vstack([cost.test_accuracy_mean - cost.test_accuracy_ci95_low,
                         cost.test_accuracy_ci95_high - cost.test_accuracy_mean])
        ax.errorbar(cost[x], cost.test_accuracy_mean, yerr=np.nan_to_num(err), fmt="none", ecolor="grey", capsize=3)
        ax.scatter(cost[x], cost.test_accuracy_mean, c=np.where(cost[front], "tab:red", "tab:blue"), zorder=3)
        for row in cost.itertuples():
            ax.annotate(row.variant, (getattr(row, x), row.test_accuracy_mean), fontsize=8, xytext=(4, 4),
                        textcoords="offset points")
        ax.set_xscale("log")
        ax.margins(x=0.25)  # room for the labels of the points at either end
        # Major ticks at 1, 2, 5 x 10^k (more within a narrow range), written out; no minor labels.
        values = cost[x].astype(float)
        decades = np.log10(values.max() / values.min()) if values.min() > 0 else 2
        subs = (1.0, 2.0, 5.0) if decades > 1.5 else (1.0, 1.5, 2.0, 3.0, 5.0, 7.0)
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
        formatter = ScalarFormatter()
        formatter.set_scientific(False)
        ax.xaxis.set_major_formatter(formatter)
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        ax.set(xlabel=label + " (log scale)", ylabel="test accuracy (mean, 95% CI)",
               title=f"accuracy against {label} (red: Pareto front)")
        ax.grid(alpha=0.3, which="both")
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


def plot_pvalues(verdicts: pd.DataFrame, order: list[str], alpha: float = 0.05,
                 path: str | Path | None = None) -> plt.Figure:
    """The largest Holm-corrected p-value over seeds of every pair of variants (McNemar's exact
    test), as a heatmap of log10 p with the p-values written in; * marks pairs significant at
    `alpha` with every seed. `verdicts`: mnistlab.stats.pairwise_verdicts' table."""
    p = pd.DataFrame(1.0, index=order, columns=order)
    for row in verdicts.itertuples():
        p.loc[row.model_a, row.model_b] = p.loc[row.model_b, row.model_a] = row.p_holm_max
    size = max(6.0, 0.9 * len(order) + 3)
    fig, ax = plt.subplots(figsize=(size + 1.5, size), constrained_layout=True)
    labels = p.map(lambda v: f"{v:.0e}" + ("*" if v < alpha else ""))
    sns.heatmap(np.log10(p.clip(lower=1e-300)), annot=labels, fmt="", mask=np.eye(len(order), dtype=bool),
                cmap="viridis", annot_kws={"fontsize": 8 if len(order) <= 8 else 6},
                cbar_kws={"label": "log10 p (Holm, largest over seeds)"}, square=True, ax=ax)
    wrap_labels(ax)
    wrap_labels(ax, axis="y")
    ax.set_title(f"McNemar's exact test; * significant at {alpha} with every seed")
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


def plot_pair_corruptions(summary: pd.DataFrame, variant_a: str, variant_b: str,
                          path: str | Path | None = None) -> plt.Figure:
    """Two variants' accuracy per corruption, side by side with 95% intervals over seeds
    (mnistlab.beyond_accuracy.corruption_summary's rows of the two)."""
    pair = summary[summary.variant.isin([variant_a, variant_b])]
    sets = list(dict.fromkeys(pair.test_set))
    fig, ax = plt.subplots(figsize=(max(9, 0.6 * len(sets) + 2), 4), constrained_layout=True)
    width = 0.4
    for i, (variant, color) in enumerate(((variant_a, "tab:blue"), (variant_b, "tab:orange"))):
        rows = pair[pair.variant == variant].set_index("test_set").reindex(sets)
        err = np.vstack([rows["mean"] - rows.ci_low, rows.ci_high - rows["mean"]])
        ax.bar(np.arange(len(sets)) + (i - 0.5) * width, rows["mean"], width, yerr=np.nan_to_num(err), capsize=2,
               label=variant, color=color)
    ax.set_xticks(np.arange(len(sets)), sets, rotation=40, ha="right", fontsize=8)
    ax.set(ylabel="test accuracy", ylim=(0, 1), title="Accuracy per corruption (MNIST-C-style, regenerated; "
           "mean and 95% CI over seeds)")
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(axis="y", alpha=0.3)
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig
