"""Label smoothing: the loss against its formula, and model.keras of a model trained with it."""

from __future__ import annotations

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from mnistlab.config import make_config
from mnistlab.losses import SparseCategoricalCrossentropyWithSmoothing
from mnistlab.models import saved_form
from mnistlab.train import build, compile_model


def test_the_loss_is_cross_entropy_against_smoothed_targets():
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(10), size=6).astype(np.float32)
    labels = rng.integers(0, 10, 6)
    targets = np.full((6, 10), 0.2 / 10)
    targets[np.arange(6), labels] += 0.8
    expected = np.mean(-(targets * np.log(probabilities)).sum(axis=1))
    loss = SparseCategoricalCrossentropyWithSmoothing(0.2)
    np.testing.assert_allclose(float(loss(labels, probabilities)), expected, rtol=1e-5)
    logits = np.log(probabilities)
    np.testing.assert_allclose(float(SparseCategoricalCrossentropyWithSmoothing(0.2, from_logits=True)(labels, logits)),
                               expected, rtol=1e-5)
    # No smoothing is Keras' sparse categorical cross-entropy.
    np.testing.assert_allclose(float(SparseCategoricalCrossentropyWithSmoothing(0.0)(labels, probabilities)),
                               float(keras.losses.SparseCategoricalCrossentropy()(labels, probabilities)), rtol=1e-6)
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        SparseCategoricalCrossentropyWithSmoothing(1.0)


def test_a_model_trained_with_label_smoothing_saves_for_plain_keras(tmp_path):
    config = make_config("mlp", label_smoothing=0.1)
    model = build(config, "float32")
    compile_model(model, config, steps_per_epoch=10)
    assert isinstance(model.loss, SparseCategoricalCrossentropyWithSmoothing)
    saved = saved_form(model)
    assert type(saved.loss) is keras.losses.SparseCategoricalCrossentropy  # mnistlab's stays out of model.keras
    saved.save(tmp_path / "model.keras")
    x = np.random.default_rng(1).integers(0, 256, (4, 28, 28)).astype(np.uint8)
    np.save(tmp_path / "x.npy", x)
    code = ("import sys, keras, numpy as np; "
            f"m = keras.models.load_model({str(tmp_path / 'model.keras')!r}); "
            f"print(m.predict(np.load({str(tmp_path / 'x.npy')!r}), verbose=0).argmax(axis=1).tolist()); "
            "assert 'mnistlab' not in sys.modules")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == str(model.predict(x, verbose=0).argmax(axis=1).tolist())
