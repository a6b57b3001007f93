"""One `train_and_evaluate(config, runs_dir)` for every model: fit, evaluate, write the run folder."""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from pathlib import Path

import keras
import matplotlib.pyplot as plt
import pandas as pd
import tensorflow as tf

from mnistlab.config import TrainConfig, check_run_name, config_hash, make_config, validate
from mnistlab.data import MnistData, load_dataset
from mnistlab.evaluate import write_evaluation
from mnistlab.models import add_weight_regularization, build_model, get_spec, with_augmentation
from mnistlab.pipeline import create_eval_ds, create_training_ds
from mnistlab.plots import plot_curves
from mnistlab.runs import (
    DEFAULT_RUNS_DIR,
    HISTORY_COLUMNS,
    backup_dir,
    environment_info,
    new_run_name,
    open_run,
    read_json,
    resolve_runs_dir,
    write_json,
)


class EpochLogs(keras.callbacks.Callback):
    """Adds `epoch_seconds` (wall time of the epoch, validation included) and the epoch's
    `learning_rate` to the logs that History and CSVLogger record."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self._learning_rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = self._learning_rate
            logs["epoch_seconds"] = time.perf_counter() - self._start


class StopOnDivergence(keras.callbacks.Callback):
    """Stops training after an epoch whose mean loss is worse than `threshold`.

    Keras clips predicted probabilities, so a run blown up by too high a learning rate often
    never reaches the NaN that TerminateOnNaN catches: it sits at a loss near 14 (confident
    and wrong) instead. Guessing uniformly scores ln(num_classes) (2.30 for 10 classes); the
    default threshold is twice that.
    """

    def __init__(self, threshold: float):
        super().__init__()
        self.threshold = threshold

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not loss <= self.threshold:  # NaN compares False
            print(f"Epoch {epoch + 1}: loss {loss:.3f} is worse than {self.threshold:.3f} "
                  "(twice a uniform guess's): the run diverged; stopping", flush=True)
            self.model.stop_training = True


class StepSchedule(keras.callbacks.Callback):
    """Sets the learning rate from a Keras schedule of the global step, computed from the epoch
    and batch index rather than the optimizer's counter, so a resumed run (BackupAndRestore
    restores the epoch, not the optimizer) continues the schedule where it stopped."""

    def __init__(self, schedule: keras.optimizers.schedules.LearningRateSchedule, steps_per_epoch: int):
        super().__init__()
        self.schedule, self.steps_per_epoch = schedule, steps_per_epoch

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.on_train_batch_begin(0)

    def on_train_batch_begin(self, batch, logs=None):
        step = self.epoch * self.steps_per_epoch + batch
        self.model.optimizer.learning_rate.assign(float(self.schedule(step)))


def divergence_threshold(num_classes: int) -> float:
    return 2 * math.log(num_classes)


def schedule_callbacks(config: TrainConfig, steps_per_epoch: int) -> list[keras.callbacks.Callback]:
    """The callback that applies the config's learning-rate schedule (none for "constant")."""
    callbacks: list[keras.callbacks.Callback] = []
    if config.lr_schedule == "exponential":
        # The seed's decay: learning_rate * lr_decay**epoch (0.01 * 0.6**epoch), set before each epoch.
        lr0, decay = config.learning_rate, config.lr_decay
        callbacks.append(keras.callbacks.LearningRateScheduler(lambda epoch: lr0 * decay**epoch))
    elif config.lr_schedule == "cosine":
        warmup_steps = round(config.lr_warmup_epochs * steps_per_epoch)
        schedule = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=config.learning_rate / 10 if warmup_steps else config.learning_rate,
            decay_steps=config.epochs * steps_per_epoch - warmup_steps,
            warmup_target=config.learning_rate if warmup_steps else None, warmup_steps=warmup_steps)
        callbacks.append(StepSchedule(schedule, steps_per_epoch))
    return callbacks


def make_callbacks(config: TrainConfig, run_path: Path, state_path: Path, num_classes: int = 10,
                   steps_per_epoch: int = 1) -> list[keras.callbacks.Callback]:
    """The recipe's learning-rate schedule, stops on NaN or diverged loss, per-epoch logging
    (`state_path/history_log.csv`, appended across resumptions), Keras' BackupAndRestore
    (`state_path/keras/`) and TensorBoard events under `run_path/tensorboard/`."""
    callbacks = schedule_callbacks(config, steps_per_epoch)
    callbacks += [
        keras.callbacks.TerminateOnNaN(),
        StopOnDivergence(divergence_threshold(num_classes)),
        EpochLogs(),
        # Log the epoch before backing it up: a kill in between re-runs (and re-logs) that
        # epoch, and read_history keeps the last row of each epoch.
        keras.callbacks.CSVLogger(str(state_path / "history_log.csv"), append=True),
        keras.callbacks.BackupAndRestore(str(state_path / "keras"), double_checkpoint=True),
        # `tensorboard --logdir runs` overlays every run.
        keras.callbacks.TensorBoard(log_dir=str(run_path / "tensorboard"), write_graph=False),
    ]
    if config.early_stopping_patience:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=config.early_stopping_patience, restore_best_weights=True))
    return callbacks


