"""Command line: `python -m mnistlab {train,models,data,run-all,rerun} ...`."""

from __future__ import annotations

import argparse
import sys


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=int, help="full passes over the training split (default: the model's recipe)")
    p.add_argument("--batch-size", type=int, help="images per training step (default: the model's recipe, 128)")
    p.add_argument("--learning-rate", type=float, help="Adam's (initial) learning rate (default: the model's recipe)")
    p.add_argument("--limit", type=int, help="use only the first N examples of each split, for smoke runs (default: all)")
    p.add_argument("--dataset", default="mnist", help="mnist or fashion_mnist (default: mnist)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mnistlab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train one model; prints the run folder as its last line")
    train.add_argument("--model", required=True, help="a registered model (see `python -m mnistlab models`)")
    _add_run_options(train)
    train.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    train.add_argument("--runs-dir", default=None, help="parent folder of run folders (default: the project's runs/)")
    train.add_argument("--run-name", default=None, help="run folder name (default: <model>-<timestamp>-<hex>)")

    sub.add_parser("models", help="list the model zoo with each model's recipe")

    data = sub.add_parser("data", help="copy (or download) and verify the datasets into the data directory")
    data.add_argument("--mirror", default=None,
                      help="local folder holding mnist/ and fashion-mnist/ to copy from (default: download)")
    data.add_argument("--data-dir", default=None, help="destination (default: $MNISTLAB_DATA_DIR or data/)")
    data.add_argument("--datasets", default="mnist,fashion_mnist", help="comma-separated (default: both)")

    run_all = sub.add_parser("run-all", help="train every model through train_model.ipynb, then compare_runs.ipynb")
    run_all.add_argument("--models", default=None, help="comma-separated model names (default: the whole zoo)")
    run_all.add_argument("--seeds", type=int, default=1, help="runs per model, seeds 0..N-1 (default: 1)")
    _add_run_options(run_all)
    run_all.add_argument("--runs-dir", default=None, help="parent folder of run folders (default: the project's runs/)")
    run_all.add_argument("--force", action="store_true",
                         help="re-run configs that already have a completed run (default: skip them)")

    rerun = sub.add_parser("rerun", help="train again exactly as a recorded run (from its config.json)")
    rerun.add_argument("run_dir", help="a run folder holding config.json")
    rerun.add_argument("--run-name", default=None, help="the new run's folder name (default: <model>-<timestamp>-<hex>)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except (ValueError, RuntimeError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "models":
        from mnistlab.models import MODELS

        print(f"{'model':<12} {'epochs':>6} {'batch':>5} {'lr':>7}  schedule            article")
        for name, spec in MODELS.items():
            r = spec.recipe
            schedule = "constant" if r.lr_schedule == "constant" else f"{r.learning_rate}*{r.lr_decay}**epoch"
            reported = f"{r.reported_accuracy:.3f}" if r.reported_accuracy else "-"
            print(f"{name:<12} {r.epochs:>6} {r.batch_size:>5} {r.learning_rate:>7}  {schedule:<19} {reported}")
        return 0
    if args.command == "data":
        from mnistlab.data import default_data_dir
        from mnistlab.fetch import fetch_dataset

        for name in args.datasets.split(","):
            fetch_dataset(name.strip(), args.data_dir or default_data_dir(), mirror=args.mirror)
        return 0

    if args.command == "rerun":
        from mnistlab.train import rerun

        print(rerun(args.run_dir, run_name=args.run_name, verbose=1 if sys.stdout.isatty() else 2))
        return 0

    overrides = dict(dataset=args.dataset, epochs=args.epochs, batch_size=args.batch_size,
                     learning_rate=args.learning_rate, limit=args.limit)
    if args.command == "train":
        from mnistlab.config import make_config

        # One line per epoch when nobody watches a terminal (logs, CI); a progress bar otherwise.
        config = make_config(args.model, seed=args.seed, verbose=1 if sys.stdout.isatty() else 2, **overrides)
        from mnistlab.runs import DEFAULT_RUNS_DIR
        from mnistlab.train import train_and_evaluate

        run_dir = train_and_evaluate(config, args.runs_dir or DEFAULT_RUNS_DIR, run_name=args.run_name)
        print(run_dir)
        return 0
    if args.command == "run-all":
        from mnistlab.batch import run_all

        models = [m.strip() for m in args.models.split(",")] if args.models else None
        print(run_all(models, seeds=args.seeds, runs_dir=args.runs_dir, force=args.force, **overrides))
        return 0
    raise AssertionError(args.command)
