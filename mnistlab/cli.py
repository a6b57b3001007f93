"""Command line: `python -m mnistlab {train,models,data,run-all,rerun,predict,report,ensemble,export}`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C


def _key_values(items: list[str]) -> dict:
    """`--set KEY=VALUE` options as a dict; raises ValueError for an item without '='."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {item!r}: expected KEY=VALUE, e.g. --set augment=True")
        overrides[key.strip()] = value.strip()
    return overrides


def _run_overrides(args) -> dict:
    """The config overrides of the shared run options; --set may name any config key."""
    named = dict(dataset=args.dataset, epochs=args.epochs, batch_size=args.batch_size,
                 learning_rate=args.learning_rate, limit=args.limit, recipe=args.recipe,
                 models_from=args.models_from or None)
    return {**{k: v for k, v in named.items() if v is not None}, **_key_values(args.set)}


def _add_models_from(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models-from", action="append", default=[], metavar="PATH_OR_MODULE",
                   help="a Python file or importable module that registers models of your own "
                        "(mnistlab.register_model), repeatable (default: none; the zoo only)")


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=int, help="full passes over the training split (default: the model's recipe)")
    p.add_argument("--batch-size", type=int, help="images per training step (default: the model's recipe)")
    p.add_argument("--learning-rate", type=float, help="the (peak) learning rate (default: the model's recipe)")
    p.add_argument("--limit", type=int, help="use only the first N examples of each split, for smoke runs (default: all)")
    p.add_argument("--dataset", help="mnist or fashion_mnist (default: mnist)")
    p.add_argument("--recipe", help="mnistlab (tuned, the default) or article (the source article's settings)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other config key, repeatable: --set augment=True --set lr_schedule=cosine "
                        "(default: none; `python -m mnistlab models --keys` lists the keys)")
    _add_models_from(p)


def cmd_train(args) -> int:
    from mnistlab.config import make_config

    # One line per epoch when nobody watches a terminal (logs, CI); Keras' progress bar otherwise.
    overrides = {"verbose": 1 if sys.stdout.isatty() else 2, "seed": args.seed, **_run_overrides(args)}
    config = make_config(args.model, **overrides)  # refused here, before TensorFlow starts
    from mnistlab.results import run_status
    from mnistlab.runs import read_json
    from mnistlab.task import result_text
    from mnistlab.train import train_and_evaluate

    run_dir = train_and_evaluate(config, args.runs_dir, run_name=args.run_name)
    status = run_status(run_dir)
    if status == "completed":
        print(result_text(read_json(run_dir / "metrics.json")))
    print(run_dir)
    if status == "diverged":
        print(f"error: the run diverged (see {run_dir / 'status.json'}); lower the learning rate", file=sys.stderr)
        return EXIT_DIVERGED
    return 0


def cmd_models(args) -> int:
    from mnistlab.config import FIELDS, TrainConfig, describe_schedule, make_config
    from mnistlab.registry import REGISTRY, load_models_from

    if args.keys:
        for key in FIELDS:
            print(f"{key:<24} {getattr(TrainConfig, key)!r}")
        return 0
    load_models_from(args.models_from)
    by_source: dict[str, list[str]] = {}
    for name, entry in REGISTRY.items():
        by_source.setdefault(entry.where, []).append(name)
    for i, (where, names) in enumerate(by_source.items()):
        print(("\n" if i else "") + f"{where}:")
        print(f"  {'model':<14} {'epochs':>6} {'batch':>5} {'optimizer':<9} {'precision':<9} {'schedule':<58} reported")
        for name in names:
            entry = REGISTRY[name]
            c = make_config(name, recipe=args.recipe, models_from=args.models_from)
            reported = f"{entry.reported_accuracy:.4f}" if entry.reported_accuracy else "-"
            print(f"  {name:<14} {c.epochs:>6} {c.batch_size:>5} {c.optimizer:<9} {c.precision:<9} "
                  f"{describe_schedule(c):<58} {reported}")
    return 0