def set_threads(threads: int) -> None:
    """Limit TensorFlow to `threads` intra-op threads (and one inter-op thread), so that several
    runs share the cores instead of fighting over them. Must precede TensorFlow's first op."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError as e:  # TensorFlow already started in this process: keep its pools
        print(f"threads={threads} not applied: {e}", flush=True)


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The tf.distribute strategy of the config: "default" (one device), "mirrored" (data
    parallel over this machine's devices: GPUs, or logical CPUs) or "multi_worker_mirrored"
    (data parallel over the machines in $TF_CONFIG; one worker without it)."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker_mirrored":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


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


def make_optimizer(config: TrainConfig) -> keras.optimizers.Optimizer:
    """The config's optimizer at its (initial) learning rate; a schedule callback may change it."""
    if config.optimizer == "adadelta":
        # Always explicit: Keras 3 defaults Adadelta to 0.001, the original Keras to 1.0.
        return keras.optimizers.Adadelta(learning_rate=config.learning_rate)
    return keras.optimizers.Adam(learning_rate=config.learning_rate)


def read_history(log_path: Path) -> pd.DataFrame:
    """The CSVLogger file as a history table: epochs from 1, HISTORY_COLUMNS order, one row per
    epoch (the last, if a resumed run logged an epoch twice)."""
    if not log_path.is_file() or log_path.stat().st_size == 0:
        return pd.DataFrame(columns=HISTORY_COLUMNS)
    hist = pd.read_csv(log_path)
    hist["epoch"] = hist["epoch"] + 1
    hist = hist.drop_duplicates("epoch", keep="last").sort_values("epoch").reset_index(drop=True)
    return hist[[c for c in HISTORY_COLUMNS if c in hist]]


def _resumed_epoch(state_path: Path) -> int:
    meta = state_path / "keras" / "training_metadata.json"
    return int(json.loads(meta.read_text())["epoch"]) if meta.is_file() else 0


