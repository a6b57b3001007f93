"""Keras callbacks of a training run: the epoch's shuffle, per-epoch logs and progress lines,
and stopping a diverged run."""

from __future__ import annotations

import math
import time

import keras
import tensorflow as tf


class ShuffleEpoch(keras.callbacks.Callback):
    """Sets the training pipeline's epoch variable before each epoch, so that the data order of
    epoch k depends only on the seed and k (see mnistlab.pipeline.create_training_ds), also in a
    run resumed at epoch k."""

    def __init__(self, epoch: tf.Variable):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch.assign(epoch)


class EpochLogs(keras.callbacks.Callback):
    """Adds `learning_rate` (the schedule's value at the epoch's first step) and `epoch_seconds`
    (wall time of the epoch, validation included) to the logs that History and CSVLogger record;
    with `print_lines`, prints one line per epoch with the time elapsed and an estimate of the
    time left."""

    def __init__(self, epochs: int, print_lines: bool = False):
        super().__init__()
        self.epochs, self.print_lines = epochs, print_lines
        self._seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self._learning_rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        seconds = time.perf_counter() - self._start
        logs["learning_rate"] = self._learning_rate
        logs["epoch_seconds"] = seconds
        self._seconds.append(seconds)
        if self.print_lines:
            print(epoch_line(epoch + 1, self.epochs, logs, sum(self._seconds),
                             (self.epochs - epoch - 1) * sum(self._seconds) / len(self._seconds)), flush=True)


def epoch_line(epoch: int, epochs: int, logs: dict, elapsed: float, left: float) -> str:
    """"epoch 3/10  loss 0.1234  accuracy 0.9650  val_accuracy 0.9712  12.3 s  (37 s, ~86 s left)"."""
    metrics = "  ".join(f"{key} {logs[key]:.4f}" for key in ("loss", "accuracy", "val_loss", "val_accuracy")
                        if key in logs)
    return (f"epoch {epoch}/{epochs}  {metrics}  {logs.get('epoch_seconds', 0):.1f} s  "
            f"({elapsed:.0f} s, ~{left:.0f} s left)")


def divergence_threshold(num_classes: int) -> float:
    """Twice the loss of a uniform guess, 2 ln(num_classes): a run whose epoch loss is worse
    than this has diverged."""
    return 2 * math.log(num_classes)


class StopOnDivergence(keras.callbacks.Callback):
    """Stops training after an epoch whose mean loss is NaN or worse than `threshold`.

    Keras clips predicted probabilities, so a run blown up by too high a learning rate often
    never reaches the NaN that TerminateOnNaN catches: it sits at a loss near 14 (confident
    and wrong) instead.
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


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """Keras' EarlyStopping on val_loss with the best weights restored, whose state (epochs
    without improvement, the best loss, its epoch and weights) is saved in `state_dir` after every
    epoch and read back when a resumed run starts, so that stopping does not depend on whether
    the run was interrupted."""

    def __init__(self, state_dir, patience: int):
        super().__init__(monitor="val_loss", patience=patience, restore_best_weights=True)
        self.state_dir = state_dir

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        meta = self.state_dir / "early_stopping.json"
        if meta.is_file():
            import json

            state = json.loads(meta.read_text())
            self.wait, self.best, self.best_epoch = state["wait"], state["best"], state["best_epoch"]
            weights = self.state_dir / "early_stopping.weights.h5"
            if weights.is_file():
                self.model.load_weights(weights)  # the best so far, to restore at the end
                self.best_weights = self.model.get_weights()
                self.model.load_weights(self.state_dir / "keras" / "latest.weights.h5")

    def on_epoch_end(self, epoch, logs=None):
        improved_before = self.best_epoch
        super().on_epoch_end(epoch, logs)
        from mnistlab.runs import write_json

        if self.best_epoch != improved_before or not (self.state_dir / "early_stopping.weights.h5").is_file():
            self.model.save_weights(self.state_dir / "early_stopping.weights.h5")
        write_json(self.state_dir / "early_stopping.json",
                   {"wait": self.wait, "best": float(self.best), "best_epoch": self.best_epoch})
