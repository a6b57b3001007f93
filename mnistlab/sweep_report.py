"""A sweep's report (sweep_report.ipynb and the console): sweep.csv, the table of settings (mean ±
std over seeds, the best on validation marked), whether the best setting beats the recipe's own on
the test set (McNemar, seed against seed, Holm), and Optuna's figures. Test accuracy never chooses."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd

from mnistlab.config import make_config
from mnistlab.results import load_runs
from mnistlab.runs import read_json
from mnistlab.stats import mean_ci, pairwise_mcnemar, pairwise_verdicts
from mnistlab.summary import correct_by_run


def sweep_table(folder: Path, keys: list[str]) -> pd.DataFrame:
    """sweep.csv: one row per run of the sweep: `point` (the swept settings, or "default" for the
    recipe's own), the swept settings, seed, status, final val_accuracy, test_accuracy,
    train_seconds, variant and run."""
    spec = read_json(folder / "sweep.json")
    default = make_config(spec["model"], **spec["overrides"])
    rows = []
    for row in load_runs(folder).itertuples():
        if row.status == "unreadable":
            continue
        settings = read_json(Path(row.run_dir) / "config.json")["config"]
        point = {k: settings[k] for k in keys}
        is_default = all(v == getattr(default, k) for k, v in point.items())
        rows.append({"point": "default" if is_default else ",".join(f"{k}={v}" for k, v in point.items()),
                     **point, "seed": row.seed, "status": row.status, "val_accuracy": row.val_accuracy,
                     "test_accuracy": row.test_accuracy, "train_seconds": row.train_seconds,
                     "variant": row.variant, "run": row.run})
    return pd.DataFrame(rows, columns=["point", *keys, "seed", "status", "val_accuracy", "test_accuracy",
                                       "train_seconds", "variant", "run"])


def best_point(table: pd.DataFrame) -> pd.Series:
    """The point with the highest mean final validation accuracy over its completed seeds."""
    completed = table[table.status == "completed"]
    if completed.empty:
        raise ValueError("no trial of the sweep completed: nothing to choose from")
    means = completed.groupby("point", sort=False).val_accuracy.mean()
    return completed[completed.point == means.idxmax()].iloc[0]


def write_figures(table: pd.DataFrame, keys: list[str], folder: Path) -> None:
    """Optuna's matplotlib parallel-coordinate and parameter-importance figures, from the
    completed runs (an in-memory study of them: grids and searches alike)."""
    import matplotlib.pyplot as plt
    import optuna

    completed = table[table.status == "completed"]
    if len(completed) < 2:
        return
    distributions = {}
    for key in keys:
        values = sorted(set(completed[key]), key=repr)
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        distributions[key] = (optuna.distributions.FloatDistribution(min(values), max(values) + 1e-12)
                              if numeric else optuna.distributions.CategoricalDistribution(values))
    study = optuna.create_study(direction="maximize")
    for row in completed.itertuples():
        params = {k: (float(getattr(row, k)) if isinstance(distributions[k], optuna.distributions.FloatDistribution)
                      else getattr(row, k)) for k in keys}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, value=row.val_accuracy))
    for filename, plot in (("parallel_coordinates.png", optuna.visualization.matplotlib.plot_parallel_coordinate),
                           ("importance.png", optuna.visualization.matplotlib.plot_param_importances)):
        try:
            with warnings.catch_warnings():  # Optuna marks its matplotlib figures "experimental"
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                ax = plot(study, target_name="val_accuracy")
        except (ValueError, RuntimeError) as e:  # importance needs two or more varied settings
            print(f"{filename}: not drawn ({e})", flush=True)
            continue
        fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
        fig.set_size_inches(9, 5)
        fig.tight_layout()
        fig.savefig(folder / filename, dpi=100)
        plt.close(fig)


def print_settings(table: pd.DataFrame, where: str | None = None) -> None:
    """The sweep's settings as a table in the terminal (rich): each setting's completed runs,
    val_accuracy and test accuracy (mean ± std over seeds), training seconds, the best on
    validation marked; then the runs listed apart and where the files are."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    import shutil

    console = Console(width=max(120, shutil.get_terminal_size((120, 24)).columns))
    settings = settings_table(table)
    view = Table(title="Sweep (chosen on validation accuracy, mean over seeds; test accuracy never chooses)")
    for column in settings.columns:
        view.add_column(column, justify="left" if column in ("setting", "chosen") else "right",
                        no_wrap=column != "setting")
    for row in settings.itertuples(index=False):
        view.add_row(*(escape(str(v)) for v in row))
    console.print(view)
    apart = table[table.status != "completed"]
    if len(apart):
        console.print(escape(f"Listed apart: {', '.join(f'{n} {s}' for s, n in apart.status.value_counts().items())}"))
    if not settings.empty:
        console.print(escape(f"Best on validation: {settings.setting.iloc[0]}."))
    if where:
        console.print(escape(where))


def settings_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per setting of the sweep's completed runs, best on validation first: setting, runs,
    val_accuracy and test accuracy (mean ± std over seeds), training seconds, and which is the
    best on validation."""
    completed = table[table.status == "completed"]
    if completed.empty:
        return pd.DataFrame(columns=["setting", "runs", "val_accuracy", "test accuracy", "train s", "chosen"])
    best = best_point(table).point
    rows = []
    for point, group in completed.groupby("point", sort=False):
        val, test = mean_ci(group.val_accuracy), mean_ci(group.test_accuracy)
        rows.append({"setting": point, "runs": len(group),
                     "val_accuracy": f"{val[0]:.4f}" + (f" ± {val[1]:.4f}" if val[1] == val[1] else ""),
                     "test accuracy": f"{test[0]:.4f}" + (f" ± {test[1]:.4f}" if test[1] == test[1] else ""),
                     "train s": f"{group.train_seconds.mean():.1f}",
                     "chosen": "best on validation" if point == best else "", "_val": val[0]})
    return pd.DataFrame(rows).sort_values("_val", ascending=False).drop(columns="_val").reset_index(drop=True)


def runs_apart(table: pd.DataFrame) -> pd.DataFrame:
    """The sweep's runs that did not complete (pruned, diverged, failed): point, seed, status, run."""
    return table[table.status != "completed"][["point", "seed", "status", "run"]].reset_index(drop=True)


def best_against_default(folder: str | Path, table: pd.DataFrame, alpha: float = 0.05) -> str:
    """Whether the setting chosen on validation beats the recipe's own on the test set: McNemar's
    exact test on the paired predictions, seed against seed, Holm-corrected, significant only if
    it is with every seed. One sentence."""
    best = best_point(table)
    if best.point == "default":
        return "The recipe's own setting is the best on validation."
    completed = table[table.status == "completed"]
    pair = completed[completed.point.isin([best.point, "default"])]
    runs = pd.DataFrame({"variant": ["best" if p == best.point else "default" for p in pair.point],
                         "seed": pair.seed.astype(int), "run_dir": [str(Path(folder) / r) for r in pair.run]})
    verdicts = pairwise_verdicts(pairwise_mcnemar(correct_by_run(runs), alpha=alpha))
    if verdicts.empty:
        return "No seed has both the best setting and the default completed: no test."
    v = verdicts.iloc[0]
    only = {v.model_a: v.only_a_right, v.model_b: v.only_b_right}
    return (f"{best.point} against the recipe's default over {v.n_seeds} seed(s): "
            f"{'significantly different on every seed' if v.significant_all_seeds else 'not significantly different'} "
            f"(largest Holm p {v.p_holm_max:.2e}; test images only the best got right: {only['best']}, "
            f"only the default: {only['default']}).")
