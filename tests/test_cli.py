"""The command line: train prints its test accuracy, then its run folder last; --set reaches the
config, models lists the zoo with its schedules, bad input exits 2 and a diverged run exits 3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mnistlab.zoo import ZOO_MODELS

pytestmark = pytest.mark.slow  # subprocesses, notebooks or Dask


def run_cli(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mnistlab", *args], capture_output=True, text=True,
                          timeout=300, env=env)


def test_models_lists_the_zoo_with_real_schedules():
    out = run_cli("models")
    assert out.returncode == 0
    assert out.stdout.splitlines()[0] == "mnistlab's zoo:"
    lines = out.stdout.splitlines()[2:]
    assert [line.split()[0] for line in lines] == list(ZOO_MODELS)
    lines = [line.strip() for line in lines]
    dropout_mlp = next(line for line in lines if line.startswith("dropout_mlp"))
    assert "0.01 x 0.6^epoch (staircase)" in dropout_mlp
    assert "auto" in next(line for line in lines if line.startswith("bn_cnn"))
    assert "learning_rate" in run_cli("models", "--keys").stdout


def test_train_with_set_is_the_same_whatever_steps_per_execution(tmp_path, real_data_dir):
    env = {**os.environ, "MNISTLAB_DATA_DIR": str(real_data_dir)}
    run_dirs = []
    for spe in (1, 32):
        out = run_cli("train", "--model", "mlp", "--epochs", "2", "--limit", "4000", "--runs-dir", str(tmp_path),
                      "--set", "deterministic=True", "--set", f"steps_per_execution={spe}", env=env)
        assert out.returncode == 0, out.stderr
        run_dirs.append(Path(out.stdout.strip().splitlines()[-1]))
        assert run_dirs[-1].parent == tmp_path
        metrics = json.loads((run_dirs[-1] / "metrics.json").read_text())
        assert out.stdout.strip().splitlines()[-2] == (f"test accuracy {metrics['test_accuracy']:.4f}, "
                                                       f"{metrics['train_seconds']:.1f} s of training")
        epoch_lines = [line for line in out.stdout.splitlines() if line.startswith("epoch ")]
        assert len(epoch_lines) == 2 and "val_accuracy" in epoch_lines[0] and "\r" not in out.stdout
    histories = [pd.read_csv(d / "history.csv").drop(columns="epoch_seconds") for d in run_dirs]
    pd.testing.assert_frame_equal(*histories)
    predictions = [np.load(d / "predictions.npz")["probabilities"] for d in run_dirs]
    assert np.array_equal(*predictions)


def test_bad_input_exits_2_before_training(tmp_path):
    for args, message in [(("--model", "nope"), "No model named 'nope' found; known models"),
                          (("--model", "slp", "--epochs", "-1"), "epochs must be a positive integer"),
                          (("--model", "slp", "--set", "augmnt=True"), "Unknown config key(s) 'augmnt'"),
                          (("--model", "slp", "--set", "seed=-3"), "seed must be an integer from 0")]:
        out = run_cli("train", *args, "--runs-dir", str(tmp_path / "runs"))
        assert out.returncode == 2 and message in out.stderr, out.stderr
    assert not (tmp_path / "runs").exists()


def test_diverged_run_exits_3(tmp_path, real_data_dir):
    env = {**os.environ, "MNISTLAB_DATA_DIR": str(real_data_dir)}
    out = run_cli("train", "--model", "mlp", "--epochs", "2", "--limit", "1000", "--learning-rate", "1e9",
                  "--runs-dir", str(tmp_path), env=env)
    assert out.returncode == 3 and "diverged" in out.stderr


def test_run_all_set_refuses_unknown_keys(tmp_path):
    out = run_cli("run-all", "--models", "slp", "--runs-dir", str(tmp_path / "runs"), "--set", "augmnt=True")
    assert out.returncode == 2 and "Unknown config key(s) 'augmnt'" in out.stderr
    out = run_cli("run-all", "--models", "slp", "--runs-dir", str(tmp_path / "runs"), "--set", "augment")
    assert out.returncode == 2 and "expected KEY=VALUE" in out.stderr
    out = run_cli("run-all", "--models", "slp", "--runs-dir", str(tmp_path / "runs"), "--set", "seed=3")
    assert out.returncode == 2 and "seed is set per run by run-all" in out.stderr
    assert not (tmp_path / "runs").exists()


def _interrupt_after_first_epoch(command: list[str], env: dict, epoch: int = 1) -> subprocess.CompletedProcess:
    """Start `command` in its own process group, press Ctrl-C (SIGINT to the group, as a terminal
    does) once it has printed the line of `epoch`, and return what it printed and its exit code."""
    import signal

    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.strip().startswith(f"epoch {epoch}/"):
            os.killpg(proc.pid, signal.SIGINT)
            break
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(command, proc.returncode, "".join(lines) + out, err)


def test_ctrl_c_ends_train_with_one_line_and_exit_130(tmp_path, real_data_dir):
    env = {**os.environ, "MNISTLAB_DATA_DIR": str(real_data_dir)}
    command = [sys.executable, "-m", "mnistlab", "train", "--model", "mlp", "--epochs", "20", "--limit", "20000",
               "--runs-dir", str(tmp_path)]
    # After epoch 2: the key may land while epoch 2's backup is written, and epoch 1's is there to fall back on.
    out = _interrupt_after_first_epoch(command, env, epoch=2)
    assert out.returncode == 130, out.stderr
    assert out.stderr.strip().splitlines() == ["interrupted: the run is kept as interrupted; the same command "
                                               "resumes it from its last finished epoch"]
    assert "Traceback" not in out.stdout + out.stderr
    (run,) = [p for p in tmp_path.iterdir() if p.name.startswith("mlp-")]
    assert json.loads((run / "status.json").read_text())["status"] == "interrupted"
    again = run_cli("train", "--model", "mlp", "--epochs", "20", "--limit", "20000", "--runs-dir", str(tmp_path),
                    env=env)
    assert again.returncode == 0 and "Resuming from the backup of an interrupted run" in again.stdout


def test_ctrl_c_ends_run_all_with_one_line_and_exit_130(tmp_path, real_data_dir):
    env = {**os.environ, "MNISTLAB_DATA_DIR": str(real_data_dir)}
    command = [sys.executable, "-m", "mnistlab", "run-all", "--models", "slp,mlp", "--epochs", "20", "--limit", "20000",
               "--runs-dir", str(tmp_path), "--no-corruptions"]
    out = _interrupt_after_first_epoch(command, env)
    assert out.returncode == 130, out.stderr
    message = out.stderr.strip().splitlines()
    assert len(message) == 1 and message[0].startswith("interrupted: 0 completed run(s) are kept in"), out.stderr
    assert "resumes it from its last finished epoch" in message[0] and "Traceback" not in out.stdout + out.stderr
