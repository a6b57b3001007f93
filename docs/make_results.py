"""docs/results.md and docs/accuracy.png, generated from the committed data in docs/data/: nothing
in them is typed by hand.

Each suite is `docs/data/<suite>.csv` (one row per counted run: model, variant, seed, test and
validation accuracy, train seconds, epochs) beside `<suite>.json` (the command that made it, its
date, the CPU model and oneDNN ISA it ran on, the mnistlab commit), written by `--add`.

    .venv/bin/python docs/make_results.py                   # regenerate docs/results.md and accuracy.png
    .venv/bin/python docs/make_results.py --check           # exit 1 if results.md is not current (CI)
    .venv/bin/python docs/make_results.py --add NAME --runs-dir DIR --command "make run-all SEEDS=3"
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from mnistlab.registry import REGISTRY

DOCS = Path(__file__).resolve().parent
DATA = DOCS / "data"
BENCH = DOCS.parent / "bench"
# Per suite, the McNemar verdicts between variants of one model (from the runs folder's pairwise.csv).
PAIRS = DATA / "pairs"
COLUMNS = ["model", "variant", "seed", "test_accuracy", "val_accuracy", "train_seconds", "epochs_run", "run"]
# make best's accuracy targets (issue #30): a single model's mean test accuracy over its seeds
# (three or more), and an ensemble of at most five members, beyond Chris Deotte's 15-CNN ensemble
# mean of 0.99745 (cdeotte/MNIST-CNN-99.75) with a third of its members. Every suite with an
# ensemble (make best's) states its verdict against them.
BEST_TARGETS = {"single": 0.9970, "ensemble": 0.9976, "members": 5}
# The suites docs/accuracy.png shows (results.md lists every suite), each with the ending its
# variants must have ("" keeps all): the newest three-seed suite of the default recipes, the
# articles' own recipes, and the speedrun's two settings. Update it when a new suite replaces one
# of these.
FIGURE_SUITES = {"core-3-seeds-bn-momentum": "", "recipes-mnistlab-and-article-3-seeds": "[recipe=article]",
                 "speedrun-3-seeds-onednn": "", "speedrun-995-3-seeds": ""}


def add_suite(name: str, runs_dir: str, command: str) -> None:
    """Export the counted runs of `runs_dir` (mnistlab.results.latest_runs) as suite `name`, with
    the environment the runs recorded (every run must agree on the CPU, ISA and commit)."""
    from mnistlab.config import check_run_name
    from mnistlab.results import latest_runs, load_runs
    from mnistlab.runs import read_json

    check_run_name(name)
    counted, _ = latest_runs(load_runs(runs_dir))
    if counted.empty:
        raise SystemExit(f"{runs_dir}: no completed runs to export")
    environments = [read_json(Path(d) / "config.json")["environment"] for d in counted.run_dir]
    keys = ("cpu_model", "onednn_isa", "onednn_max_cpu_isa", "onednn_ops", "git_commit", "cores")
    seen = {k: sorted({str(e.get(k)) for e in environments}) for k in keys}
    ended = [read_json(Path(d) / "status.json")["ended"] for d in counted.run_dir]
    DATA.mkdir(exist_ok=True)
    counted[COLUMNS].sort_values(["model", "variant", "seed"]).to_csv(DATA / f"{name}.csv", index=False)
    timing = Path(runs_dir) / "run_all_timing.json"
    whole = json.loads(timing.read_text()) if timing.is_file() else {}
    meta = {"command": command, "date": max(ended)[:10], **{k: ", ".join(v) for k, v in seen.items()},
            "run_all_seconds": whole.get("seconds"),
            # (newer run-alls) where the rest of run-all's seconds went
            **{key: whole[key] for key in ("robustness_seconds", "comparison_seconds", "outside_the_runs_seconds")
               if whole.get(key) is not None}}
    (DATA / f"{name}.json").write_text(json.dumps(meta, indent=2) + "\n")
    pairwise = Path(runs_dir) / "pairwise.csv"
    if pairwise.is_file():  # the comparison's McNemar tests: the pairs of one model's variants, or
        # every pair of a focused suite (at most three variants, e.g. make best's against bn_cnn)
        model_of = dict(zip(counted.variant, counted.model))
        same = same_model_pairs(pd.read_csv(pairwise), model_of, every_pair=len(model_of) <= 3)
        if not same.empty:
            PAIRS.mkdir(exist_ok=True)
            same.to_csv(PAIRS / f"{name}.csv", index=False)
    ensemble = Path(runs_dir) / "ensemble.json"
    if ensemble.is_file():  # `mnistlab ensemble --runs-dir` of this folder
        (DATA / "ensembles").mkdir(exist_ok=True)
        (DATA / "ensembles" / f"{name}.json").write_text(ensemble.read_text())
    if timing.is_file():  # where each trained run's seconds went
        per_run = [{"run": r["run"], "model": r["model"], "seed": r["seed"], "train_seconds": r["train_seconds"],
                    "around_seconds": r["around_seconds"], **r.get("stage_seconds", {}),
                    "outside_the_run": r.get("outside_the_run_seconds")}
                   for r in json.loads(timing.read_text())["runs"] if "stage_seconds" in r]
        if per_run:
            (DATA / "timing").mkdir(exist_ok=True)
            pd.DataFrame(per_run).to_csv(DATA / "timing" / f"{name}.csv", index=False)
    for table in ("robustness", "calibration"):  # beyond clean accuracy, where the comparison made them
        source = Path(runs_dir) / f"{table}.csv"
        if source.is_file():
            (DATA / table).mkdir(exist_ok=True)
            pd.read_csv(source).to_csv(DATA / table / f"{name}.csv", index=False)


def _beyond_tables(name: str) -> list[str]:
    """A suite's accuracy per corruption (mean over seeds, variants as columns) and calibration."""
    parts = []
    robustness = DATA / "robustness" / f"{name}.csv"
    if robustness.is_file():
        table = pd.read_csv(robustness)
        wide = table.pivot(index="test_set", columns="variant", values="mean")
        order = ["mean over corruptions"] + [t for t in dict.fromkeys(table.test_set) if t != "mean over corruptions"]
        variants = sorted(wide.columns, key=_model_order)
        parts += ["Test accuracy under the MNIST-C-style corruptions (regenerated by mnistlab; mean over seeds):", "",
                  "| corruption | " + " | ".join(f"`{v}`" for v in variants) + " |",
                  "| --- |" + " --- |" * len(variants)]
        for test_set in order:
            parts.append(f"| {test_set} | " + " | ".join(f"{wide.loc[test_set, v]:.4f}" for v in variants) + " |")
        parts.append("")
    calibration = DATA / "calibration" / f"{name}.csv"
    if calibration.is_file():
        table = pd.read_csv(calibration)
        parts += ["Calibration on the test set (mean over seeds; the temperature fitted on the validation split):", "",
                  "| variant | ECE | ECE after temperature | temperature | NLL | Brier |", "| --- | --- | --- | --- | --- | --- |"]
        for row in table.itertuples():
            parts.append(f"| `{row.variant}` | {row.ece:.4f} | {row.ece_after_temperature:.4f} | {row.temperature:.2f} | "
                         f"{row.nll:.4f} | {row.brier:.4f} |")
        parts.append("")
    return parts


