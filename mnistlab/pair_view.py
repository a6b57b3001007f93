"""Two variants side by side, in Jupyter: `mnistlab.explore("runs")` shows two menus to pick them, then
their validation curves over seeds, McNemar's verdict, the per-class accuracy difference, the digits
they disagree on and their accuracy per corruption. Offline, in the kernel (ipywidgets); executed by
papermill or in the report (`static=True`) it renders the default pair (the best variant against the
runner-up) as plain output."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from mnistlab import beyond_accuracy as beyond
from mnistlab.compare import Comparison
from mnistlab.plots import plot_class_difference, plot_comparison, plot_disagreements, plot_pair_corruptions
from mnistlab.robustness import LABEL, REGENERATED
from mnistlab.stats import pairwise_mcnemar, pairwise_verdicts
from mnistlab.summary import correct_by_run


def pair_verdict(counted: pd.DataFrame, variant_a: str, variant_b: str, alpha: float = 0.05) -> str:
    """McNemar's exact test between two variants on the clean test set, seed against seed (one
    comparison per seed, so Holm changes nothing); significant only if it is with every seed."""
    pair = counted[counted.variant.isin([variant_a, variant_b])]
    verdicts = pairwise_verdicts(pairwise_mcnemar(correct_by_run(pair), alpha=alpha))
    if verdicts.empty:
        return "No seed has runs of both variants: no paired test."
    v = verdicts.iloc[0]
    only = {v.model_a: int(v.only_a_right), v.model_b: int(v.only_b_right)}
    verdict = "significantly different with every seed" if v.significant_all_seeds else "not significantly different"
    return (f"McNemar's exact test over {v.n_seeds} seed(s): **{verdict}** (largest p {v.p_holm_max:.2e}). "
            f"Test images only {variant_a} gets right: {only[variant_a]}; only {variant_b}: {only[variant_b]} "
            "(summed over seeds).")


def render_pair(cmp: Comparison, variant_a: str, variant_b: str, images=None) -> None:
    """Display the A-vs-B view of two variants of a Comparison (nothing is written to disk)."""
    counted = cmp.counted
    display(Markdown(f"### {variant_a} (A) against {variant_b} (B)"))
    display(Markdown(pair_verdict(counted, variant_a, variant_b, cmp.alpha)))
    histories = cmp._histories()
    fig = plot_comparison(histories[histories.variant.isin([variant_a, variant_b])], hue="variant")
    display(fig)
    plt.close(fig)
    difference = beyond.per_class_difference(counted, variant_a, variant_b, cmp.class_names)
    if not difference.empty:
        fig = plot_class_difference(difference, variant_a, variant_b)
        display(fig)
        plt.close(fig)
    table = beyond.disagreements(counted, variant_a, variant_b)
    if len(table):
        fig = plot_disagreements(cmp.test_images() if images is None else images, table, variant_a, variant_b,
                                 cmp.class_names)
        display(fig)
        plt.close(fig)
    long = beyond.corruption_accuracy(counted[counted.variant.isin([variant_a, variant_b])], REGENERATED)
    if long.empty:
        display(Markdown(f"*Not evaluated on the {LABEL} corruptions yet (`python -m mnistlab evaluate`, or run-all).*"))
    else:
        fig = plot_pair_corruptions(beyond.corruption_summary(long), variant_a, variant_b)
        display(fig)
        plt.close(fig)


def explore(runs_dir: str | Path = "../runs", dataset: str = "mnist", static: bool = False, alpha: float = 0.05):
    """Pick two variants of the runs in `runs_dir` and look at them side by side (see the module's
    docstring). `static`: render the default pair only, as plain output (papermill, the report)."""
    cmp = Comparison(runs_dir, dataset, alpha)
    pair = cmp.default_pair()
    if pair is None:
        display(Markdown("*One variant only: nothing to set against it.*"))
        return None
    images = cmp.test_images()
    if static:
        render_pair(cmp, *pair, images=images)
        return None
    import ipywidgets as widgets

    choose_a = widgets.Dropdown(options=cmp.order, value=pair[0], description="A")
    choose_b = widgets.Dropdown(options=cmp.order, value=pair[1], description="B")
    out = widgets.Output()

    def show(_=None):
        out.clear_output(wait=True)
        with out:
            if choose_a.value == choose_b.value:
                display(Markdown("*Pick two different variants.*"))
            else:
                render_pair(cmp, choose_a.value, choose_b.value, images=images)

    choose_a.observe(show, names="value")
    choose_b.observe(show, names="value")
    show()
    view = widgets.VBox([widgets.HBox([choose_a, choose_b]), out])
    display(view)
    return view