def cmd_data(args) -> int:
    from mnistlab.data import default_data_dir
    from mnistlab.fetch import fetch_dataset

    for name in args.datasets.split(","):
        fetch_dataset(name.strip(), args.data_dir or default_data_dir(), mirror=args.mirror)
    return 0


def cmd_run_all(args) -> int:
    from mnistlab.run_all import run_all

    run_all(args.models, seeds=args.seeds, runs_dir=args.runs_dir, force=args.force, workers=args.workers,
            scheduler=args.scheduler, verbose=args.verbose, corruptions=not args.no_corruptions,
            corruption_images=args.corruption_images, **_run_overrides(args))
    return 0


def cmd_sweep(args) -> int:
    from mnistlab.sweep import run_sweep

    print(run_sweep(args.model, grid=args.grid, search=args.search, trials=args.trials, seeds=args.seeds,
                    name=args.name, runs_dir=args.runs_dir, workers=args.workers, scheduler=args.scheduler,
                    **_run_overrides(args)))
    return 0


def cmd_rerun(args) -> int:
    from mnistlab.registry import load_models_from
    from mnistlab.train import rerun

    load_models_from(args.models_from)
    print(rerun(args.run_dir, run_name=args.run_name, verbose=1 if sys.stdout.isatty() else 2))
    return 0


def _completed_run(run: str):
    from mnistlab.results import run_status
    from mnistlab.runs import read_json

    run_dir = Path(run)
    if not (run_dir / "config.json").is_file():
        raise ValueError(f"{run_dir} is not a run folder (no config.json)")
    if run_status(run_dir) != "completed":
        raise ValueError(f"{run_dir} is not a completed run (status {run_status(run_dir)!r}): it has no model")
    return run_dir, read_json(run_dir / "config.json")


def cmd_predict(args) -> int:
    if args.top < 1:
        raise ValueError(f"--top must be a positive integer, got {args.top}")
    run_dir, recorded = _completed_run(args.run)
    from mnistlab.predict import predict_images
    from mnistlab.results import load_model

    results = predict_images(load_model(run_dir), args.images, recorded["data"]["class_names"], top=args.top)
    for result in results:
        if "error" in result:
            print(f"{result['path']}: {result['error']}")
        else:
            warning = f"  (warning: {'; '.join(result['warnings'])})" if result["warnings"] else ""
            print(f"{result['path']}: " + ", ".join(f"{name} {p:.3f}" for name, p in result["top"]) + warning)
    return 1 if any("error" in r for r in results) else 0


def cmd_evaluate(args) -> int:
    from mnistlab.robustness import check_run, evaluate_run, load_suite
    from mnistlab.runs import read_json

    run_dir = check_run(args.run)  # before any test set is read or made
    record = read_json(run_dir / "config.json")
    classes = len(record["data"]["class_names"])
    suite, test_sets = load_suite(args.test_set, classes, dataset=record["config"].get("dataset", "mnist"),
                                  images=args.images)
    from mnistlab.robustness import LABEL

    label = LABEL if not args.test_set else str(args.test_set)
    rows = evaluate_run(run_dir, suite, test_sets, label=label)
    print(f"{label}: {run_dir.name}")
    for row in rows.itertuples():
        print(f"  {row.test_set:<16} {row.images:>6} images  accuracy {row.accuracy:.4f}  loss {row.loss:.4f}  "
              f"ECE {row.ece:.4f}  sha256 {row.sha256[:12]}")
    print(f"  mean accuracy {rows.accuracy.mean():.4f}; written to {run_dir / 'evaluations.csv'} and "
          f"{run_dir / 'evaluations' / suite}/")
    return 0


def cmd_report(args) -> int:
    from mnistlab.report import render_report

    print(render_report(args.notebook, args.html))
    return 0


