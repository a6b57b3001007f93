"""Training in named stages that every caller shares (training, the learning-rate finder, the
benchmark): `build`, `compile_model`, `pretrain`, `fit`, `evaluate_and_record`; and
`train_and_evaluate(config, runs_dir)`, which runs them for one run folder."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from pathlib import Path

import h5py
import keras
import matplotlib.pyplot as plt
import tensorflow as tf

from mnistlab import autoencoder, machine
from mnistlab.callbacks import (EpochLogs, ResumableEarlyStopping, ShuffleEpoch, StopOnDivergence,
                                divergence_threshold)
from mnistlab.config import (TrainConfig, check_run_name, config_hash, describe_variant, validate,
                             variant_hash)
from mnistlab.data import MnistData, load_dataset
from mnistlab.evaluate import write_evaluation
from mnistlab.models import add_weight_regularization, build_model
from mnistlab.pipeline import create_eval_ds, create_training_ds
from mnistlab.plots import plot_curves
from mnistlab.recipes import BATCH_NORM_MODELS
from mnistlab.results import completed_runs_by_hash, read_history_log
from mnistlab.runs import backup_dir, check_writable, environment_info, new_run_name, open_run, resolve_runs_dir, write_json

# Stages that run before the main fit, by model: (model, data, config, run_path) -> metrics.
PRETRAIN = {"ae_classifier": autoencoder.pretrain_autoencoder}


@contextlib.contextmanager
def dtype_policy(name: str):
    """Build layers under the Keras dtype policy `name` ("float32", "mixed_bfloat16"); the
    global policy is restored afterwards (a layer keeps the policy it was created with)."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The tf.distribute strategy of the config: "default" (one device), "mirrored" (data
    parallel over this machine's devices: GPUs, or logical CPUs) or "multi_worker_mirrored"
    (data parallel over the machines in $TF_CONFIG; one worker without it)."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker_mirrored":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def build(config: TrainConfig, precision: str, input_shape=(28, 28), num_classes: int = 10,
          strategy: tf.distribute.Strategy | None = None, **hparams) -> keras.Model:
    """Stage 1: the config's model, uncompiled: preprocessing (scaling, augmentation) inside,
    weight penalties attached, layers created under the resolved dtype policy `precision` and
    within `strategy`'s scope. `hparams` go to the builder (benchmarks: fused_batch_norm), after
    the config's batch_norm_momentum for the models with BatchNorm."""
    if config.model in BATCH_NORM_MODELS:
        hparams = {"batch_norm_momentum": config.batch_norm_momentum, **hparams}
    with (strategy or tf.distribute.get_strategy()).scope(), dtype_policy(precision):
        model = build_model(config.model, input_shape=input_shape, num_classes=num_classes,
                            normalize=config.normalize, augment=config.augment,
                            shift_pixels=config.shift_pixels, **hparams)
        return add_weight_regularization(model, l1=config.l1, l2=config.l2)


def learning_rate(config: TrainConfig, steps_per_epoch: int) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """The config's learning rate as Keras evaluates it at every optimizer step: a float for
    "constant"; for "exponential", `learning_rate * lr_decay**epoch` as a staircase over
    `steps_per_epoch` steps; for "cosine", a linear warm-up from learning_rate/10 over
    `lr_warmup_fraction` of all steps, then a cosine decay to 0. A resumed run continues the
    schedule from its restored optimizer step."""
    if config.lr_schedule == "exponential":
        return keras.optimizers.schedules.ExponentialDecay(
            config.learning_rate, decay_steps=steps_per_epoch, decay_rate=config.lr_decay, staircase=True)
    if config.lr_schedule == "cosine":
        total = config.epochs * steps_per_epoch
        warmup = round(config.lr_warmup_fraction * total)
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=config.learning_rate / 10 if warmup else config.learning_rate,
            decay_steps=max(total - warmup, 1), warmup_target=config.learning_rate if warmup else None,
            warmup_steps=warmup)
    return config.learning_rate


