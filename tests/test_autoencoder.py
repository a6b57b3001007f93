"""The autoencoder + classifier pipeline and the Adadelta learning-rate pitfall."""

from __future__ import annotations

import pytest

import json

import keras
import numpy as np

from mnistlab.autoencoder import add_noise, build_autoencoder
from mnistlab.config import make_config
from mnistlab.train import train_and_evaluate

pytestmark = pytest.mark.slow  # training runs


def test_ae_classifier_run(tmp_path, tiny_data):
    config = make_config("ae_classifier", epochs=2, batch_size=32, ae_epochs=3, augment=True, verbose=0)
    assert (config.optimizer, config.learning_rate, config.ae_learning_rate) == ("adadelta", 1.0, 1.0)
    run_dir = train_and_evaluate(config, tmp_path, data=tiny_data)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0 < metrics["reconstruction_mse"] < 0.2
    assert (run_dir / "ae_gallery.png").stat().st_size > 5_000
    # Frozen while the classifier trained: the saved autoencoder still reconstructs exactly as
    # it did when pre-training ended.
    autoencoder = keras.models.load_model(run_dir / "model.keras").get_layer("autoencoder")
    x_test = tiny_data.x_test.reshape(len(tiny_data.x_test), -1).astype(np.float32) / 255.0
    mse = float(np.mean((autoencoder.predict(x_test, verbose=0) - x_test) ** 2))
    assert abs(mse - metrics["reconstruction_mse"]) < 1e-6


def test_adadelta_learning_rate_pitfall(tiny_data):
    """Keras 3's Adadelta default (0.001) barely moves the autoencoder in the steps where the
    original Keras default (1.0), which mnistlab uses, learns: the article's pitfall."""
    x = tiny_data.x_train.reshape(len(tiny_data.x_train), -1).astype(np.float32) / 255.0
    noisy = add_noise(x, np.random.default_rng(0), stddev=0.3)
    losses = {}
    for learning_rate in (0.001, 1.0):
        keras.utils.set_random_seed(0)
        autoencoder = build_autoencoder()
        autoencoder.compile(optimizer=keras.optimizers.Adadelta(learning_rate=learning_rate), loss="mse")
        start = autoencoder.evaluate(noisy, x, verbose=0)
        autoencoder.fit(noisy, x, epochs=5, batch_size=32, verbose=0)
        losses[learning_rate] = (start, autoencoder.evaluate(noisy, x, verbose=0))
    assert keras.optimizers.Adadelta().learning_rate == 0.001  # the default the article tripped on
    slow_gain = losses[0.001][0] - losses[0.001][1]
    fast_gain = losses[1.0][0] - losses[1.0][1]
    assert fast_gain > 10 * slow_gain and losses[1.0][1] < 0.7 * losses[1.0][0]
