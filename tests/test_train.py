"""train_and_evaluate: the run folder it writes, failures that are recorded but never counted,
and one real-data check."""

from __future__ import annotations

import json

import keras
import numpy as np
import pandas as pd
import pytest

from mnistlab.config import make_config
from mnistlab.evaluate import EVALUATION_FILES, load_predictions
from mnistlab.results import load_runs
from mnistlab.runs import HISTORY_COLUMNS
from mnistlab.train import train_and_evaluate

# Numerics that depend on the CPU's instruction set: CI runs these again under ONEDNN_MAX_CPU_ISA=AVX2.
pytestmark = pytest.mark.isa

RUN_FILES = {"config.json", "history.csv", "metrics.json", "status.json", "curves.png", "model.keras",
             "tensorboard", "timing.json", *EVALUATION_FILES}


def test_one_epoch_writes_every_run_file(tmp_path, tiny_data):
    config = make_config("mlp", epochs=2, batch_size=32, learning_rate=0.01, lr_schedule="constant", verbose=0)
    run_dir = train_and_evaluate(config, tmp_path, data=tiny_data)
    assert run_dir.parent == tmp_path and run_dir.name.startswith("mlp-")
    assert {p.name for p in run_dir.iterdir()} == RUN_FILES
    assert not list(tmp_path.glob(".tmp-*"))

    history = pd.read_csv(run_dir / "history.csv")
    assert list(history.columns) == HISTORY_COLUMNS
    assert history.epoch.tolist() == [1, 2] and (history.epoch_seconds > 0).all()
    assert np.allclose(history.learning_rate, 0.01)

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["params"] == 111_146 and metrics["epochs_run"] == 2 and metrics["images_per_second"] > 0
    # The synthetic classes are easy: two epochs must learn something (chance is 0.1).
    assert metrics["test_accuracy"] > 0.3

    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["config"] == config.to_dict()
    assert saved["resolved"]["precision"] == "float32" and saved["resolved"]["threads"] >= 1
    assert saved["resolved"]["onednn_ops"] is True and saved["environment"]["onednn_ops"] is True  # mnistlab's default
    assert saved["variant"] == "mlp[epochs=2,batch_size=32,learning_rate=0.01,lr_schedule=constant]"
    assert saved["environment"]["onednn_isa"] and saved["environment"]["cpu_model"]
    assert saved["data"]["num_train"] == 320 and saved["environment"]["packages"]["tensorflow"]
    assert json.loads((run_dir / "status.json").read_text())["status"] == "completed"
    # Where the run's seconds went, stage by stage; training's is fit's wall time.
    stages = json.loads((run_dir / "timing.json").read_text())["seconds"]
    assert list(stages) == ["checks_and_data", "build", "training", "evaluation", "figures", "saving", "tensorboard"]
    assert all(v > 0 for v in stages.values()) and stages["training"] >= metrics["train_seconds"]

    predictions = load_predictions(run_dir / "predictions.npz")
    assert predictions["y_pred"].shape == (60,) and predictions["probabilities"].shape == (60, 10)
    assert np.array_equal(predictions["y_true"], tiny_data.y_test)
    accuracy = (predictions["y_pred"] == predictions["y_true"]).mean()
    assert accuracy == pytest.approx(metrics["test_accuracy"], abs=1e-6)
    cm = pd.read_csv(run_dir / "confusion_matrix.csv", index_col=0)
    assert cm.shape == (10, 10) and cm.to_numpy().sum() == 60
    assert np.trace(cm.to_numpy()) == round(accuracy * 60)
    report = pd.read_csv(run_dir / "classification_report.csv", index_col=0)
    assert report.loc["macro avg", "support"] == 60 and "precision" in report.columns
    assert list((run_dir / "tensorboard").rglob("events.out.tfevents.*"))

    # Calibration: the recorded ECE is the one computed independently from the saved probabilities
    # (top label, 15 equal-width bins); the temperature was fitted on the validation split.
    probabilities = predictions["probabilities"].astype(np.float64)
    confidence, correct = probabilities.max(axis=1), probabilities.argmax(axis=1) == predictions["y_true"]
    ece = 0.0
    for low in np.arange(15) / 15:
        in_bin = (confidence > low) & (confidence <= low + 1 / 15)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    assert metrics["ece"] == pytest.approx(ece, abs=1e-6) and metrics["temperature"] > 0
    assert metrics["nll"] == pytest.approx(-np.mean(np.log(probabilities[np.arange(60), predictions["y_true"]])),
                                           rel=1e-4)
    assert metrics["ece_after_temperature"] is not None

    # The saved model takes raw pixels and scores the recorded accuracy on them.
    model = keras.models.load_model(run_dir / "model.keras")
    probabilities = model.predict(tiny_data.x_test, verbose=0)
    assert (probabilities.argmax(1) == tiny_data.y_test).mean() == pytest.approx(metrics["test_accuracy"], abs=1e-6)


