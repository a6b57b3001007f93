"""One `train_and_evaluate(config, runs_dir)` for every model: fit, evaluate, write the run folder."""

from __future__ import annotations

import os
import time
from pathlib import Path

import keras
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import tensorflow as tf

from mnistlab.config import TrainConfig, check_run_name, config_hash, validate
from mnistlab.data import MnistData, load_dataset
from mnistlab.evaluate import write_evaluation
from mnistlab.models import build_model
from mnistlab.pipeline import create_eval_ds, create_training_ds
from mnistlab.plots import plot_curves
from mnistlab.runs import DEFAULT_RUNS_DIR, HISTORY_COLUMNS, environment_info, new_run_name, open_run, write_json


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


def make_callbacks(config: TrainConfig, run_path: Path) -> list[keras.callbacks.Callback]:
    """The recipe's learning-rate schedule, a stop on NaN loss, per-epoch logging to
    `run_path/history_log.csv` and TensorBoard events under `run_path/tensorboard/`."""
    callbacks: list[keras.callbacks.Callback] = []
    if config.lr_schedule == "exponential":
        # The seed's decay: learning_rate * lr_decay**epoch (0.01 * 0.6**epoch), set before each epoch.
        lr0, decay = config.learning_rate, config.lr_decay
        callbacks.append(keras.callbacks.LearningRateScheduler(lambda epoch: lr0 * decay**epoch))
    callbacks += [
        keras.callbacks.TerminateOnNaN(),
        EpochLogs(),
        keras.callbacks.CSVLogger(str(run_path / "history_log.csv")),
        # `tensorboard --logdir runs` overlays every run.
        keras.callbacks.TensorBoard(log_dir=str(run_path / "tensorboard"), write_graph=False),
    ]
    return callbacks


def train_and_evaluate(config: TrainConfig, runs_dir: str | os.PathLike = DEFAULT_RUNS_DIR,
                       run_name: str | None = None, data: MnistData | None = None) -> Path:
    """Train `config.model` with `config`, evaluate it on the test set, and write a run folder.

    Args:
      config: a validated TrainConfig (see mnistlab.config.make_config).
      runs_dir: parent folder of run folders (created if missing).
      run_name: the run folder's name; default `<model>-<timestamp>-<hex>`.
      data: preloaded data (tests pass tiny synthetic sets); default loads `config.dataset`
        with the config's validation split, seed and limit.

    Returns the run folder, holding config.json, history.csv, metrics.json, status.json,
    curves.png, model.keras, the evaluation files (mnistlab.evaluate) and TensorBoard events.
    A run whose loss becomes NaN is stopped and recorded with status "diverged" (no metrics).
    Raises ValueError for an invalid config, run name or data, before any training starts.
    """
    validate(config)
    run_name = check_run_name(run_name or new_run_name(config.model))
    if data is None:
        data = load_dataset(config.dataset, validation_size=config.validation_size,
                            seed=config.seed, limit=config.limit)
    if len(data.x_train) < config.batch_size:
        raise ValueError(f"batch_size={config.batch_size} is larger than the {len(data.x_train)} "
                         "training images: not one full batch per epoch; lower batch_size or raise limit")

    keras.utils.set_random_seed(config.seed)  # Python, numpy and TensorFlow seeds in one call
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    model = build_model(config.model, input_shape=data.x_train.shape[1:], num_classes=data.num_classes)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    train_ds = create_training_ds(data.x_train, data.y_train, config.batch_size,
                                  config.shuffle_buffer, seed=config.seed)
    val_ds = create_eval_ds(data.x_val, data.y_val, config.batch_size) if len(data.x_val) else None
    test_ds = create_eval_ds(data.x_test, data.y_test, config.batch_size)

    with open_run(runs_dir, run_name) as run:
        write_json(run.path / "config.json", {
            "run": run_name,
            "config": config.to_dict(),
            "config_hash": config_hash(config),
            "data": {"dataset": config.dataset, "digests_sha256": data.digests,
                     "num_train": len(data.x_train), "num_val": len(data.x_val),
                     "num_test": len(data.x_test), "class_names": list(data.class_names)},
            "environment": environment_info(),
        })
        start = time.perf_counter()
        history = model.fit(train_ds, epochs=config.epochs, validation_data=val_ds,
                            shuffle=False,  # train_ds shuffles itself, seeded
                            callbacks=make_callbacks(config, run.path),
                            verbose=config.verbose)
        train_seconds = time.perf_counter() - start
        hist = pd.DataFrame(history.history)
        hist.insert(0, "epoch", range(1, len(hist) + 1))
        hist = hist[[c for c in HISTORY_COLUMNS if c in hist]]
        hist.to_csv(run.path / "history.csv", index=False)
        (run.path / "history_log.csv").unlink()
        if hist.empty or not np.isfinite(hist["loss"]).all():
            # TerminateOnNaN stopped it: record the run as diverged, evaluate nothing.
            run.status = "diverged"
            run.detail = f"loss became {hist['loss'].iloc[-1]} in epoch {len(hist)}; lower learning_rate"
            return run.path.parent / run_name

        test_loss, test_accuracy = model.evaluate(test_ds, verbose=0)
        probabilities = model.predict(test_ds, verbose=0)
        epochs_run = len(hist)
        images_seen = (len(data.x_train) // config.batch_size) * config.batch_size * epochs_run
        write_json(run.path / "metrics.json", {
            "test_accuracy": float(test_accuracy),
            "test_loss": float(test_loss),
            "val_accuracy": float(hist["val_accuracy"].iloc[-1]) if "val_accuracy" in hist else None,
            "params": int(model.count_params()),
            "train_seconds": round(train_seconds, 3),  # wall time of fit(), validation included
            "images_per_second": round(images_seen / train_seconds, 1),
            "epochs_run": epochs_run,
        })
        title = f"{run_name}  (test accuracy {test_accuracy:.4f})"
        fig = plot_curves(hist, title=title, path=run.path / "curves.png")
        plt.close(fig)
        write_evaluation(run.path, data.x_test, data.y_test, probabilities, data.class_names, title)
        model.save(run.path / "model.keras")
    return Path(runs_dir) / run_name
