"""Learning-rate range test: train with an exponentially increasing learning rate and read off
where the loss falls fastest.

After ../shared/seeds/workflow-and-tuning.txt, which raises Adam's learning rate per epoch
(`1e-4 * 10**(epoch/20)` over 80 epochs), plots loss against learning rate on a log axis and
picks "the lowest point in the curve and 10x behind that point". Here the rate rises per
*step* (Smith, "Cyclical Learning Rates", 2017), so the test takes a few hundred steps, not 80
epochs; the suggestion keeps the article's rule: a tenth of the rate at the smoothed minimum.
"""

from __future__ import annotations

import math
from pathlib import Path

import keras
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mnistlab import machine
from mnistlab.config import TrainConfig, make_config
from mnistlab.data import load_dataset
from mnistlab.pipeline import create_training_ds
from mnistlab.runs import check_writable, environment_info, new_run_name, open_run, resolve_runs_dir, write_json


class LearningRateRangeTest(keras.callbacks.Callback):
    """Records the loss of each step and stops after `steps` steps or once the loss exceeds 4x
    its best (diverged). The learning rate itself is the optimizer's schedule (`range_schedule`)."""

    def __init__(self, steps: int):
        super().__init__()
        self.steps, self.step, self.best = steps, 0, math.inf
        self.records: list[dict] = []

    def on_train_batch_end(self, batch, logs=None):
        loss = float(logs["loss"])  # Keras reports the running mean over the epoch so far
        rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))  # the next step's
        self.records.append({"step": self.step, "loss": loss, "next_learning_rate": rate})
        self.step += 1
        self.best = min(self.best, loss)
        if self.step >= self.steps or not math.isfinite(loss) or loss > 4 * self.best:
            self.model.stop_training = True


def check_range(min_lr: float, max_lr: float, steps: int) -> None:
    """Raise ValueError unless 0 < min_lr < max_lr (finite) and steps is an integer >= 10."""
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (min_lr, max_lr)) \
            or not 0 < min_lr < max_lr:
        raise ValueError(f"need 0 < min_lr < max_lr, got min_lr={min_lr!r}, max_lr={max_lr!r}")
    if not isinstance(steps, int) or steps < 10:
        raise ValueError(f"steps must be an integer of at least 10 for a usable curve, got {steps!r}")


def range_schedule(min_lr: float, max_lr: float, steps: int) -> keras.optimizers.schedules.LearningRateSchedule:
    """min_lr * (max_lr/min_lr)**(step/(steps-1)): exponential in the optimizer's step."""
    return keras.optimizers.schedules.ExponentialDecay(min_lr, decay_steps=1,
                                                        decay_rate=(max_lr / min_lr) ** (1 / max(steps - 1, 1)))


def lr_range_test(config: TrainConfig, x: np.ndarray, y: np.ndarray, min_lr: float = 1e-6,
                  max_lr: float = 1.0, steps: int = 300, num_classes: int = 10) -> pd.DataFrame:
    """Run the range test on a fresh model of `config` (its optimizer, precision, batch size and
    preprocessing: built and compiled by mnistlab.train's stages, with `range_schedule` as the
    learning rate and one step per execution, so that every step's loss is seen).

    x: (N, 28, 28) uint8 training images; y: (N,) labels. Each step uses one batch; the data
    repeats if `steps` batches outrun it. Returns one row per step: step, learning_rate,
    loss (per-batch, recovered from Keras' running mean) and smoothed_loss (EMA, bias-corrected).
    Raises ValueError for min_lr/max_lr not 0 < min_lr < max_lr, or steps < 10.
    """
    from mnistlab.train import build, compile_model

    check_range(min_lr, max_lr, steps)
    keras.utils.set_random_seed(config.seed)
    model = build(config, machine.resolve(config)["precision"], x.shape[1:], num_classes)
    schedule = range_schedule(min_lr, max_lr, steps)
    compile_model(model, config, steps_per_epoch=1, schedule=schedule, steps_per_execution=1)
    test = LearningRateRangeTest(steps)
    ds = create_training_ds(x, y, batch_size=config.batch_size, seed=config.seed).repeat()
    model.fit(ds, epochs=1, steps_per_epoch=steps, callbacks=[test], shuffle=False, verbose=0)
    curve = pd.DataFrame(test.records)
    curve.insert(1, "learning_rate", [float(schedule(step)) for step in curve["step"]])
    curve = curve.drop(columns="next_learning_rate")
    # Keras logs the mean loss since the epoch began; undo the averaging to get each batch's loss.
    running = curve["loss"].to_numpy()
    n = np.arange(1, len(running) + 1)
    curve["loss"] = running * n - np.concatenate([[0.0], running[:-1] * n[:-1]])
    ema = curve["loss"].ewm(alpha=0.05, adjust=True).mean()  # adjust=True corrects the start-up bias
    curve["smoothed_loss"] = ema
    return curve


