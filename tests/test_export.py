"""Exports round-trip: TF Serving's SavedModel layout and the article's theta CSVs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from mnistlab.cli import main
from mnistlab.config import make_config
from mnistlab.export import export_serving, export_theta, load_theta, predict_theta
from mnistlab.results import load_model
from mnistlab.train import train_and_evaluate

pytestmark = pytest.mark.slow  # training runs and SavedModels


@pytest.fixture
def sigmoid_run(tmp_path, tiny_data):
    return train_and_evaluate(make_config("sigmoid_mlp", epochs=1, verbose=0), tmp_path, data=tiny_data)


def test_theta_csvs_predict_like_keras(sigmoid_run, tiny_data, tmp_path):
    model = load_model(sigmoid_run)
    theta1_path, theta2_path = export_theta(model, tmp_path / "theta")
    theta1, theta2 = load_theta(tmp_path / "theta")
    assert theta1.shape == (785, 300) and theta2.shape == (301, 10)
    x = tiny_data.x_test  # raw pixels, as the model takes them
    expected = model.predict(x, verbose=0)
    probabilities = predict_theta(theta1, theta2, x)
    assert np.allclose(probabilities, expected, atol=1e-5)
    assert np.array_equal(probabilities.argmax(1), expected.argmax(1))


def test_theta_refuses_other_models(tiny_data, tmp_path):
    from mnistlab.models import build_model

    with pytest.raises(ValueError, match="theta export needs a 784-H-10 sigmoid network"):
        export_theta(build_model("mlp"), tmp_path)


def test_serving_export_signature(sigmoid_run, tiny_data, tmp_path):
    model = load_model(sigmoid_run)
    target = export_serving(model, tmp_path / "models", "sigmoid_mlp", version=1)
    assert target == tmp_path / "models" / "sigmoid_mlp" / "1" and (target / "saved_model.pb").is_file()
    served = tf.saved_model.load(str(target)).signatures["serve"]
    x = tiny_data.x_test[:5].astype(np.float32)  # raw pixels in [0, 255]
    assert served.structured_input_signature[1]["pixels"].shape.as_list() == [None, 28, 28]
    (output,) = served(tf.constant(x)).values()
    assert output.shape == (5, 10) and output.dtype == tf.float32
    assert np.allclose(output.numpy(), model.predict(x, verbose=0), atol=1e-6)
    with pytest.raises(FileExistsError, match="use version 2"):
        export_serving(model, tmp_path / "models", "sigmoid_mlp", version=1)


def test_cli_export_refuses_a_model_name_that_is_a_path(sigmoid_run, tmp_path, capsys):
    record = json.loads((sigmoid_run / "config.json").read_text())
    record["config"]["model"] = str(tmp_path / "elsewhere")
    (sigmoid_run / "config.json").write_text(json.dumps(record))
    assert main(["export", "--run", str(sigmoid_run), "--out", str(tmp_path / "models")]) == 2
    assert "No model named" in capsys.readouterr().err and not (tmp_path / "elsewhere").exists()


def test_cli_export_ae_classifier_writes_both_models(tmp_path, tiny_data, capsys):
    run_dir = train_and_evaluate(make_config("ae_classifier", epochs=1, batch_size=64, verbose=0), tmp_path,
                                 data=tiny_data)
    assert main(["export", "--run", str(run_dir), "--out", str(tmp_path / "models")]) == 0
    for name in ("ae_classifier", "autoencoder", "classifier"):
        assert (tmp_path / "models" / name / "1" / "saved_model.pb").is_file(), name
    served = tf.saved_model.load(str(tmp_path / "models" / "classifier" / "1")).signatures["serve"]
    (output,) = served(tf.zeros((3, 784))).values()
    assert output.shape == (3, 10)


def test_cli_export_refuses_a_run_that_did_not_complete(tmp_path, capsys):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{}")
    assert main(["export", "--run", str(tmp_path / "broken")]) == 2
    assert "not a completed run" in capsys.readouterr().err