def _counted_runs(runs_dir: str, model: str, option: str = "--model") -> tuple[str, list[Path]]:
    """The one variant of `model` in `runs_dir` and its counted runs (the latest completed run per
    seed). Raises ValueError naming `option` and the variants if there is not exactly one."""
    from mnistlab.results import latest_runs, load_runs

    counted, _ = latest_runs(load_runs(runs_dir))
    counted = counted[counted.model == model]
    variants = sorted(set(counted.variant))
    if len(variants) != 1:
        raise ValueError(f"{option} {model}: {runs_dir} holds completed runs of {len(variants)} variants of {model!r} "
                         f"({', '.join(variants) or 'none'}); it needs exactly one"
                         + (": name the run folders" if option == "--model" else ""))
    return variants[0], [Path(d) for d in counted.run_dir]


def _ensemble_members(args) -> list[Path]:
    """The run folders named, or the counted runs of the one variant of `--model` in `--runs-dir`."""
    if args.run_dirs:
        if args.runs_dir or args.model or args.against:
            raise ValueError("name run folders, or --runs-dir with --model (and --against), not both")
        return [_completed_run(d)[0] for d in args.run_dirs]
    if not (args.runs_dir and args.model):
        raise ValueError("name two or more run folders, or --runs-dir DIR --model MODEL")
    variant, members = _counted_runs(args.runs_dir, args.model)
    print(f"ensemble of {variant}: the latest completed run of each of {len(members)} seeds")
    return members


def cmd_ensemble(args) -> int:
    from mnistlab.evaluate import ensemble
    from mnistlab.runs import write_json

    members = _ensemble_members(args)
    against_variant, against = _counted_runs(args.runs_dir, args.against, "--against") if args.against else (None, [])
    result = ensemble(members, against)
    for name, accuracy in zip(result["runs"], result["run_accuracies"]):
        print(f"{name}: {accuracy:.4f}")
    low, high = result["ensemble_ci95"]
    print(f"ensemble of {len(result['runs'])}: {result['ensemble_accuracy']:.4f} "
          f"(95% CI {low:.4f}-{high:.4f}, Clopper-Pearson over its {result['images']:,} test images)")
    for row in result["against"]:
        print(f"  against {row['run']} ({row['accuracy']:.4f}): only the ensemble right on {row['only_ensemble_right']}, "
              f"only {args.against} on {row['only_run_right']}, McNemar p = {row['p_value']:.2g}")
    if args.runs_dir:
        write_json(Path(args.runs_dir) / "ensemble.json", {"model": args.model, "against_variant": against_variant,
                                                           **result})
    return 0