def compile_model(model: keras.Model, config: TrainConfig, steps_per_epoch: int,
                  schedule=None, steps_per_execution: int | None = None,
                  strategy: tf.distribute.Strategy | None = None) -> None:
    """Stage 2: compile `model` for `config`: its optimizer (Adadelta's learning rate always
    explicit: Keras 3 defaults it to 0.001, the original Keras to 1.0) with `schedule` (default:
    the config's, see `learning_rate`), sparse categorical cross-entropy, accuracy, and
    `steps_per_execution` (default the config's)."""
    schedule = learning_rate(config, steps_per_epoch) if schedule is None else schedule
    with (strategy or tf.distribute.get_strategy()).scope():
        optimizer = (keras.optimizers.Adadelta(learning_rate=schedule) if config.optimizer == "adadelta"
                     else keras.optimizers.Adam(learning_rate=schedule))
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                      steps_per_execution=steps_per_execution or config.steps_per_execution)


def pretrain(model: keras.Model, data: MnistData, config: TrainConfig, run_path: Path, state: Path) -> dict:
    """Stage before the main fit, for models that have one (ae_classifier's autoencoder).
    Its result is kept in `state`, so a resumed run reuses it (the backup restores the
    pretrained weights) instead of pretraining again. Returns metrics for metrics.json."""
    stage = PRETRAIN.get(config.model)
    if stage is None:
        return {}
    done = state / "pretrain.json"
    if done.is_file() and (state / "keras" / "training_metadata.json").is_file():
        model.get_layer("autoencoder").trainable = False
        for path in state.glob("pretrain-*"):
            shutil.copy(path, run_path / path.name.removeprefix("pretrain-"))
        return json.loads(done.read_text())
    metrics = stage(model, data, config, run_path)
    for path in run_path.glob("ae_*.png"):
        shutil.copy(path, state / f"pretrain-{path.name}")
    write_json(done, metrics)
    return metrics


def check_backup(state: Path) -> int:
    """The epoch an interrupted run of this config stopped at (0: none), after checking its
    backup. A backup whose metadata or weights cannot be read (truncated by a kill) falls back to
    the previous one Keras keeps; if that is broken too, the state is discarded with a message
    naming the file, and the run starts from scratch."""
    keras_dir = state / "keras"
    meta, weights = keras_dir / "training_metadata.json", keras_dir / "latest.weights.h5"

    def readable(meta_path: Path, weights_path: Path) -> int | None:
        try:
            epoch = int(json.loads(meta_path.read_text())["epoch"])
            with h5py.File(weights_path, "r"):
                pass
            return epoch
        except (OSError, ValueError, KeyError, TypeError):
            return None

    if not meta.exists() and not weights.exists():
        return 0
    epoch = readable(meta, weights)
    if epoch is not None:
        return epoch
    previous = readable(Path(f"{meta}.bkp"), Path(f"{weights}.bkp"))
    if previous is not None:
        print(f"The backup {meta.parent} is damaged (a kill while it was written?); resuming from the "
              f"one before it, epoch {previous}", flush=True)
        shutil.copy(f"{meta}.bkp", meta)
        shutil.copy(f"{weights}.bkp", weights)
        return previous
    print(f"The backup {meta.parent} is damaged and has no usable earlier copy ({meta.name} or "
          f"{weights.name} cannot be read): starting from scratch", flush=True)
    for path in state.iterdir():
        if path.name != "lock":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    return 0


def make_callbacks(config: TrainConfig, run_path: Path, state: Path, num_classes: int,
                   epoch: tf.Variable) -> list[keras.callbacks.Callback]:
    """The epoch's shuffle, stops on NaN or diverged loss, per-epoch logging (`state/history_log.csv`,
    appended across resumptions), Keras' BackupAndRestore (`state/keras/`), TensorBoard events
    under `run_path/tensorboard/`, and early stopping if the config asks for it."""
    callbacks = [
        ShuffleEpoch(epoch),
        keras.callbacks.TerminateOnNaN(),
        StopOnDivergence(divergence_threshold(num_classes)),
        EpochLogs(config.epochs, print_lines=config.verbose == 2),
        # Log the epoch before backing it up: a kill in between re-runs (and re-logs) that
        # epoch, and read_history_log keeps the last row of each epoch.
        keras.callbacks.CSVLogger(str(state / "history_log.csv"), append=True),
        keras.callbacks.BackupAndRestore(str(state / "keras"), double_checkpoint=True),
        keras.callbacks.TensorBoard(log_dir=str(run_path / "tensorboard"), write_graph=False),
    ]
    if config.early_stopping_patience:
        callbacks.append(ResumableEarlyStopping(state, config.early_stopping_patience))
    return callbacks