def train_and_evaluate(config: TrainConfig, runs_dir: str | os.PathLike = DEFAULT_RUNS_DIR,
                       run_name: str | None = None, data: MnistData | None = None) -> Path:
    """Train `config.model` with `config`, evaluate it on the test set, and write a run folder.

    Args:
      config: a validated TrainConfig (see mnistlab.config.make_config).
      runs_dir: parent folder of run folders (created if missing); must lie inside the runs
        root (mnistlab.runs.resolve_runs_dir).
      run_name: the run folder's name; default `<model>-<timestamp>-<hex>`.
      data: preloaded data (tests pass tiny synthetic sets); default loads `config.dataset`
        with the config's validation split, seed and limit.

    Returns the run folder, holding config.json, history.csv, metrics.json, status.json,
    curves.png, model.keras, the evaluation files (mnistlab.evaluate) and TensorBoard events.
    A run whose loss becomes NaN or worse than twice a uniform guess's is stopped and recorded
    with status "diverged" (no metrics, no model).
    A run that was interrupted (Ctrl-C, kill) resumes from its last finished epoch the next time
    the same config is trained into the same runs_dir (Keras' BackupAndRestore).
    Raises ValueError for an invalid config, run name or data, before any training starts.
    """
    validate(config)
    run_name = check_run_name(run_name or new_run_name(config.model))
    runs_dir = resolve_runs_dir(runs_dir)
    if data is None:
        data = load_dataset(config.dataset, validation_size=config.validation_size,
                            seed=config.seed, limit=config.limit)
    if len(data.x_train) < config.batch_size:
        raise ValueError(f"batch_size={config.batch_size} is larger than the {len(data.x_train)} "
                         "training images: not one full batch per epoch; lower batch_size or raise limit")

    if config.threads:
        set_threads(config.threads)
    keras.utils.set_random_seed(config.seed)  # Python, numpy and TensorFlow seeds in one call
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    spec = get_spec(config.model)
    strategy = make_strategy(config.strategy)
    with strategy.scope(), dtype_policy(config.precision):  # variables are created here (mirrored, for a strategy)
        model = build_model(config.model, input_shape=data.x_train.shape[1:], num_classes=data.num_classes)
        add_weight_regularization(model, l1=config.l1, l2=config.l2)
        if config.augment:
            model = with_augmentation(model, seed=config.seed)
    train_ds = create_training_ds(data.x_train, data.y_train, config.batch_size,
                                  config.shuffle_buffer, seed=config.seed, normalize=config.normalize)
    val_ds = (create_eval_ds(data.x_val, data.y_val, config.batch_size, normalize=config.normalize)
              if len(data.x_val) else None)
    test_ds = create_eval_ds(data.x_test, data.y_test, config.batch_size, normalize=config.normalize)

    with open_run(runs_dir, run_name) as run, backup_dir(runs_dir, config_hash(config), run_name) as state:
        write_json(run.path / "config.json", {
            "run": run_name,
            "config": config.to_dict(),
            "config_hash": config_hash(config),
            "data": {"dataset": config.dataset, "digests_sha256": data.digests,
                     "num_train": len(data.x_train), "num_val": len(data.x_val),
                     "num_test": len(data.x_test), "class_names": list(data.class_names)},
            "environment": environment_info(),
        })
        with strategy.scope():
            extra_metrics = spec.pretrain(model, data, config, run.path) if spec.pretrain else {}
            # With a distributed strategy, steps_per_execution > 1 fails in TF 2.21 / Keras 3.15
            # ("You must feed a value for placeholder tensor ... while/cond"): one step per call.
            model.compile(optimizer=make_optimizer(config), loss="sparse_categorical_crossentropy",
                          metrics=["accuracy"],
                          steps_per_execution=config.steps_per_execution if config.strategy == "default" else 1)
        resumed_from_epoch = _resumed_epoch(state)
        if resumed_from_epoch:
            print(f"Resuming from the backup of an interrupted run: {resumed_from_epoch} of "
                  f"{config.epochs} epochs done", flush=True)
        else:
            (state / "history_log.csv").unlink(missing_ok=True)
        start = time.perf_counter()
        model.fit(train_ds, epochs=config.epochs, validation_data=val_ds,
                  shuffle=False,  # train_ds shuffles itself, seeded
                  callbacks=make_callbacks(config, run.path, state, data.num_classes,
                                           steps_per_epoch=len(data.x_train) // config.batch_size),
                  verbose=config.verbose)
        train_seconds = time.perf_counter() - start
        hist = read_history(state / "history_log.csv")
        hist.to_csv(run.path / "history.csv", index=False)
        final_loss = float(hist["loss"].iloc[-1]) if len(hist) else float("nan")
        if not final_loss <= divergence_threshold(data.num_classes):
            # TerminateOnNaN or StopOnDivergence stopped it: record it as diverged, evaluate nothing.
            run.status = "diverged"
            run.detail = (f"training loss {final_loss:.4g} after epoch {len(hist) or 1} with "
                          f"learning_rate={config.learning_rate}; lower learning_rate")
            return runs_dir / run_name

        test_loss, test_accuracy = model.evaluate(test_ds, verbose=0)
        probabilities = model.predict(test_ds, verbose=0)
        epochs_run = len(hist)
        # Steps of this process only: a resumed run's earlier epochs ran elsewhere.
        images_seen = (len(data.x_train) // config.batch_size) * config.batch_size * (epochs_run - resumed_from_epoch)
        write_json(run.path / "metrics.json", {
            "test_accuracy": float(test_accuracy),
            "test_loss": float(test_loss),
            "val_accuracy": float(hist["val_accuracy"].iloc[-1]) if "val_accuracy" in hist else None,
            "params": int(model.count_params()),
            "train_seconds": round(train_seconds, 3),  # wall time of fit(), validation included
            "images_per_second": round(images_seen / train_seconds, 1),
            "epochs_run": epochs_run,
            "resumed_from_epoch": resumed_from_epoch,
            "replicas": strategy.num_replicas_in_sync,
            **extra_metrics,
        })
        title = f"{run_name}  (test accuracy {test_accuracy:.4f})"
        fig = plot_curves(hist, title=title, path=run.path / "curves.png")
        plt.close(fig)
        write_evaluation(run.path, data.x_test, data.y_test, probabilities, data.class_names, title)
        model.save(run.path / "model.keras")
    return runs_dir / run_name


def rerun(run_dir: str | os.PathLike, run_name: str | None = None, verbose: int = 2) -> Path:
    """Train again with the config recorded in `run_dir/config.json`, into the same runs folder.

    The data must be the data the run recorded: a digest that differs raises ValueError
    before training. Returns the new run folder.
    """
    run_dir = Path(run_dir)
    recorded = read_json(run_dir / "config.json") if (run_dir / "config.json").is_file() else None
    if recorded is None:
        raise ValueError(f"{run_dir} holds no config.json: not a run folder")
    config = make_config(**{**recorded["config"], "verbose": verbose})
    data = load_dataset(config.dataset, validation_size=config.validation_size, seed=config.seed,
                        limit=config.limit)
    expected = recorded.get("data", {}).get("digests_sha256", {})
    changed = [stem for stem, digest in expected.items() if data.digests.get(stem) != digest]
    if changed:
        raise ValueError(f"the data differ from the run's: {', '.join(changed)} have other SHA-256 digests")
    return train_and_evaluate(config, run_dir.parent, run_name=run_name, data=data)
