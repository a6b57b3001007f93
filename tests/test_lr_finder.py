"""The learning-rate range test: schedule, per-batch losses, the suggestion rule, its folder."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mnistlab.config import make_config
from mnistlab.lr_finder import lr_range_test, run_lr_finder, suggest_learning_rate

pytestmark = pytest.mark.slow  # training runs


def test_range_test_rises_exponentially(tiny_data):
    curve = lr_range_test(make_config("slp", batch_size=32, steps_per_execution=32), tiny_data.x_train,
                          tiny_data.y_train, min_lr=1e-4, max_lr=1e-1, steps=30)
    assert len(curve) == 30 and list(curve.columns) == ["step", "learning_rate", "loss", "smoothed_loss"]
    assert curve.learning_rate.iloc[0] == pytest.approx(1e-4, rel=1e-5) and curve.learning_rate.iloc[-1] == pytest.approx(1e-1, rel=1e-5)
    ratios = curve.learning_rate.to_numpy()[1:] / curve.learning_rate.to_numpy()[:-1]
    assert np.allclose(ratios, ratios[0])
    assert (curve.loss > 0).all()  # per-batch losses recovered from Keras' running mean


def test_range_test_uses_the_models_optimizer(tiny_data):
    # ae_classifier trains with Adadelta: the range test does too.
    import keras

    from mnistlab import lr_finder

    seen = []
    original = lr_finder.LearningRateRangeTest.on_train_batch_end

    def spy(self, batch, logs=None):
        seen.append(type(self.model.optimizer))
        return original(self, batch, logs)

    lr_finder.LearningRateRangeTest.on_train_batch_end = spy
    try:
        lr_range_test(make_config("ae_classifier", batch_size=32), tiny_data.x_train, tiny_data.y_train, steps=10)
    finally:
        lr_finder.LearningRateRangeTest.on_train_batch_end = original
    assert seen and all(t is keras.optimizers.Adadelta for t in seen)


def test_range_test_stops_when_the_loss_explodes(tiny_data):
    curve = lr_range_test(make_config("mlp", batch_size=32), tiny_data.x_train, tiny_data.y_train,
                          min_lr=1e-3, max_lr=1e4, steps=200)
    assert len(curve) < 200


def test_suggestion_is_a_tenth_of_the_minimum():
    curve = pd.DataFrame({"learning_rate": [1e-4, 1e-3, 1e-2, 1e-1, 1.0],
                          "smoothed_loss": [2.3, 1.0, 0.5, 0.8, 5.0]})
    assert suggest_learning_rate(curve) == pytest.approx(1e-3)


@pytest.mark.parametrize("kwargs, message", [
    ({"min_lr": 0.1, "max_lr": 0.01}, "need 0 < min_lr < max_lr"),
    ({"min_lr": -1.0}, "need 0 < min_lr < max_lr"),
    ({"steps": 5}, "steps must be an integer of at least 10"),
])
def test_bad_ranges_are_refused(kwargs, message, tiny_data):
    with pytest.raises(ValueError, match=message):
        lr_range_test(make_config("slp"), tiny_data.x_train, tiny_data.y_train, **kwargs)


def test_run_lr_finder_writes_its_folder(tmp_path, real_data_dir, monkeypatch):
    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(real_data_dir))
    folder, curve, suggestion = run_lr_finder("slp", tmp_path, min_lr=1e-5, max_lr=10.0, steps=60, limit=2000)
    assert folder.name.startswith("lr_finder-slp-")
    assert {p.name for p in folder.iterdir()} >= {"lr_finder.csv", "lr_finder.png", "lr_finder.json", "status.json"}
    saved = json.loads((folder / "lr_finder.json").read_text())
    assert saved["suggested_learning_rate"] == suggestion == pytest.approx(curve.learning_rate[curve.smoothed_loss.idxmin()] / 10)