def resolve_here(config: TrainConfig) -> tuple[dict, tf.distribute.Strategy]:
    """The machine-dependent settings as they run in this process (precision; threads as
    applied, which must come before TensorFlow's first op; TensorFlow's oneDNN operations;
    replicas; the steps per execution Keras is given) and the config's tf.distribute strategy.
    Raises ValueError if the config requires oneDNN operations other than this process runs."""
    resolved = machine.resolve(config)
    resolved["onednn_ops"] = machine.check_onednn_ops(config.onednn_ops)
    resolved["threads"] = machine.apply_threads(resolved["threads"])
    strategy = make_strategy(config.strategy)
    resolved["replicas"] = strategy.num_replicas_in_sync
    # With a distributed strategy, steps_per_execution > 1 fails in TF 2.21 / Keras 3.15
    # ("You must feed a value for placeholder tensor ... while/cond"): one step per call.
    resolved["steps_per_execution"] = config.steps_per_execution if config.strategy == "default" else 1
    return resolved, strategy


def run_record(config: TrainConfig, resolved: dict, run_name: str, data: MnistData) -> dict:
    """config.json: what was requested, what the machine resolved, the hashes and the variant
    label computed from them, the data's digests and the environment."""
    return {
        "run": run_name,
        "config": config.to_dict(),
        "resolved": resolved,
        "config_hash": config_hash(config, resolved),
        "variant": describe_variant(config, resolved),
        "variant_hash": variant_hash(config, resolved),
        "data": {"dataset": config.dataset, "digests_sha256": data.digests,
                 "num_train": len(data.x_train), "num_val": len(data.x_val),
                 "num_test": len(data.x_test), "class_names": list(data.class_names)},
        "environment": environment_info(),
    }