def same_model_pairs(pairwise: pd.DataFrame, model_of: dict[str, str], every_pair: bool = False) -> pd.DataFrame:
    """The verdicts (mnistlab.stats.pairwise_verdicts) of the pairs in `pairwise` (a comparison's
    pairwise.csv, one row per pair of variants and seed) whose two variants are of one model
    (`model_of`: variant -> model), or of every pair with `every_pair`, with columns variant_a,
    variant_b, n_seeds, only_a_right, only_b_right, p_holm_max, significant_all_seeds."""
    from mnistlab.stats import pairwise_verdicts

    verdicts = pairwise_verdicts(pairwise)
    same = verdicts if every_pair else verdicts[verdicts.model_a.map(model_of).eq(verdicts.model_b.map(model_of))]
    return same.rename(columns={"model_a": "variant_a", "model_b": "variant_b"}).reset_index(drop=True)


def _suite_table(runs: pd.DataFrame) -> str:
    """One row per variant: test accuracy per seed, its mean and the floor, and the mean
    validation accuracy ("-" where a recipe holds out no validation split), on which recipes and
    levers are chosen."""
    rows = ["| variant | runs | test accuracy per seed | mean ± std | floor | meets it | validation (mean) | "
            "train s (mean) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for variant, group in runs.groupby("variant", sort=False):
        model = group.model.iloc[0]
        mean, std = group.test_accuracy.mean(), group.test_accuracy.std(ddof=1)
        validation = group.val_accuracy.mean()
        floor = REGISTRY[model].floor if variant == model and model in REGISTRY else None
        rows.append(f"| `{variant}` | {len(group)} | {', '.join(f'{a:.4f}' for a in group.test_accuracy)} | "
                    f"{mean:.4f}" + (f" ± {std:.4f}" if std == std else "") + f" | {floor or '-'} | "
                    f"{'-' if floor is None else ('yes' if mean >= floor else '**no**')} | "
                    f"{'-' if validation != validation else f'{validation:.4f}'} | "
                    f"{group.train_seconds.mean():.1f} |")
    return "\n".join(rows)


def _pairs_table(pairs: pd.DataFrame) -> str:
    """Two variants of one model: the test images only one of them classifies right (summed over
    seeds) and McNemar's exact test per seed, Holm-corrected over all pairs of that seed."""
    rows = ["Variants compared image by image (exact McNemar test per seed, Holm-corrected over "
            "every pair of the comparison; significant: p < 0.05 after correction with every seed):", "",
            "| variant a | variant b | seeds | only a right | only b right | largest p (Holm) | significant |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in pairs.itertuples():
        rows.append(f"| `{row.variant_a}` | `{row.variant_b}` | {row.n_seeds} | {row.only_a_right} | "
                    f"{row.only_b_right} | {row.p_holm_max:.2g} | {'yes' if row.significant_all_seeds else 'no'} |")
    return "\n".join(rows)


def suite_kind(name: str) -> str:
    """The kind of measurement a suite is, from its name: "core-3-seeds", "core-1-seed-isa-avx2",
    "speedrun-995-3-seeds", ... (what follows names a change tried, e.g. "-bn-momentum")."""
    import re

    match = re.match(r"(.+?-\d+-seeds?(?:-isa-avx2)?)(?:-|$)", name)
    return match.group(1) if match else name


def _commit_time(commit: str) -> int:
    """The commit's time in the project's history (0 if git or the commit is not there)."""
    import subprocess

    try:
        out = subprocess.run(["git", "-C", str(DOCS.parent), "log", "-1", "--format=%ct", commit.split(",")[0].strip()],
                             capture_output=True, text=True, timeout=10)
        return int(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip() else 0
    except (OSError, ValueError, subprocess.SubprocessError):
        return 0


def current_and_earlier() -> tuple[list[Path], list[Path]]:
    """The suites' JSON files split into the current ones (the newest of each kind, by date, then
    by the time of the mnistlab commit it ran, then by name) and the earlier ones."""
    newest: dict[str, tuple] = {}
    for path in DATA.glob("*.json"):
        meta = json.loads(path.read_text())
        key = (meta.get("date", ""), _commit_time(str(meta.get("git_commit", ""))), path.stem)
        kind = suite_kind(path.stem)
        if kind not in newest or key > newest[kind][0]:
            newest[kind] = (key, path)
    current = sorted(p for _, p in newest.values())
    return current, sorted(set(DATA.glob("*.json")) - set(current))


def render() -> str:
    parts = ["# Results", "",
             "Generated by `docs/make_results.py` from the data in `docs/data/`; do not edit by hand. "
             "Each table names the command that produced it, its date, the CPU and the instruction set "
             "oneDNN used, and the mnistlab commit. The current results come first: the newest suite of "
             "each kind of measurement; the earlier suites follow, then `make bench`'s tables.", ""]
    current, earlier = current_and_earlier()
    parts += ["## Current results", "", "| suite | date | CPU | oneDNN ISA | command |", "| --- | --- | --- | --- | --- |"]
    for meta_path in current:
        meta = json.loads(meta_path.read_text())
        cap = f" (capped at {meta['onednn_max_cpu_isa']})" if meta.get("onednn_max_cpu_isa") not in (None, "None") else ""
        parts.append(f"| [{meta_path.stem}](#{meta_path.stem}) | {meta['date']} | {meta['cpu_model']} | "
                     f"{meta['onednn_isa']}{cap} | `{meta['command']}` |")
    parts.append("")
    for heading, paths in (("Current suites", current), ("Earlier suites", earlier)):
        parts += [f"# {heading}", ""]
        parts += _suites(paths)
    for path in sorted(BENCH.glob("results*.csv")):
        parts += _bench_section(path)
    return "\n".join(parts)


def _suites(paths: list[Path]) -> list[str]:
    parts = []
    for meta_path in paths:
        meta = json.loads(meta_path.read_text())
        runs = pd.read_csv(meta_path.with_suffix(".csv"))
        runs = runs.sort_values(["model", "variant", "seed"], key=lambda s: s.map(_model_order) if s.name == "model" else s)
        cap = f", ONEDNN_MAX_CPU_ISA={meta['onednn_max_cpu_isa']}" if meta.get("onednn_max_cpu_isa") not in (None, "None") else ""
        total = f"; the whole run-all took {meta['run_all_seconds']:.0f} s" if meta.get("run_all_seconds") else ""
        ops = {"True": "on", "False": "off"}.get(str(meta.get("onednn_ops")))
        if ops is None:  # recorded before runs named them: TensorFlow's default for the CPU
            from mnistlab.machine import recorded_onednn_ops

            capped = meta.get("onednn_max_cpu_isa") not in (None, "None", "")
            default = recorded_onednn_ops({"environment": {**meta, "onednn_max_cpu_isa": capped or None}})
            ops = ("as TensorFlow's default for the CPU (not recorded)" if default is None else
                   f"{'on' if default else 'off'} (TensorFlow's default for this CPU; not recorded)")
        parts += [f"## {meta_path.stem}", "",
                  f"`{meta['command']}` on {meta['date']}: {meta['cpu_model']} ({meta['cores']} cores), oneDNN ISA "
                  f"{meta['onednn_isa']}{cap}, TensorFlow's oneDNN operations {ops}; mnistlab commit "
                  f"{', '.join(c.strip()[:10] for c in meta['git_commit'].split(','))}{total}.", "",
                  _suite_table(runs), ""]
        pairs_path = PAIRS / f"{meta_path.stem}.csv"
        if pairs_path.is_file():
            parts += [_pairs_table(pd.read_csv(pairs_path)), ""]
        parts += _beyond_tables(meta_path.stem)
        parts += _ensemble_and_timing(meta_path.stem)
    return parts


def _best_verdict(result: dict) -> str:
    """make best's verdict against BEST_TARGETS from an ensemble.json: each target met, or short
    by how much."""
    def verdict(value: float, target: float) -> str:
        if value >= target - 1e-9:  # (a mean over seeds of counts over 10,000 images: no rounding up)
            return f"**meets** {target:.4f}"
        return f"**short** of {target:.4f} by {target - value:.{4 if target - value >= 1e-4 else 5}f}"

    accuracies = result["run_accuracies"]
    single = sum(accuracies) / len(accuracies)
    members = len(accuracies)
    ensemble = (verdict(result["ensemble_accuracy"], BEST_TARGETS["ensemble"]) if members <= BEST_TARGETS["members"]
                else f"not counted: {members} members, more than {BEST_TARGETS['members']}")
    return (f"Against make best's targets (issue #30): the single model's mean over its {members} seeds, "
            f"{single:.4f}, {verdict(single, BEST_TARGETS['single'])}; the ensemble of {members}, "
            f"{result['ensemble_accuracy']:.4f}, {ensemble} (Chris Deotte's 15-CNN ensembles: 0.99745 on average).")


def _ensemble_and_timing(name: str) -> list[str]:
    """A suite's ensemble (docs/data/ensembles/) and where its runs' seconds went (docs/data/timing/)."""
    parts = []
    ensemble = DATA / "ensembles" / f"{name}.json"
    if ensemble.is_file():
        result = json.loads(ensemble.read_text())
        low, high = result["ensemble_ci95"]
        parts += [f"The ensemble of the {len(result['runs'])} runs of `{result['model']}` (their test-set probabilities "
                  f"averaged): **{result['ensemble_accuracy']:.4f}** (95% CI {low:.4f}-{high:.4f}, Clopper-Pearson over "
                  f"its {result['images']:,} test images; members "
                  + ", ".join(f"{a:.4f}" for a in result["run_accuracies"]) + ")."]
        parts += ["", _best_verdict(result)]
        if result.get("against"):
            parts += ["", f"The ensemble against each run of `{result['against_variant']}`, image by image (McNemar's "
                      "exact test):", "", "| run | its accuracy | only the ensemble right | only the run right | p |",
                      "| --- | --- | --- | --- | --- |"]
            parts += [f"| {r['run']} | {r['accuracy']:.4f} | {r['only_ensemble_right']} | {r['only_run_right']} | "
                      f"{r['p_value']:.2g} |" for r in result["against"]]
        parts.append("")
    timing = DATA / "timing" / f"{name}.csv"
    if timing.is_file():
        table = pd.read_csv(timing)
        stages = [c for c in table if c not in ("run", "model", "seed", "train_seconds", "around_seconds")]
        parts += ["The time around a run (run_all_timing.json): seconds per run outside training, by stage of the "
                  "run and outside it (the notebook's other cells, papermill, the kernel's reset; the first run "
                  "also waits for its kernel's start and imports):", "",
                  "| run | training | around | " + " | ".join(s.replace("_", " ") for s in stages) + " |",
                  "| --- | --- | --- |" + " --- |" * len(stages)]
        for row in table.to_dict("records"):
            parts.append(f"| `{row['model']}` seed {row['seed']} | {row['train_seconds']:.1f} | {row['around_seconds']:.2f} | "
                         + " | ".join(f"{row[s]:.2f}" for s in stages) + " |")
        later = table.iloc[1:] if len(table) > 1 else table
        parts += ["", f"Around the training: {later.around_seconds.mean():.2f} s per run on average after the first "
                  f"(largest {later.around_seconds.max():.2f} s); the first run {table.around_seconds.iloc[0]:.2f} s."]
        meta_path = DATA / f"{name}.json"
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        if "outside_the_runs_seconds" in meta:
            parts += ["", f"The whole run-all took {meta['run_all_seconds']:.1f} s: its {len(table)} runs (training "
                      f"{table.train_seconds.sum():.1f} s in all, around it {table.around_seconds.sum():.1f} s in all), "
                      f"the robustness step {meta.get('robustness_seconds') or 0:.1f} s, the comparison notebook "
                      f"{meta['comparison_seconds']:.1f} s, and run-all's own work between the runs (the time-left "
                      f"estimate's cost measurements, one per model) {meta['outside_the_runs_seconds']:.1f} s."]
        parts.append("")
    return parts


def _bench_section(path: Path) -> list[str]:
    """The tables of one `make bench` results file (bench/results.csv or results-avx2.csv)."""
    bench = pd.read_csv(path)
    first = bench.iloc[0]
    cap = first.get("onednn_max_cpu_isa")
    cap = cap if isinstance(cap, str) and cap else None
    parts = [f"## {'`make bench ISA=avx2`' if cap else '`make bench`'} ({path.relative_to(DOCS.parent)})", "",
             f"Measured {first['date']} at mnistlab commit {str(first['mnistlab_commit'])[:10]} on {first['cpu_model']} "
             f"({first['cores']} cores), oneDNN ISA {first['onednn_isa']}"
             + (f" with ONEDNN_MAX_CPU_ISA={cap}" if cap else "") + f", TensorFlow {first['tensorflow']}; "
             + (f"numpy's float32 matmul ran at {first['float32_matmul_gflops']} GFLOP/s and each row's \"of matmul\" "
                "divides by the matmul rate of its own precision (bfloat16: TensorFlow's bfloat16 matmul)"
                if "float32_matmul_gflops" in bench else
                f"numpy's float32 matmul ran at {first['matmul_gflops']} GFLOP/s (every row's \"of matmul\" divides "
                "by it)") + "; the benchmark took "
             f"{first['bench_seconds']} s.", ""]
    if "onednn_ops_seed" in bench:
        on = {True: "on", False: "off"}
        parts += [f"TensorFlow's oneDNN operations: {on[bool(first['onednn_ops_mnistlab'])]} for mnistlab, "
                  f"{on[bool(first['onednn_ops_seed'])]} for the article's code (TensorFlow's default on this CPU, "
                  "as the article's reader runs it); the column \"article's code, oneDNN as mnistlab\" is the "
                  "article's code with mnistlab's setting.", ""]
    same = "seed_onednn_images_per_second" in bench
    parts += ["Training throughput (steady state), mnistlab's pipeline and step against the article's code (for `speedrun`, which has no article: the same network in the article's pipeline):", "",
              "| model | precision | batch | mnistlab images/s | article's code images/s | speed-up | "
              + ("article's code, oneDNN as mnistlab | " if same else "") + "GFLOP/s | of matmul |",
              "| --- | --- | --- | --- | --- | --- | " + ("--- | " if same else "") + "--- | --- |"]
    per_precision = "float32_matmul_gflops" in bench
    for row in bench.itertuples():
        parts.append(f"| `{row.model}` | {row.precision} | {row.batch_size} | {row.mnistlab_images_per_second:,} | "
                     f"{row.seed_images_per_second:,} | {row.speedup:.2f}x | "
                     + (f"{row.seed_onednn_images_per_second:,} | " if same else "")
                     + f"{row.gflops:.1f} | {row.fraction_of_matmul:.0%}"
                     + (f" of {row.matmul_gflops}" if per_precision else "") + " |")
    targets = sorted({c[len("mnistlab_seconds_to_"):] for c in bench if c.startswith("mnistlab_seconds_to_")}, key=float)
    if targets:
        parts += ["", "Training seconds (validation excluded) until validation accuracy first reaches the target, "
                  "mnistlab's recipe against the article's recipe and code, seed 0 (a dash: not within the "
                  "recipe's epochs; the article's code is not run for a target mnistlab's recipe never "
                  "reaches, which has no ratio):", "",
                  "| model | validation target | mnistlab s (epoch) | article s (epoch) | article / mnistlab |",
                  "| --- | --- | --- | --- | --- |"]
        for row in bench.to_dict("records"):
            for target in targets:
                ours, theirs = row.get(f"mnistlab_seconds_to_{target}"), row.get(f"seed_seconds_to_{target}")
                if ours is None or pd.isna(row.get(f"mnistlab_epochs_to_{target}")):
                    continue

                def cell(seconds, style):
                    epoch = int(row[f"{style}_epochs_to_{target}"])
                    return f"{seconds:.1f} ({epoch})" if epoch else "-"

                ratio = row.get(f"time_to_{target}_ratio")
                parts.append(f"| `{row['model']}` | {target} | {cell(ours, 'mnistlab')} | {cell(theirs, 'seed')} | "
                             f"{'-' if ratio is None or pd.isna(ratio) else f'{ratio:.1f}x'} |")
    shares = [c for c in bench if c.startswith("step_share ")]
    if shares:
        profiled = bench.dropna(subset=shares)
        parts += ["", "Where a training step's op time goes (tf.profiler, float32, share of op time):", "",
                  "| model | " + " | ".join(c[len("step_share "):] for c in shares) + " |",
                  "| --- |" + " --- |" * len(shares)]
        for row in profiled.to_dict("records"):
            parts.append(f"| `{row['model']}` | " + " | ".join(f"{row[c]:.0%}" for c in shares) + " |")
    if "robustness_seconds_per_run" in bench:
        parts += ["", "What run-all's robustness evaluation costs per run (the 15 MNIST-C-style corruptions, the first "
                  "4,000 images of each, through the recipe's model; its load, about a second, not included):", "",
                  "| model | seconds per run |", "| --- | --- |"]
        parts += [f"| `{row.model}` | {row.robustness_seconds_per_run:.1f} |" for row in bench.itertuples()
                  if row.robustness_seconds_per_run == row.robustness_seconds_per_run]
    peers_path = path.with_name(path.name.replace("results", "peers"))
    if peers_path.is_file():
        peers = pd.read_csv(peers_path)
        if "target_test_accuracy" in peers:
            parts += ["", "The recipes users copy instead, measured in the same run, right after mnistlab's recipe each is "
                      "set against, with TensorFlow's defaults: three seeds of each in lockstep on the same 55,000 "
                      "training images, mean training seconds (evaluation excluded) until the mean accuracy on the "
                      "10,000 test images first reaches the target; mnistlab's recipe's GFLOP/s as a fraction of the "
                      "matmul rate of the precision it ran in:", "",
                      "| peer | against | test target | peer s (epoch) | mnistlab s (epoch) | peer / mnistlab | "
                      "mnistlab's test accuracies | precision | of matmul |",
                      "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
            for row in peers.itertuples():
                peer = f"{row.peer_seconds:.1f} ({int(row.peer_epochs)})" if row.peer_epochs else "-"
                ours = f"{row.mnistlab_seconds:.1f} ({int(row.mnistlab_epochs)})" if row.mnistlab_epochs else "-"
                ratio = f"{row.ratio:.1f}x" if row.ratio == row.ratio else "-"
                parts.append(f"| {row.peer} | `{row.against}` | {row.target_test_accuracy} | {peer} | {ours} | {ratio} | "
                             f"{row.mnistlab_accuracies} | {row.precision} | {row.fraction_of_matmul:.0%} |")
        else:  # benches before the peers were timed on test accuracy over three seeds
            parts += ["", "The recipes users copy instead, measured in the same run, right after the recipe each is set "
                      "against, with TensorFlow's defaults, on the same 55,000 training images and the same 5,000 "
                      "held-out images (training seconds until validation accuracy first reaches the target):", "",
                      "| peer | against | target | peer s (epoch) | mnistlab s (epoch) | peer / mnistlab | peer images/s |",
                      "| --- | --- | --- | --- | --- | --- | --- |"]
            for row in peers.itertuples():
                peer = f"{row.peer_seconds:.1f} ({int(row.peer_epochs)})" if row.peer_epochs else "-"
                ours = f"{row.mnistlab_seconds:.1f} ({int(row.mnistlab_epochs)})" \
                    if row.mnistlab_epochs == row.mnistlab_epochs and row.mnistlab_epochs else "-"
                ratio = f"{row.ratio:.1f}x" if row.ratio == row.ratio else "-"
                parts.append(f"| {row.peer} | `{row.against}` | {row.target} | {peer} | {ours} | {ratio} | "
                             f"{row.peer_images_per_second:,} |")
    return parts + [""]


def _model_order(model: str) -> int:
    from mnistlab.registry import model_names

    names = model_names()
    return names.index(model) if model in names else len(names)


def draw(path: Path) -> None:
    """Test accuracy per run (dots) and mean per variant of FIGURE_SUITES: docs/accuracy.png.

    Raises FileNotFoundError naming a suite of FIGURE_SUITES that has no data file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    frames = []
    for suite, ending in FIGURE_SUITES.items():
        data_path = DATA / f"{suite}.csv"
        if not data_path.is_file():
            raise FileNotFoundError(f"{data_path} not found: FIGURE_SUITES in {Path(__file__).name} names suite {suite!r}; "
                                    f"name one of {', '.join(p.stem for p in sorted(DATA.glob('*.csv')))}")
        runs = pd.read_csv(data_path).assign(suite=suite)
        frames.append(runs[runs.variant.str.endswith(ending)])
    runs = pd.concat(frames)
    runs["label"] = runs.suite + ": " + runs.variant
    order = runs.groupby("label").test_accuracy.mean().sort_values().index.tolist()
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(order) + 1.2), constrained_layout=True)
    sns.stripplot(data=runs, y="label", x="test_accuracy", order=order, alpha=0.7, ax=ax)
    sns.pointplot(data=runs, y="label", x="test_accuracy", order=order, linestyle="none", errorbar=("ci", 95),
                  color="black", marker="|", markersize=14, capsize=0.3, ax=ax)
    # On the figure, not the axes: long variant labels leave the axes too narrow for the title.
    fig.suptitle("Test accuracy: runs (dots), mean and 95% CI per variant")
    ax.set(ylabel="", xlabel="test accuracy")
    ax.tick_params(axis="x", rotation=20)
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/results.md is not what the data give")
    parser.add_argument("--add", metavar="NAME", help="export a runs folder's counted runs as suite NAME first")
    parser.add_argument("--runs-dir", help="with --add: the runs folder")
    parser.add_argument("--command", help="with --add: the command that made the runs")
    args = parser.parse_args(argv)
    if args.add:
        if not (args.runs_dir and args.command):
            parser.error("--add needs --runs-dir and --command")
        add_suite(args.add, args.runs_dir, args.command)
    text = render()
    if args.check:
        current = (DOCS / "results.md").read_text() if (DOCS / "results.md").is_file() else ""
        if current != text:
            print("docs/results.md is not current: run `.venv/bin/python docs/make_results.py` and commit it",
                  file=sys.stderr)
            return 1
        return 0
    (DOCS / "results.md").write_text(text)
    draw(DOCS / "accuracy.png")
    print(DOCS / "results.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