def test_failed_run_is_recorded_but_not_counted(tmp_path, tiny_data, monkeypatch):
    import mnistlab.train

    def broken_plot(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(mnistlab.train, "plot_curves", broken_plot)
    with pytest.raises(RuntimeError, match="disk full"):
        train_and_evaluate(make_config("slp", epochs=1, verbose=0), tmp_path, run_name="broken", data=tiny_data)
    status = json.loads((tmp_path / "broken" / "status.json").read_text())
    assert status["status"] == "failed" and "disk full" in status["error"]
    runs = load_runs(tmp_path)
    assert runs.status.tolist() == ["failed"] and runs.test_accuracy.isna().all()


def test_existing_run_is_not_overwritten(tmp_path, tiny_data):
    (tmp_path / "taken").mkdir()
    with pytest.raises(FileExistsError, match="taken exists already"):
        train_and_evaluate(make_config("slp", epochs=1, verbose=0), tmp_path, run_name="taken", data=tiny_data)


def test_batch_larger_than_data_is_refused(tmp_path, tiny_data):
    with pytest.raises(ValueError, match="batch_size=1000 is larger than the 320 training images"):
        train_and_evaluate(make_config("slp", batch_size=1000), tmp_path / "runs", data=tiny_data)
    assert not list((tmp_path / "runs").iterdir())


def test_real_mnist_slp_two_epochs(tmp_path, real_data_dir, monkeypatch):
    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(real_data_dir))
    run_dir = train_and_evaluate(make_config("slp", epochs=2, verbose=0), tmp_path)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.90
    config = json.loads((run_dir / "config.json").read_text())
    assert config["data"]["num_train"] == 55000 and config["data"]["num_test"] == 10000
    # model.keras scores its recorded accuracy on the raw test images, read by a plain IDX reader.
    import gzip

    from mnistlab.results import load_model

    raw = gzip.decompress((real_data_dir / "mnist" / "t10k-images-idx3-ubyte.gz").read_bytes())
    labels = gzip.decompress((real_data_dir / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes())
    x = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)
    y = np.frombuffer(labels, np.uint8, offset=8)
    predicted = load_model(run_dir).predict(x, verbose=0).argmax(1)
    assert (predicted == y).mean() == pytest.approx(metrics["test_accuracy"], abs=1e-6)


@pytest.mark.slow  # bfloat16 is emulated, and slow, on CPUs without bfloat16 units
def test_mixed_bfloat16_precision(tmp_path, tiny_data):
    from mnistlab.machine import bfloat16_hidden_by_cap
    from mnistlab.results import load_model

    config = make_config("cnn", epochs=1, precision="mixed_bfloat16", verbose=0)
    if bfloat16_hidden_by_cap():  # ONEDNN_MAX_CPU_ISA=AVX2 on a CPU with bfloat16 units: refused, not aborted
        with pytest.raises(ValueError, match="hides this CPU's bfloat16 units from oneDNN"):
            train_and_evaluate(config, tmp_path, data=tiny_data)
        assert not list(tmp_path.iterdir())
        return
    run_dir = train_and_evaluate(config, tmp_path, data=tiny_data)
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after the build
    model = load_model(run_dir)
    convolution = next(layer for layer in model.layers if layer.name.startswith("conv2d"))
    assert convolution.compute_dtype == "bfloat16" and convolution.kernel.dtype == "float32"
    assert model.layers[-1].compute_dtype == "float32"  # the softmax head stays float32
    probabilities = model.predict(tiny_data.x_test[:4], verbose=0)
    assert probabilities.dtype == np.float32 and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert json.loads((run_dir / "config.json").read_text())["resolved"]["precision"] == "mixed_bfloat16"
