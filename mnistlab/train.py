"""Training in named stages that every caller shares (training, the learning-rate finder, the
benchmark): `prepare`, `build`, `compile_model`, `pretrain`, `fit`, `conclude`; and
`train_and_evaluate(config, runs_dir)`, which runs them for one run folder."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import time
from pathlib import Path

import h5py
import keras
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import tensorflow as tf

from mnistlab import autoencoder, machine, timing
from mnistlab.architecture import builder_kwargs, describe, identity
from mnistlab.callbacks import divergence_threshold, make_callbacks
from mnistlab.config import TrainConfig, check_run_name, validate
from mnistlab.data import MnistData, load_dataset
from mnistlab.evaluate import write_evaluation
from mnistlab.losses import SparseCategoricalCrossentropyWithSmoothing
from mnistlab.models import add_weight_regularization, build_model, saved_form
from mnistlab.pipeline import create_eval_ds, create_training_ds
from mnistlab.plots import plot_curves
from mnistlab.registry import get_entry
from mnistlab.results import read_history_log
from mnistlab.runs import backup_dir, check_writable, environment_info, new_run_name, open_run, resolve_runs_dir, write_json

# Stages that run before the main fit, by model: (model, data, config, run_path) -> metrics.
PRETRAIN = {"ae_classifier": autoencoder.pretrain_autoencoder}
EVALUATION_BATCH = 5000  # images per step when predicting: few steps, so a short trace (Keras unrolls a
# prediction execution's steps: at 1000, bn_cnn's first predict of 15,000 images took 2.4 s, at 5000 1.3 s)


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
    """Stage: the config's model, uncompiled: preprocessing (scaling, augmentation) inside, weight
    penalties attached, layers created under the resolved dtype policy `precision` and within
    `strategy`'s scope. The builder gets the config settings its entry takes (batch_norm_momentum),
    then `hparams` (benchmarks: fused_batch_norm)."""
    hparams = {**builder_kwargs(config, get_entry(config.model)), **hparams}
    with (strategy or tf.distribute.get_strategy()).scope(), dtype_policy(precision):
        model = build_model(config.model, input_shape=input_shape, num_classes=num_classes,
                            normalize=config.normalize, augment=config.augment,
                            shift_pixels=config.shift_pixels, robust_augment=config.robust_augment,
                            elastic_augment=config.elastic_augment, **hparams)
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
    """Stage: compile `model` for `config`: its optimizer (Adadelta's learning rate always
    explicit: Keras 3 defaults it to 0.001, the original Keras to 1.0) with `schedule` (default:
    the config's, see `learning_rate`), sparse categorical cross-entropy (on logits for an entry
    registered with outputs="logits"; with the config's label_smoothing, if any), accuracy, and
    `steps_per_execution` (default the config's)."""
    schedule = learning_rate(config, steps_per_epoch) if schedule is None else schedule
    from_logits = get_entry(config.model).outputs == "logits"
    with (strategy or tf.distribute.get_strategy()).scope():
        optimizer = (keras.optimizers.Adadelta(learning_rate=schedule) if config.optimizer == "adadelta"
                     else keras.optimizers.Adam(learning_rate=schedule))
        loss = (SparseCategoricalCrossentropyWithSmoothing(config.label_smoothing, from_logits=from_logits)
                if config.label_smoothing else keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits))
        model.compile(optimizer=optimizer, loss=loss,
                      metrics=["accuracy"], steps_per_execution=steps_per_execution or config.steps_per_execution)


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


def check_backup(state: Path, probe=None) -> int:
    """The epoch an interrupted run of this config stopped at (0: none), after checking its
    backup. A backup whose metadata or weights cannot be read (truncated by a kill), or whose
    weights do not load into `probe()` (a new model of the run's architecture: an HDF5 file cut
    short by Ctrl-C while Keras wrote it opens but misses layers), falls back to the previous one
    Keras keeps; if that is broken too, the state is discarded with a message naming the file, and
    the run starts from scratch."""
    keras_dir = state / "keras"
    meta, weights = keras_dir / "training_metadata.json", keras_dir / "latest.weights.h5"

    def readable(meta_path: Path, weights_path: Path) -> int | None:
        try:
            epoch = int(json.loads(meta_path.read_text())["epoch"])
            with h5py.File(weights_path, "r"):
                pass
            if probe is not None:  # Keras loads only files named *.weights.h5 (the copy before is *.h5.bkp)
                probe_path = keras_dir / "probe.weights.h5"
                shutil.copy(weights_path, probe_path)
                try:
                    probe().load_weights(probe_path)
                finally:
                    probe_path.unlink(missing_ok=True)
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


@dataclasses.dataclass
class Run:
    """What every stage of one run shares, settled before its folder exists."""

    config: TrainConfig
    runs_dir: Path
    name: str
    data: MnistData
    resolved: dict
    strategy: tf.distribute.Strategy
    record: dict  # config.json

    @property
    def steps_per_epoch(self) -> int:
        return len(self.data.x_train) // self.config.batch_size

    @property
    def path(self) -> Path:
        return self.runs_dir / self.name


@dataclasses.dataclass
class Fitted:
    """What the fit stage leaves: the history, its seconds, where it resumed, and a callback that
    ended the run early with a status of its own (a sweep's pruning), if one did."""

    history: pd.DataFrame
    train_seconds: float
    resumed_from_epoch: int
    stopped_by: keras.callbacks.Callback | None


def run_record(config: TrainConfig, resolved: dict, architecture: dict, run_name: str, data: MnistData) -> dict:
    """config.json: what was requested, what the machine resolved, the model's architecture record
    (mnistlab.architecture.describe), the hashes and the label computed from them, the data's
    digests and the environment."""
    return {
        "run": run_name,
        "config": config.to_dict(),
        "resolved": resolved,
        "model": architecture,
        **identity(config, resolved, architecture),
        "data": {"dataset": config.dataset, "digests_sha256": data.digests,
                 "num_train": len(data.x_train), "num_val": len(data.x_val),
                 "num_test": len(data.x_test), "class_names": list(data.class_names)},
        "environment": environment_info(),
    }


def prepare(config: TrainConfig, runs_dir=None, run_name: str | None = None, data: MnistData | None = None) -> Run:
    """Stage 1, before anything is written: the config validated, the run name and runs folder
    checked, the builder checked and the architecture recorded, the data loaded, the machine's
    settings resolved. Raises ValueError (BuilderError, DataError among them) naming what is wrong."""
    validate(config)
    run_name = check_run_name(run_name or new_run_name(config.model))
    runs_dir = resolve_runs_dir(runs_dir)
    check_writable(runs_dir)
    resolved, strategy = resolve_here(config)  # threads are applied before TensorFlow's first op (the build's)
    describe(config)  # the builder contract, checked before the data are read
    if data is None:
        data = load_dataset(config.dataset, validation_size=config.validation_size,
                            seed=config.seed, limit=config.limit)
    if len(data.x_train) < config.batch_size:
        raise ValueError(f"batch_size={config.batch_size} is larger than the {len(data.x_train)} "
                         "training images: not one full batch per epoch; lower batch_size or raise limit")
    architecture = describe(config, data.x_train.shape[1:], data.num_classes)
    return Run(config, runs_dir, run_name, data, resolved, strategy,
               run_record(config, resolved, architecture, run_name, data))


def start(run: Run, run_path: Path, state: Path) -> tuple[keras.Model, int, dict]:
    """Stage 2: seeds set, the model built, pretrained (resumably) and compiled. Returns the
    model, the epoch an interrupted run of this config stopped at (0: none), and the metrics the
    pretraining adds."""
    config, data = run.config, run.data
    keras.utils.set_random_seed(config.seed)  # Python, numpy and TensorFlow seeds in one call
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    model = build(config, run.resolved["precision"], data.x_train.shape[1:], data.num_classes, run.strategy)
    resumed_from_epoch = check_backup(state, probe=lambda: build(config, run.resolved["precision"],
                                                                 data.x_train.shape[1:], data.num_classes))
    with run.strategy.scope():
        extra_metrics = pretrain(model, data, config, run_path, state)
    compile_model(model, config, run.steps_per_epoch, steps_per_execution=run.resolved["steps_per_execution"],
                  strategy=run.strategy)
    if resumed_from_epoch:
        print(f"Resuming from the backup of an interrupted run: {resumed_from_epoch} of "
              f"{config.epochs} epochs done", flush=True)
    else:
        (state / "history_log.csv").unlink(missing_ok=True)
    return model, resumed_from_epoch, extra_metrics


def fit(model: keras.Model, run: Run, run_path: Path, state: Path, resumed_from_epoch: int,
        callbacks=()) -> Fitted:
    """Stage 3: Keras' fit over the seeded, per-epoch shuffled training batches, validating each
    epoch, with the run's callbacks (mnistlab.callbacks.make_callbacks) and `callbacks`."""
    config, data = run.config, run.data
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    train_ds = create_training_ds(data.x_train, data.y_train, config.batch_size, seed=config.seed, epoch=epoch)
    val_ds = create_eval_ds(data.x_val, data.y_val, config.batch_size) if len(data.x_val) else None
    # A live figure in a notebook (mnistlab.live) takes the place of the epoch lines.
    lines = not any(getattr(cb, "replaces_epoch_lines", False) for cb in callbacks)
    for callback in callbacks:
        if hasattr(callback, "steps_per_epoch") and callback.steps_per_epoch is None:
            callback.steps_per_epoch = run.steps_per_epoch
    callbacks = make_callbacks(config, run_path, state, data.num_classes, epoch, print_lines=lines) + list(callbacks)
    start_time = time.perf_counter()
    model.fit(train_ds, epochs=config.epochs, validation_data=val_ds,
              shuffle=False,  # train_ds shuffles itself, by (seed, epoch)
              callbacks=callbacks, verbose=1 if config.verbose == 1 else 0)
    seconds = time.perf_counter() - start_time
    history = read_history_log(state / "history_log.csv")
    history.to_csv(run_path / "history.csv", index=False)
    stopped_by = next((cb for cb in callbacks if getattr(cb, "stop_status", None)), None)
    return Fitted(history, seconds, resumed_from_epoch, stopped_by)


def conclude(model: keras.Model, run: Run, folder, fitted: Fitted, extra_metrics: dict) -> dict:
    """Stage 4: a run stopped by a callback (a sweep's pruning) keeps that status; a run whose loss
    became NaN or worse than twice a uniform guess's is "diverged" (neither is evaluated); any
    other is evaluated and recorded (evaluate_and_record). Returns the metrics TensorBoard's
    HParams record shows."""
    history = fitted.history
    if fitted.stopped_by is not None:
        folder.status, folder.detail = fitted.stopped_by.stop_status, fitted.stopped_by.stop_detail
        return {"val_accuracy": history["val_accuracy"].iloc[-1] if len(history) else None}
    final_loss = float(history["loss"].iloc[-1]) if len(history) else float("nan")
    if not final_loss <= divergence_threshold(run.data.num_classes):
        folder.status = "diverged"
        folder.detail = (f"training loss {final_loss:.4g} after epoch {len(history) or 1} with "
                         f"learning_rate={run.config.learning_rate}; lower learning_rate")
        return {}
    epochs_trained = len(history) - fitted.resumed_from_epoch
    metrics = evaluate_and_record(model, run, folder.path, fitted.history, fitted.train_seconds, {
        "epochs_run": len(history), "resumed_from_epoch": fitted.resumed_from_epoch,
        "epochs_trained_here": epochs_trained, "replicas": run.resolved["replicas"],
        # Steps of this process only: a resumed run's earlier epochs ran elsewhere.
        "images_per_second": round(run.steps_per_epoch * run.config.batch_size * epochs_trained
                                   / fitted.train_seconds, 1),
        **extra_metrics})
    return {k: metrics[k] for k in ("test_accuracy", "val_accuracy", "best_val_accuracy", "train_seconds")}


def train_and_evaluate(config: TrainConfig, runs_dir: str | os.PathLike | None = None,
                       run_name: str | None = None, data: MnistData | None = None,
                       callbacks: list[keras.callbacks.Callback] = ()) -> Path:
    """Train `config.model` with `config`, evaluate it on the test set, and write a run folder.

    Args:
      config: a TrainConfig (see mnistlab.config.make_config); validated (once per process).
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
    Raises ValueError for an invalid config, run name, runs folder, model builder or data,
    before anything is written.
    """
    timing.reset()
    with timing.stage("checks_and_data"):
        run = prepare(config, runs_dir, run_name, data)
    with open_run(run.runs_dir, run.name) as folder, backup_dir(run.runs_dir, run.record["config_hash"], run.name) as state:
        write_json(folder.path / "config.json", run.record)
        with timing.stage("build"):
            model, resumed_from_epoch, extra_metrics = start(run, folder.path, state)
        with timing.stage("training"):
            fitted = fit(model, run, folder.path, state, resumed_from_epoch, callbacks)
        metrics = conclude(model, run, folder, fitted, extra_metrics)
        with timing.stage("tensorboard"):
            write_hparams(folder.path, run.record, metrics)
        write_json(folder.path / "timing.json", {"seconds": timing.seconds()})
    return run.path


def write_hparams(run_path: Path, record: dict, metrics: dict) -> None:
    """TensorBoard's HParams record of the run in `run_path/tensorboard/`: every setting as it ran
    (the seed left out; models_from as one string) and the model's fingerprint, with the variant's
    hash as `trial_id`, so the seeds of one variant form one group in `tensorboard --logdir runs`,
    and the final metrics as scalars."""
    from tensorboard.plugins.hparams import api as hp

    from mnistlab.config import effective

    settings = effective(TrainConfig(**record["config"]), record["resolved"])
    hparams = {k: ("None" if v is None else ",".join(v) if isinstance(v, (list, tuple)) else v)
               for k, v in settings.items() if k not in ("seed", "verbose")}
    hparams["fingerprint"] = (record.get("model") or {}).get("fingerprint") or "None"
    with tf.summary.create_file_writer(str(run_path / "tensorboard")).as_default():
        hp.hparams(hparams, trial_id=record["variant_hash"])
        for name, value in metrics.items():
            if isinstance(value, (int, float)) and value == value:
                tf.summary.scalar(name, float(value), step=0)


def evaluate_and_record(model: keras.Model, run: Run, run_path: Path, hist: pd.DataFrame, train_seconds: float,
                        extra: dict) -> dict:
    """Last stage: test accuracy and loss (the mean cross-entropy of the test labels), calibration (ECE, NLL, Brier; a temperature fitted on
    the validation split and the ECE and NLL after it), metrics.json, curves.png, the evaluation
    files (mnistlab.evaluate) and model.keras (raw pixels in, probabilities out, loadable without mnistlab: it scores the same
    accuracy on the IDX test images)."""
    from mnistlab.calibration import negative_log_likelihood

    data = run.data
    outputs = get_entry(run.config.model).outputs
    # One pass over the test and validation images together (one traced function, large batches);
    # the temperature is fitted on the validation split, never on test (mnistlab.calibration).
    with timing.stage("evaluation"):
        x = np.concatenate([data.x_test, data.x_val]) if len(data.x_val) else data.x_test
        predicted = model.predict(x, batch_size=EVALUATION_BATCH, verbose=0).astype(np.float32)
        if outputs == "logits":
            predicted = keras.ops.convert_to_numpy(keras.ops.softmax(predicted, axis=-1))
    probabilities, probabilities_val = predicted[:len(data.x_test)], predicted[len(data.x_test):] if len(data.x_val) else None
    test_accuracy = float(np.mean(probabilities.argmax(axis=1) == data.y_test))
    metrics = {
        "test_accuracy": test_accuracy,
        # Mean cross-entropy of the test labels, nats (the loss without any weight penalty).
        "test_loss": negative_log_likelihood(probabilities, data.y_test),
        "val_accuracy": float(hist["val_accuracy"].iloc[-1]) if "val_accuracy" in hist else None,
        "best_val_accuracy": float(hist["val_accuracy"].max()) if "val_accuracy" in hist else None,
        "params": int(model.count_params()),
        "train_seconds": round(train_seconds, 3),  # wall time of fit(), validation included
        **extra,
    }
    title = f"{run_path.name.removeprefix('.tmp-')}  (test accuracy {test_accuracy:.4f})"
    with timing.stage("figures"):
        fig = plot_curves(hist, title=title, path=run_path / "curves.png")
        plt.close(fig)
    metrics.update(write_evaluation(run_path, data.x_test, data.y_test, probabilities, data.class_names, title,
                                    probabilities_val, data.y_val))
    with timing.stage("saving"):
        write_json(run_path / "metrics.json", metrics)
        saved_form(model, outputs).save(run_path / "model.keras")
    return metrics


def train_or_reuse(config: TrainConfig, runs_dir: str | os.PathLike | None = None,
                   data: MnistData | None = None) -> tuple[Path, bool]:
    """A completed run of exactly `config` (same config hash) in `runs_dir`, or a new one trained
    now. Returns (run folder, whether it was reused)."""
    from mnistlab.task import run_state

    runs_dir = resolve_runs_dir(runs_dir)
    state, existing = run_state(config, runs_dir)
    if state == "completed":
        return runs_dir / existing, True
    return train_and_evaluate(config, runs_dir, data=data), False


def rerun(run_dir: str | os.PathLike, run_name: str | None = None, verbose: int = 2) -> Path:
    """Train again with the settings recorded in `run_dir/config.json` (as they ran: the
    resolved precision, threads and oneDNN operations), into the same runs folder.

    A model of the user's is imported from the file the run recorded; the file, and the data,
    must be what the run recorded: a SHA-256 that differs raises ValueError naming both digests
    and the fix, before training. Returns the new run folder.
    """
    from mnistlab.config import config_from_record
    from mnistlab.registry import load_models_from
    from mnistlab.runs import read_json

    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise ValueError(f"{run_dir} holds no config.json: not a run folder")
    recorded = read_json(run_dir / "config.json")
    settings = recorded.get("config")
    origin = (recorded.get("model") or {}).get("origin") or {}
    if isinstance(settings, dict) and origin.get("kind") == "file":
        given, path = str(origin.get("given")), str(origin.get("path"))
        check_model_file(given, path, origin.get("sha256"), run_dir)
        load_models_from([given], locations={given: path})
    config = config_from_record(settings)
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


def check_model_file(given: str, path: str, recorded_sha256: str | None, run_dir: Path) -> None:
    """Raise ValueError, naming both digests and the fix, if the model file a run recorded is
    gone or no longer what it was when the run trained."""
    import hashlib

    file = Path(path)
    if not file.is_file():
        raise ValueError(f"{run_dir.name} trained a model from {given} ({path}), which is not there any more; "
                         "restore the file at that path to rerun it")
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    if digest != recorded_sha256:
        raise ValueError(f"{given} changed since {run_dir.name} trained: its SHA-256 is {digest} now, the run recorded "
                         f"{recorded_sha256}; restore the file as it was (e.g. git checkout <commit> -- {given}) to "
                         f"rerun the run, or train the changed model anew (train --models-from {given} --model ...)")