def cmd_export(args) -> int:
    run_dir, recorded = _completed_run(args.run)
    from mnistlab.config import config_from_record
    from mnistlab.export import export_serving, export_theta
    from mnistlab.results import load_model

    config = config_from_record(recorded.get("config"))  # validated: its model name becomes a folder
    model = load_model(run_dir)
    print(export_serving(model, args.out, config.model, args.version))
    if config.model == "ae_classifier":  # the article serves its two models separately
        for part in ("autoencoder", "classifier"):
            print(export_serving(model.get_layer(part), args.out, part, args.version))
    if args.theta:
        for path in export_theta(model, run_dir):
            print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mnistlab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train one model; prints its test accuracy, then the run folder as its last line")
    train.add_argument("--model", required=True, help="a registered model (see `python -m mnistlab models`)")
    _add_run_options(train)
    train.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    train.add_argument("--runs-dir", default=None, help="parent folder of run folders (default: $MNISTLAB_RUNS_DIR or runs/)")
    train.add_argument("--run-name", default=None, help="run folder name (default: <model>-<timestamp>-<hex>)")
    train.set_defaults(func=cmd_train)

    models = sub.add_parser("models", help="list the models (the zoo's, and yours under their file) with each "
                                           "recipe's schedule and the accuracy its source reports")
    models.add_argument("--recipe", default="mnistlab", help="mnistlab or article (default: mnistlab)")
    models.add_argument("--keys", action="store_true", help="list the config keys and their defaults instead")
    _add_models_from(models)
    models.set_defaults(func=cmd_models)

    data = sub.add_parser("data", help="copy (or download) and verify the datasets into the data directory")
    data.add_argument("--mirror", default=None,
                      help="local folder holding mnist/ and fashion-mnist/ to copy from (default: download)")
    data.add_argument("--data-dir", default=None, help="destination (default: $MNISTLAB_DATA_DIR or data/)")
    data.add_argument("--datasets", default="mnist,fashion_mnist", help="comma-separated (default: both)")
    data.set_defaults(func=cmd_data)

    run_all = sub.add_parser("run-all", help="train every model through train_model.ipynb, then compare_runs.ipynb")
    run_all.add_argument("--models", default=None,
                         help="comma-separated model names or groups: core (the default: slp, mlp, dropout_mlp, "
                              "cnn, cnn_linear, bn_cnn), all (the whole zoo)")
    run_all.add_argument("--seeds", type=int, default=1, help="runs per model, seeds 0..N-1 (default: 1)")
    _add_run_options(run_all)
    run_all.add_argument("--runs-dir", default=None, help="parent folder of run folders (default: $MNISTLAB_RUNS_DIR or runs/)")
    run_all.add_argument("--workers", type=int, default=1,
                         help="runs at once on a Dask LocalCluster, cores/N threads each (default: 1, no Dask)")
    run_all.add_argument("--scheduler", default=None,
                         help="address of an existing Dask scheduler, tcp://host:port (default: none)")
    run_all.add_argument("--force", action="store_true",
                         help="re-run configs that already have a completed run (default: skip them)")
    run_all.add_argument("--no-corruptions", action="store_true",
                         help="do not evaluate the runs on the MNIST-C-style corruptions (default: evaluate "
                              "every compared MNIST run not yet evaluated on them)")
    run_all.add_argument("--corruption-images", type=int, default=4000,
                         help="images of each corruption the runs are evaluated on, the first N of 10,000 "
                              "(default: 4000; 10000 for all)")
    run_all.add_argument("-v", "--verbose", action="store_true",
                         help="show every log line on the console too (default: only in each run's train.log)")
    run_all.set_defaults(func=cmd_run_all)

    sweep = sub.add_parser("sweep", help="sweep one model's settings: a grid, or an Optuna search; trials are run folders")
    sweep.add_argument("--model", required=True, help="the model whose recipe is the base")
    sweep.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                       help="values of a config key, repeatable: the full factorial is run (default: none)")
    sweep.add_argument("--search", action="append", default=[], metavar="KEY=LOW:HIGH[:log|:int]",
                       help="a range to search with Optuna's TPE sampler, repeatable (default: none)")
    sweep.add_argument("--trials", type=int, default=12, help="Optuna trials of a --search (default: 12)")
    sweep.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 per setting (default: 1)")
    sweep.add_argument("--name", default=None, help="the sweep's folder under <runs-dir>/sweeps/ (default: <model>-grid or <model>-search)")
    _add_run_options(sweep)
    sweep.add_argument("--runs-dir", default=None, help="runs folder holding sweeps/ (default: $MNISTLAB_RUNS_DIR or runs/)")
    sweep.add_argument("--workers", type=int, default=1, help="trials at once on a Dask LocalCluster (default: 1)")
    sweep.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler (default: none)")
    sweep.set_defaults(func=cmd_sweep)

    rerun = sub.add_parser("rerun", help="train again exactly as a recorded run (from its config.json)")
    rerun.add_argument("run_dir", help="a run folder holding config.json")
    rerun.add_argument("--run-name", default=None, help="the new run's folder name (default: <model>-<timestamp>-<hex>)")
    _add_models_from(rerun)
    rerun.set_defaults(func=cmd_rerun)

    predict = sub.add_parser("predict", help="classify PNG/JPEG images of a digit with a trained run's model")
    predict.add_argument("--run", required=True, help="a completed run folder (holding model.keras)")
    predict.add_argument("images", nargs="+", help="image files, any size, dark-on-light or light-on-dark")
    predict.add_argument("--top", type=int, default=3, help="classes to show per image (default: 3)")
    predict.set_defaults(func=cmd_predict)

    evaluate = sub.add_parser("evaluate", help="evaluate a completed run's model on other test sets (default: the "
                                               "MNIST-C-style corruptions, regenerated); results go into the run folder")
    evaluate.add_argument("--run", required=True, help="a completed run folder (holding model.keras)")
    evaluate.add_argument("--test-set", default=None,
                          help="a folder in the official MNIST-C layout (<corruption>/test_images.npy, "
                               "test_labels.npy), a folder with an IDX pair (t10k-images-idx3-ubyte[.gz], "
                               "t10k-labels-idx1-ubyte[.gz]) or an .npz with x_test and y_test (default: the "
                               "15 MNIST-C-style corruptions, regenerated and cached under the data folder)")
    evaluate.add_argument("--images", type=int, default=None,
                          help="with the default test sets: the first N images of each corruption (default: all 10,000)")
    evaluate.set_defaults(func=cmd_evaluate)

    report = sub.add_parser("report", help="render an executed comparison notebook to HTML, code hidden")
    report.add_argument("--notebook", default="runs/compare_runs.ipynb", help="default: runs/compare_runs.ipynb")
    report.add_argument("--html", default="runs/report.html", help="default: runs/report.html")
    report.set_defaults(func=cmd_report)

    ens = sub.add_parser("ensemble", help="score the average of several runs' test-set probabilities")
    ens.add_argument("run_dirs", nargs="*", help="completed run folders (two or more)")
    ens.add_argument("--runs-dir", default=None, help="instead: the runs folder holding the members (with --model)")
    ens.add_argument("--model", default=None,
                     help="with --runs-dir: the latest completed run per seed of this model's one variant")
    ens.add_argument("--against", default=None,
                     help="with --runs-dir: compare the ensemble image by image (McNemar) with each counted run of "
                          "this model, e.g. bn_cnn; the result goes to <runs-dir>/ensemble.json")
    ens.set_defaults(func=cmd_ensemble)

    export = sub.add_parser("export", help="export a run's model for TF Serving (models/<name>/<version>/)")
    export.add_argument("--run", required=True, help="a completed run folder")
    export.add_argument("--out", default="models", help="TF Serving model base folder (default: models)")
    export.add_argument("--version", type=int, default=1, help="model version, a positive integer (default: 1)")
    export.add_argument("--theta", action="store_true",
                        help="also write theta1.csv/theta2.csv into the run folder (sigmoid_mlp only)")
    export.set_defaults(func=cmd_export)
    return parser


