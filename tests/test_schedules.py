"""Learning-rate schedules are Keras LearningRateSchedule objects evaluated at every optimizer step:
the result does not depend on steps_per_execution (nor on verbose), and a resumed run continues
the schedule, the data order and the optimizer where the interrupted one stopped."""

from __future__ import annotations

import json

import keras
import numpy as np
import pandas as pd
import pytest

import mnistlab.train
from mnistlab.config import make_config
from mnistlab.train import train_and_evaluate

# Numerics that depend on the CPU's instruction set: CI runs these again under ONEDNN_MAX_CPU_ISA=AVX2.
pytestmark = pytest.mark.isa

SCHEDULES = {
    "constant": {"lr_schedule": "constant", "learning_rate": 0.003},
    "exponential": {"lr_schedule": "exponential", "learning_rate": 0.01, "lr_decay": 0.6},
    "cosine": {"lr_schedule": "cosine", "learning_rate": 0.01, "lr_warmup_fraction": 0.25},
}


def _history(run_dir) -> pd.DataFrame:
    return pd.read_csv(run_dir / "history.csv").drop(columns=["epoch_seconds"])


def _probabilities(run_dir) -> np.ndarray:
    return np.load(run_dir / "predictions.npz")["probabilities"]


@pytest.mark.slow
@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_steps_per_execution_and_verbose_do_not_change_the_result(tmp_path, tiny_data, schedule):
    # 320 images / batch 32 = 10 steps per epoch: 32 steps per execution span epochs' ends.
    runs = {}
    for spe, verbose in ((1, 0), (32, 2)):
        config = make_config("dropout_mlp", epochs=4, batch_size=32, deterministic=True,
                             steps_per_execution=spe, verbose=verbose, **SCHEDULES[schedule])
        runs[spe] = train_and_evaluate(config, tmp_path, run_name=f"spe{spe}", data=tiny_data)
    pd.testing.assert_frame_equal(_history(runs[1]), _history(runs[32]))
    assert np.array_equal(_probabilities(runs[1]), _probabilities(runs[32]))
    hashes = {json.loads((d / "config.json").read_text())["config_hash"] for d in runs.values()}
    assert len(hashes) == 1  # left out of the hash because of this test


def test_cosine_with_warmup_is_per_step(tmp_path, tiny_data):
    # 10 steps per epoch, 40 in all; warm-up over the first 10 (a quarter), then 30 of cosine decay.
    config = make_config("mlp", epochs=4, batch_size=32, verbose=0, **SCHEDULES["cosine"])
    history = pd.read_csv(train_and_evaluate(config, tmp_path, data=tiny_data) / "history.csv")
    # At each epoch's first step: warm-up start (a tenth), the peak, then the cosine a third and
    # two thirds through its decay: 0.01 * (1 + cos(pi/3)) / 2 and 0.01 * (1 + cos(2pi/3)) / 2.
    assert history.learning_rate.tolist() == pytest.approx([0.001, 0.01, 0.0075, 0.0025], rel=1e-4)


def test_exponential_schedule_is_a_staircase(tmp_path, tiny_data):
    config = make_config("dropout_mlp", epochs=3, batch_size=64, verbose=0)
    history = pd.read_csv(train_and_evaluate(config, tmp_path, data=tiny_data) / "history.csv")
    assert history.learning_rate.tolist() == pytest.approx([0.01, 0.006, 0.0036], rel=1e-6)


class InterruptAfter(keras.callbacks.Callback):
    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epochs:
            raise KeyboardInterrupt


def test_resumed_run_continues_schedule_data_order_and_optimizer(tmp_path, tiny_data, monkeypatch):
    config = make_config("mlp", epochs=5, batch_size=32, deterministic=True, verbose=0, **SCHEDULES["cosine"])
    whole = train_and_evaluate(config, tmp_path / "whole", run_name="whole", data=tiny_data)

    original = mnistlab.train.make_callbacks
    monkeypatch.setattr(mnistlab.train, "make_callbacks", lambda *a, **k: original(*a, **k) + [InterruptAfter(2)])
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(config, tmp_path / "split", run_name="first", data=tiny_data)
    monkeypatch.setattr(mnistlab.train, "make_callbacks", original)
    resumed = train_and_evaluate(config, tmp_path / "split", run_name="second", data=tiny_data)

    metrics = json.loads((resumed / "metrics.json").read_text())
    assert (metrics["resumed_from_epoch"], metrics["epochs_trained_here"], metrics["epochs_run"]) == (2, 3, 5)
    whole_history, resumed_history = _history(whole), _history(resumed)
    np.testing.assert_allclose(resumed_history.learning_rate, whole_history.learning_rate, rtol=1e-7)
    pd.testing.assert_frame_equal(resumed_history, whole_history)
    assert np.array_equal(_probabilities(resumed), _probabilities(whole))