def train_and_evaluate(config: TrainConfig, runs_dir: str | os.PathLike | None = None,
                       run_name: str | None = None, data: MnistData | None = None,
                       callbacks: list[keras.callbacks.Callback] = ()) -> Path:
    """Train `config.model` with `config`, evaluate it on the test set, and write a run folder.

    Args:
      config: a TrainConfig (see mnistlab.config.make_config); validated again here.
      runs_dir: parent folder of run folders (created if missing); default
        mnistlab.runs.default_runs_dir().
      run_name: the run folder's name; default `<model>-<timestamp>-<hex>`.
      data: preloaded data (tests pass tiny synthetic sets); default loads `config.dataset`
        with the config's validation split, seed and limit.
      callbacks: more Keras callbacks (a sweep's pruning). One that sets `stop_status` (and
        `stop_detail`) ends the run with that status, unevaluated.

    Returns the run folder, holding config.json, history.csv, metrics.json, status.json,
    curves.png, model.keras (raw pixels in), the evaluation files (mnistlab.evaluate) and
    TensorBoard events. A run whose loss becomes NaN or worse than twice a uniform guess's is
    stopped and recorded with status "diverged" (no metrics, no model). A run that was
    interrupted (Ctrl-C, kill) resumes from its last finished epoch the next time the same
    config is trained into the same runs_dir.
    Raises ValueError for an invalid config, run name, runs folder or data, before training.
    """
    validate(config)
    run_name = check_run_name(run_name or new_run_name(config.model))
    runs_dir = resolve_runs_dir(runs_dir)
    check_writable(runs_dir)
    if data is None:
        data = load_dataset(config.dataset, validation_size=config.validation_size,
                            seed=config.seed, limit=config.limit)
    if len(data.x_train) < config.batch_size:
        raise ValueError(f"batch_size={config.batch_size} is larger than the {len(data.x_train)} "
                         "training images: not one full batch per epoch; lower batch_size or raise limit")
    resolved, strategy = resolve_here(config)
    keras.utils.set_random_seed(config.seed)  # Python, numpy and TensorFlow seeds in one call
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    model = build(config, resolved["precision"], data.x_train.shape[1:], data.num_classes, strategy)
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    train_ds = create_training_ds(data.x_train, data.y_train, config.batch_size, seed=config.seed, epoch=epoch)
    val_ds = create_eval_ds(data.x_val, data.y_val, config.batch_size) if len(data.x_val) else None
    test_ds = create_eval_ds(data.x_test, data.y_test, config.batch_size)
    steps_per_epoch = len(data.x_train) // config.batch_size
    record = run_record(config, resolved, run_name, data)

    with open_run(runs_dir, run_name) as run, backup_dir(runs_dir, record["config_hash"], run_name) as state:
        write_json(run.path / "config.json", record)
        resumed_from_epoch = check_backup(state)
        with strategy.scope():
            extra_metrics = pretrain(model, data, config, run.path, state)
        compile_model(model, config, steps_per_epoch, steps_per_execution=resolved["steps_per_execution"],
                      strategy=strategy)
        if resumed_from_epoch:
            print(f"Resuming from the backup of an interrupted run: {resumed_from_epoch} of "
                  f"{config.epochs} epochs done", flush=True)
        else:
            (state / "history_log.csv").unlink(missing_ok=True)
        start = time.perf_counter()
        callbacks = make_callbacks(config, run.path, state, data.num_classes, epoch) + list(callbacks)
        model.fit(train_ds, epochs=config.epochs, validation_data=val_ds,
                  shuffle=False,  # train_ds shuffles itself, by (seed, epoch)
                  callbacks=callbacks, verbose=1 if config.verbose == 1 else 0)
        train_seconds = time.perf_counter() - start
        hist = read_history_log(state / "history_log.csv")
        hist.to_csv(run.path / "history.csv", index=False)
        final_loss = float(hist["loss"].iloc[-1]) if len(hist) else float("nan")
        stopped = next((cb for cb in callbacks if getattr(cb, "stop_status", None)), None)
        if stopped is not None:  # e.g. a sweep's pruning: recorded, not evaluated
            run.status, run.detail = stopped.stop_status, stopped.stop_detail
            write_hparams(run.path, record, {"val_accuracy": hist["val_accuracy"].iloc[-1] if len(hist) else None})
            return runs_dir / run_name
        if not final_loss <= divergence_threshold(data.num_classes):
            # TerminateOnNaN or StopOnDivergence stopped it: record it as diverged, evaluate nothing.
            run.status = "diverged"
            run.detail = (f"training loss {final_loss:.4g} after epoch {len(hist) or 1} with "
                          f"learning_rate={config.learning_rate}; lower learning_rate")
            write_hparams(run.path, record, {})
            return runs_dir / run_name
        epochs_trained = len(hist) - resumed_from_epoch
        metrics = evaluate_and_record(model, data, config, run.path, test_ds, hist, train_seconds, {
            "epochs_run": len(hist), "resumed_from_epoch": resumed_from_epoch,
            "epochs_trained_here": epochs_trained, "replicas": resolved["replicas"],
            # Steps of this process only: a resumed run's earlier epochs ran elsewhere.
            "images_per_second": round(steps_per_epoch * config.batch_size * epochs_trained / train_seconds, 1),
            **extra_metrics})
        write_hparams(run.path, record, {k: metrics[k] for k in ("test_accuracy", "val_accuracy",
                                                                  "best_val_accuracy", "train_seconds")})
    return runs_dir / run_name