def _log_details(args, details: str) -> Path | None:
    """Keep a traceback the console does not show: appended to <runs dir>/.logs/errors.log."""
    import datetime

    from mnistlab.runs import resolve_runs_dir

    try:
        folder = resolve_runs_dir(getattr(args, "runs_dir", None)) / ".logs"
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "errors.log", "a", encoding="utf-8") as log:
            log.write(f"--- {datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')} "
                      f"python -m mnistlab {' '.join(sys.argv[1:])}\n{details}\n")
        return folder / "errors.log"
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt as e:  # Ctrl-C: one line, not a traceback
        message = str(e) or ("interrupted: the run is kept as interrupted; the same command resumes it from its last "
                             "finished epoch" if args.command in ("train", "rerun")
                             else "interrupted: what completed is kept; the same command resumes the rest")
        print(f"\n{message}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, RuntimeError, FileExistsError, FileNotFoundError) as e:
        details = getattr(e, "details", "")
        log = _log_details(args, details) if details else None
        print(f"error: {e}" + (f" (traceback: {log})" if log else ""), file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as e:  # a disk that fills, a folder that vanishes: the run folder records it
        print(f"error: {e.strerror or e} ({e.filename or 'no file named'}); a run that had started is "
              "recorded with status 'failed'", file=sys.stderr)
        return 1
