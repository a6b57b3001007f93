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
    run_all.add_argument("--models", default=None,
                         help="comma-separated model names or groups: core (the default: slp, mlp, dropout_mlp, "
                              "cnn, cnn_linear, bn_cnn), all (the whole zoo)")
    run_all.add_argument("--seeds", type=int, default=1, help="runs per model, seeds 0..N-1 (default: 1)")
    _add_run_options(run_all)
    run_all.add_argument("--runs-dir", default=None, help="parent folder of run folders (default: the project's runs/)")
    run_all.add_argument("--workers", type=int, default=1,
                         help="runs at once on a Dask LocalCluster, cores/N threads each (default: 1, no Dask)")
    run_all.add_argument("--scheduler", default=None,
                         help="address of an existing Dask scheduler, tcp://host:port (default: none)")
    run_all.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                         help="any other config key for every run, repeatable: --set augment=True "
                              "--set lr_schedule=cosine (default: none)")
    run_all.add_argument("--force", action="store_true",
                         help="re-run configs that already have a completed run (default: skip them)")

    rerun = sub.add_parser("rerun", help="train again exactly as a recorded run (from its config.json)")
    rerun.add_argument("run_dir", help="a run folder holding config.json")
    rerun.add_argument("--run-name", default=None, help="the new run's folder name (default: <model>-<timestamp>-<hex>)")

    predict = sub.add_parser("predict", help="classify PNG/JPEG images of a digit with a trained run's model")
    predict.add_argument("--run", required=True, help="a completed run folder (holding model.keras)")
    predict.add_argument("images", nargs="+", help="image files, any size, dark-on-light or light-on-dark")
    predict.add_argument("--top", type=int, default=3, help="classes to show per image (default: 3)")

    report = sub.add_parser("report", help="render an executed comparison notebook to HTML, code hidden")
    report.add_argument("--notebook", default="runs/compare_runs.ipynb", help="default: runs/compare_runs.ipynb")
    report.add_argument("--html", default="runs/report.html", help="default: runs/report.html")

    ens = sub.add_parser("ensemble", help="score the average of several runs' test-set probabilities")
    ens.add_argument("run_dirs", nargs="+", help="completed run folders (two or more)")

    export = sub.add_parser("export", help="export a run's model for TF Serving (models/<name>/<version>/)")
    export.add_argument("--run", required=True, help="a completed run folder")
    export.add_argument("--out", default="models", help="TF Serving model base folder (default: models)")
    export.add_argument("--version", type=int, default=1, help="model version, a positive integer (default: 1)")
    export.add_argument("--theta", action="store_true",
                        help="also write theta1.csv/theta2.csv into the run folder (sigmoid_mlp only)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except (ValueError, RuntimeError, FileExistsError, FileNotFoundError) as e:
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

    if args.command == "predict":
        return _predict(args)
    if args.command == "export":
        return _export(args)
    if args.command == "report":
        from mnistlab.report import render_report

        print(render_report(args.notebook, args.html))
        return 0
    if args.command == "ensemble":
        from mnistlab.evaluate import ensemble

        result = ensemble([_completed_run(d)[0] for d in args.run_dirs])
        for name, accuracy in zip(result["runs"], result["run_accuracies"]):
            print(f"{name}: {accuracy:.4f}")
        print(f"ensemble of {len(result['runs'])}: {result['ensemble_accuracy']:.4f}")
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

        models = args.models
        for item in args.set:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"--set {item!r}: expected KEY=VALUE, e.g. --set augment=True")
            overrides[key.strip()] = value.strip()
        print(run_all(models, seeds=args.seeds, runs_dir=args.runs_dir, force=args.force, workers=args.workers,
                      scheduler=args.scheduler, **overrides))
        return 0
    raise AssertionError(args.command)


def _completed_run(run: str):
    from pathlib import Path

    from mnistlab.runs import read_json, run_status

    run_dir = Path(run)
    if not (run_dir / "config.json").is_file():
        raise ValueError(f"{run_dir} is not a run folder (no config.json)")
    if run_status(run_dir) != "completed":
        raise ValueError(f"{run_dir} is not a completed run (status {run_status(run_dir)!r}): it has no model")
    return run_dir, read_json(run_dir / "config.json")


def _predict(args) -> int:
    if args.top < 1:
        raise ValueError(f"--top must be a positive integer, got {args.top}")
    run_dir, recorded = _completed_run(args.run)
    from mnistlab.predict import predict_images
    from mnistlab.runs import load_model

    results = predict_images(load_model(run_dir), args.images, recorded["data"]["class_names"], top=args.top)
    for result in results:
        if "error" in result:
            print(f"{result['path']}: {result['error']}")
        else:
            print(f"{result['path']}: " + ", ".join(f"{name} {p:.3f}" for name, p in result["top"]))
    return 1 if any("error" in r for r in results) else 0


def _export(args) -> int:
    run_dir, recorded = _completed_run(args.run)
    from mnistlab.export import export_serving, export_theta
    from mnistlab.runs import load_model

    model = load_model(run_dir)
    name = recorded["config"]["model"]
    print(export_serving(model, args.out, name, args.version))
    if name == "ae_classifier":  # the article serves its two models separately
        for part in ("autoencoder", "classifier"):
            print(export_serving(model.get_layer(part), args.out, part, args.version))
    if args.theta:
        for path in export_theta(model, run_dir):
            print(path)
    return 0