def suggest_learning_rate(curve: pd.DataFrame) -> float:
    """The article's rule: one tenth of the learning rate at the smoothed loss's minimum."""
    finite = curve[np.isfinite(curve["smoothed_loss"])]
    return float(finite.loc[finite["smoothed_loss"].idxmin(), "learning_rate"] / 10)


def plot_lr_finder(curve: pd.DataFrame, suggestion: float, title: str = "",
                   path: str | Path | None = None) -> plt.Figure:
    """Loss against learning rate (log axis), raw and smoothed, with the suggestion marked."""
    fig, ax = plt.subplots(figsize=(8, 4.5), constrained_layout=True)
    ax.semilogx(curve["learning_rate"], curve["loss"], alpha=0.3, label="loss per batch")
    ax.semilogx(curve["learning_rate"], curve["smoothed_loss"], label="smoothed")
    ax.axvline(suggestion, color="tab:red", linestyle="--", label=f"suggested {suggestion:.2g}")
    top = float(np.nanpercentile(curve["smoothed_loss"], 95))
    ax.set_ylim(0, max(top * 1.3, float(curve["smoothed_loss"].min()) * 2))
    ax.set(xlabel="learning rate", ylabel="loss", title=title or "Learning-rate range test")
    ax.legend()
    ax.grid(alpha=0.3, which="both")
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


def run_lr_finder(model: str, runs_dir: str | Path | None = None, min_lr: float = 1e-6,
                  max_lr: float = 1.0, steps: int = 300, **overrides) -> tuple[Path, pd.DataFrame, float]:
    """Range-test `model` (its recipe, with `overrides` such as batch_size, seed, dataset, limit)
    on the training split and write `runs_dir/lr_finder-<model>-<id>/` (lr_finder.csv,
    lr_finder.png, lr_finder.json with the settings and the suggestion).

    Returns (folder, curve, suggested learning rate). Settings are validated (through
    make_config and check_range) before any data is loaded or trained on.
    """
    config = make_config(model, **overrides)
    check_range(min_lr, max_lr, steps)
    runs_dir = resolve_runs_dir(runs_dir)
    check_writable(runs_dir)
    data = load_dataset(config.dataset, validation_size=config.validation_size, seed=config.seed,
                        limit=config.limit)
    run_name = new_run_name(f"lr_finder-{model}")
    with open_run(runs_dir, run_name) as run:
        curve = lr_range_test(config, data.x_train, data.y_train, min_lr, max_lr, steps, num_classes=data.num_classes)
        suggestion = suggest_learning_rate(curve)
        curve.to_csv(run.path / "lr_finder.csv", index=False)
        fig = plot_lr_finder(curve, suggestion, title=f"{model}: learning-rate range test",
                             path=run.path / "lr_finder.png")
        plt.close(fig)
        write_json(run.path / "lr_finder.json", {
            "model": model, "config": config.to_dict(), "min_lr": min_lr, "max_lr": max_lr, "steps": steps,
            "steps_run": len(curve), "suggested_learning_rate": suggestion, "digests_sha256": data.digests,
            "environment": environment_info()})
    return runs_dir / run_name, curve, suggestion
