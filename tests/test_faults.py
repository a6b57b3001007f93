"""Faults injected for real: a training process killed with SIGKILL mid-run and started again, a
backup truncated by a kill, a read-only runs folder, a disk that fills."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mnistlab.train
from mnistlab.cli import main
from mnistlab.config import make_config
from mnistlab.results import load_runs
from mnistlab.train import check_backup, train_and_evaluate

pytestmark = pytest.mark.slow  # several training runs each

TRAIN = [sys.executable, "-m", "mnistlab", "train", "--model", "mlp", "--epochs", "6", "--limit", "10000",
         "--set", "deterministic=True", "--set", "threads=1"]


def _train(runs_dir: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([*TRAIN, "--runs-dir", str(runs_dir)], capture_output=True, text=True, env=env,
                          timeout=600)


def test_killed_run_resumes_and_ends_as_an_uninterrupted_one(tmp_path, real_data_dir):
    env = {**os.environ, "MNISTLAB_DATA_DIR": str(real_data_dir)}
    whole = _train(tmp_path / "whole", env)
    assert whole.returncode == 0, whole.stderr
    whole_dir = Path(whole.stdout.strip().splitlines()[-1])

    runs_dir = tmp_path / "killed"
    proc = subprocess.Popen([*TRAIN, "--runs-dir", str(runs_dir)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)
    for line in proc.stdout:  # one line per finished epoch: kill during the third
        if line.startswith("epoch 2/6"):
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert [p.name.startswith(".tmp-") for p in runs_dir.iterdir() if p.name != ".backup"] == [True]

    again = _train(runs_dir, env)
    assert again.returncode == 0, again.stderr
    assert "Resuming from the backup of an interrupted run" in again.stdout
    resumed_dir = Path(again.stdout.strip().splitlines()[-1])
    metrics = json.loads((resumed_dir / "metrics.json").read_text())
    # The epoch line is printed before the epoch's backup is written: the kill lands after epoch 1,
    # 2 or 3 was saved. Those epochs were not trained again.
    assert metrics["resumed_from_epoch"] in (1, 2, 3)
    assert metrics["epochs_trained_here"] == 6 - metrics["resumed_from_epoch"]
    assert len([line for line in again.stdout.splitlines() if line.startswith("epoch ")]) == \
        metrics["epochs_trained_here"]
    # The data order, the schedule and the optimizer continue: the result is the uninterrupted one.
    columns = ["loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"]
    pd.testing.assert_frame_equal(pd.read_csv(resumed_dir / "history.csv")[columns],
                                  pd.read_csv(whole_dir / "history.csv")[columns])
    assert np.array_equal(np.load(resumed_dir / "predictions.npz")["probabilities"],
                          np.load(whole_dir / "predictions.npz")["probabilities"])
    assert sorted(load_runs(runs_dir).status) == ["completed", "incomplete"]


def _interrupted_state(tmp_path, tiny_data, monkeypatch, epochs_done: int) -> tuple[Path, object]:
    import keras

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == epochs_done:
                raise KeyboardInterrupt

    config = make_config("mlp", epochs=4, batch_size=32, verbose=0)
    original = mnistlab.train.make_callbacks
    monkeypatch.setattr(mnistlab.train, "make_callbacks", lambda *a, **k: original(*a, **k) + [Interrupt()])
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(config, tmp_path, run_name="first", data=tiny_data)
    monkeypatch.setattr(mnistlab.train, "make_callbacks", original)
    (state,) = (tmp_path / ".backup").iterdir()
    return state, config


def test_truncated_backup_falls_back_to_the_copy_before_it(tmp_path, tiny_data, monkeypatch, capsys):
    state, config = _interrupted_state(tmp_path, tiny_data, monkeypatch, epochs_done=3)
    meta = state / "keras" / "training_metadata.json"
    meta.write_text(meta.read_text()[:5])  # a kill while it was written
    run_dir = train_and_evaluate(config, tmp_path, run_name="second", data=tiny_data)
    assert "is damaged (a kill while it was written?); resuming from the one before it, epoch 2" in capsys.readouterr().out
    assert json.loads((run_dir / "metrics.json").read_text())["resumed_from_epoch"] == 2


def test_weights_cut_short_by_ctrl_c_fall_back_to_the_copy_before_it(tmp_path, tiny_data, monkeypatch, capsys):
    # Ctrl-C while Keras writes the weights can leave an HDF5 file that opens but misses layers:
    # it must not reach Keras' restore ("Layer count mismatch"), the copy before it is used.
    import h5py

    state, config = _interrupted_state(tmp_path, tiny_data, monkeypatch, epochs_done=3)
    weights = state / "keras" / "latest.weights.h5"
    with h5py.File(weights, "w") as f:
        f.create_group("layers")
    run_dir = train_and_evaluate(config, tmp_path, run_name="second", data=tiny_data)
    assert "is damaged (a kill while it was written?); resuming from the one before it, epoch 2" in capsys.readouterr().out
    assert json.loads((run_dir / "metrics.json").read_text())["resumed_from_epoch"] == 2


def test_backup_damaged_beyond_repair_restarts_from_scratch(tmp_path, tiny_data, monkeypatch, capsys):
    state, config = _interrupted_state(tmp_path, tiny_data, monkeypatch, epochs_done=1)
    (state / "keras" / "latest.weights.h5").write_bytes(b"\x89HDF\r\n")  # truncated weights, no earlier copy
    assert check_backup(state) == 0
    assert "is damaged and has no usable earlier copy" in capsys.readouterr().out
    run_dir = train_and_evaluate(config, tmp_path, run_name="second", data=tiny_data)
    assert json.loads((run_dir / "metrics.json").read_text())["resumed_from_epoch"] == 0


def test_resumed_ae_classifier_keeps_its_pretraining(tmp_path, tiny_data, monkeypatch):
    import keras

    calls = []
    original_pretrain = mnistlab.train.PRETRAIN["ae_classifier"]
    monkeypatch.setitem(mnistlab.train.PRETRAIN, "ae_classifier",
                        lambda *a: calls.append(1) or original_pretrain(*a))

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt

    config = make_config("ae_classifier", epochs=3, batch_size=32, ae_epochs=2, verbose=0)
    original = mnistlab.train.make_callbacks
    monkeypatch.setattr(mnistlab.train, "make_callbacks", lambda *a, **k: original(*a, **k) + [Interrupt()])
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(config, tmp_path, run_name="first", data=tiny_data)
    monkeypatch.setattr(mnistlab.train, "make_callbacks", original)
    run_dir = train_and_evaluate(config, tmp_path, run_name="second", data=tiny_data)
    assert calls == [1]  # pretrained once
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["resumed_from_epoch"] == 1 and (run_dir / "ae_gallery.png").is_file()
    # The recorded reconstruction error still describes the saved autoencoder.
    autoencoder = keras.models.load_model(run_dir / "model.keras").get_layer("autoencoder")
    x = tiny_data.x_test.reshape(len(tiny_data.x_test), -1).astype(np.float32) / 255.0
    assert float(np.mean((autoencoder.predict(x, verbose=0) - x) ** 2)) == pytest.approx(
        metrics["reconstruction_mse"], abs=1e-6)


def test_early_stopping_state_survives_a_resume(tmp_path, tiny_data, monkeypatch):
    import keras

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    config = make_config("mlp", epochs=12, batch_size=32, learning_rate=0.02, lr_schedule="constant",
                         early_stopping_patience=1, deterministic=True, verbose=0)
    whole = train_and_evaluate(config, tmp_path / "whole", data=tiny_data)
    assert json.loads((whole / "metrics.json").read_text())["epochs_run"] < 12  # it did stop early
    original = mnistlab.train.make_callbacks
    monkeypatch.setattr(mnistlab.train, "make_callbacks", lambda *a, **k: original(*a, **k) + [Interrupt()])
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(config, tmp_path / "split", run_name="first", data=tiny_data)
    monkeypatch.setattr(mnistlab.train, "make_callbacks", original)
    resumed = train_and_evaluate(config, tmp_path / "split", run_name="second", data=tiny_data)
    assert (json.loads((resumed / "metrics.json").read_text())["epochs_run"]
            == json.loads((whole / "metrics.json").read_text())["epochs_run"])
    assert np.array_equal(np.load(resumed / "predictions.npz")["probabilities"],
                          np.load(whole / "predictions.npz")["probabilities"])


def test_read_only_runs_folder_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    def read_only(*args, **kwargs):
        raise PermissionError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    monkeypatch.setattr(mnistlab.train, "load_dataset", lambda *a, **k: pytest.fail("data loaded"))
    assert main(["train", "--model", "slp", "--runs-dir", str(tmp_path / "runs")]) == 2
    assert "cannot hold run folders (it is read-only)" in capsys.readouterr().err


def test_non_utf8_runs_folder_is_refused(tmp_path, capsys):
    name = os.fsdecode(bytes(tmp_path) + b"/runs-\xff")
    assert main(["train", "--model", "slp", "--runs-dir", name]) == 2
    assert "its name is not valid UTF-8" in capsys.readouterr().err


def test_disk_full_leaves_a_failed_run_with_the_error(tmp_path, tiny_data, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "model.keras")

    monkeypatch.setattr("keras.Model.save", full)
    with pytest.raises(OSError, match="No space left on device"):
        train_and_evaluate(make_config("slp", epochs=1, verbose=0), tmp_path, run_name="full", data=tiny_data)
    status = json.loads((tmp_path / "full" / "status.json").read_text())
    assert status["status"] == "failed" and "No space left on device" in status["error"]
    assert load_runs(tmp_path).status.tolist() == ["failed"]
