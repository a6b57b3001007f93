"""Figures: one run's learning curves and the overlaid validation curves of many runs."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator


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
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
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
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].set_ylim(max(0.0, histories["val_accuracy"].quantile(0.05) - 0.01), 1.0)
    axes[1].set_yscale("log")
    axes[0].get_legend().remove()  # one legend, outside the curves
    sns.move_legend(axes[1], "upper left", bbox_to_anchor=(1.02, 1))
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig
