"""Keras callbacks of a training run: the epoch's shuffle, per-epoch logs and progress lines,
stopping a diverged run, resumable early stopping, a sweep's pruning, and `make_callbacks`, the
set every run trains with."""

from __future__ import annotations

import math
import time
from pathlib import Path

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


def pruning_callbacks(prune: dict | None) -> list[keras.callbacks.Callback]:
    """The callbacks of a sweep trial's run: Optuna's Keras pruning callback (optuna-integration)
    on val_accuracy, turned into a recorded status: a pruned run stops after the epoch and its
    folder says "pruned". `prune` is {"storage", "study", "trial_id"} (a notebook parameter), or
    empty for an ordinary run."""
    if not prune:
        return []
    import optuna

    study = optuna.load_study(study_name=prune["study"], storage=prune["storage"])
    return [prune_on_validation(optuna.trial.Trial(study, int(prune["trial_id"])))]


def prune_on_validation(trial) -> keras.callbacks.Callback:
    """Optuna's KerasPruningCallback for `trial` on val_accuracy, which ends the run with status
    "pruned" instead of raising."""
    import optuna
    from optuna_integration import KerasPruningCallback

    class PruneOnValidation(KerasPruningCallback):
        stop_status = stop_detail = None

        def on_epoch_end(self, epoch, logs=None):
            try:
                super().on_epoch_end(epoch, logs)
            except optuna.TrialPruned as e:
                self.stop_status, self.stop_detail = "pruned", f"{e} (median pruning on val_accuracy)"
                self.model.stop_training = True

    return PruneOnValidation(trial, "val_accuracy")


def make_callbacks(config, run_path: Path, state: Path, num_classes: int,
                   epoch: tf.Variable, print_lines: bool = True) -> list[keras.callbacks.Callback]:
    """Every run's callbacks: the epoch's shuffle, stops on NaN or diverged loss, per-epoch
    logging (`state/history_log.csv`, appended across resumptions), Keras' BackupAndRestore
    (`state/keras/`), TensorBoard events under `run_path/tensorboard/`, and early stopping if the
    config asks for it. `print_lines`: the epoch lines (verbose=2), unless something else shows
    the progress (a notebook's live figure)."""
    callbacks = [
        ShuffleEpoch(epoch),
        keras.callbacks.TerminateOnNaN(),
        StopOnDivergence(divergence_threshold(num_classes)),
        EpochLogs(config.epochs, print_lines=print_lines and config.verbose == 2),
        # Log the epoch before backing it up: a kill in between re-runs (and re-logs) that
        # epoch, and read_history_log keeps the last row of each epoch.
        keras.callbacks.CSVLogger(str(state / "history_log.csv"), append=True),
        keras.callbacks.BackupAndRestore(str(state / "keras"), double_checkpoint=True),
        keras.callbacks.TensorBoard(log_dir=str(run_path / "tensorboard"), write_graph=False),
    ]
    if config.early_stopping_patience:
        callbacks.append(ResumableEarlyStopping(state, config.early_stopping_patience))
    return callbacks