def write_hparams(run_path: Path, record: dict, metrics: dict) -> None:
    """TensorBoard's HParams record of the run in `run_path/tensorboard/`: every setting as it ran
    (the seed left out) with the variant's hash as `trial_id`, so the seeds of one variant form one
    group in `tensorboard --logdir runs`, and the final metrics as scalars."""
    from tensorboard.plugins.hparams import api as hp

    from mnistlab.config import effective

    settings = effective(TrainConfig(**record["config"]), record["resolved"])
    hparams = {k: ("None" if v is None else v) for k, v in settings.items() if k not in ("seed", "verbose")}
    with tf.summary.create_file_writer(str(run_path / "tensorboard")).as_default():
        hp.hparams(hparams, trial_id=record["variant_hash"])
        for name, value in metrics.items():
            if isinstance(value, (int, float)) and value == value:
                tf.summary.scalar(name, float(value), step=0)


def evaluate_and_record(model: keras.Model, data: MnistData, config: TrainConfig, run_path: Path,
                        test_ds, hist, train_seconds: float, extra: dict) -> dict:
    """Last stage: test loss and accuracy, metrics.json, curves.png, the evaluation files and
    model.keras (which takes raw pixels: it scores the same accuracy on the IDX test images)."""
    test_loss, test_accuracy = model.evaluate(test_ds, verbose=0)
    probabilities = model.predict(test_ds, verbose=0)
    metrics = {
        "test_accuracy": float(test_accuracy),
        "test_loss": float(test_loss),
        "val_accuracy": float(hist["val_accuracy"].iloc[-1]) if "val_accuracy" in hist else None,
        "best_val_accuracy": float(hist["val_accuracy"].max()) if "val_accuracy" in hist else None,
        "params": int(model.count_params()),
        "train_seconds": round(train_seconds, 3),  # wall time of fit(), validation included
        **extra,
    }
    write_json(run_path / "metrics.json", metrics)
    title = f"{run_path.name.removeprefix('.tmp-')}  (test accuracy {test_accuracy:.4f})"
    fig = plot_curves(hist, title=title, path=run_path / "curves.png")
    plt.close(fig)
    write_evaluation(run_path, data.x_test, data.y_test, probabilities, data.class_names, title)
    model.save(run_path / "model.keras")
    return metrics


def train_or_reuse(config: TrainConfig, runs_dir: str | os.PathLike | None = None,
                   data: MnistData | None = None) -> tuple[Path, bool]:
    """A completed run of exactly `config` (same config hash) in `runs_dir`, or a new one trained
    now. Returns (run folder, whether it was reused)."""
    runs_dir = resolve_runs_dir(runs_dir)
    name = completed_runs_by_hash(runs_dir).get(machine.planned_hash(config))
    if name is not None:
        return runs_dir / name, True
    return train_and_evaluate(config, runs_dir, data=data), False


def rerun(run_dir: str | os.PathLike, run_name: str | None = None, verbose: int = 2) -> Path:
    """Train again with the settings recorded in `run_dir/config.json` (as they ran: the
    resolved precision, threads and oneDNN operations), into the same runs folder.

    The data must be the data the run recorded: a digest that differs raises ValueError
    before training. Returns the new run folder.
    """
    import dataclasses

    from mnistlab.config import config_from_record
    from mnistlab.runs import read_json

    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise ValueError(f"{run_dir} holds no config.json: not a run folder")
    recorded = read_json(run_dir / "config.json")
    config = config_from_record(recorded.get("config"))
    resolved = {"onednn_ops": machine.recorded_onednn_ops(recorded), **(recorded.get("resolved") or {})}
    config = dataclasses.replace(config, verbose=verbose, **{k: resolved[k] for k in ("precision", "threads", "onednn_ops")
                                                             if k in resolved})
    validate(config)
    data = load_dataset(config.dataset, validation_size=config.validation_size, seed=config.seed,
                        limit=config.limit)
    expected = recorded.get("data", {}).get("digests_sha256", {})
    changed = [stem for stem, digest in expected.items() if data.digests.get(stem) != digest]
    if changed:
        raise ValueError(f"the data differ from the run's: {', '.join(changed)} have other SHA-256 digests")
    return train_and_evaluate(config, run_dir.parent, run_name=run_name, data=data)
