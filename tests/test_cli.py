"""The command line: train prints its run folder last, models lists the zoo, bad input exits 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mnistlab.models import MODELS


def run_cli(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mnistlab", *args], capture_output=True, text=True,
                          timeout=300, env=env)


def test_models_lists_the_zoo():
    out = run_cli("models")
    assert out.returncode == 0
    listed = [line.split()[0] for line in out.stdout.splitlines()[1:]]
    assert listed == list(MODELS)


def test_train_prints_run_folder_last(tmp_path, real_data_dir):
    import os

    env = {**os.environ, "MNISTLAB_DATA_DIR": str(real_data_dir)}
    out = run_cli("train", "--model", "slp", "--epochs", "1", "--limit", "500", "--runs-dir", str(tmp_path), env=env)
    assert out.returncode == 0, out.stderr
    run_dir = Path(out.stdout.strip().splitlines()[-1])
    assert run_dir.parent == tmp_path and (run_dir / "metrics.json").is_file()
    epoch_lines = [line for line in out.stdout.splitlines() if "val_accuracy" in line]
    assert len(epoch_lines) == 1 and "\r" not in out.stdout  # one line per epoch, no progress bar


def test_bad_input_exits_2_before_training(tmp_path):
    for args, message in [(("--model", "nope"), "No model named 'nope' found; known models"),
                          (("--model", "slp", "--epochs", "-1"), "epochs must be a positive integer")]:
        out = run_cli("train", *args, "--runs-dir", str(tmp_path))
        assert out.returncode == 2 and message in out.stderr
    assert not any(tmp_path.iterdir())


def test_run_all_set_refuses_unknown_keys(tmp_path):
    out = run_cli("run-all", "--models", "slp", "--runs-dir", str(tmp_path), "--set", "augmnt=True")
    assert out.returncode == 2 and "Unknown config key(s) 'augmnt'" in out.stderr
    out = run_cli("run-all", "--models", "slp", "--runs-dir", str(tmp_path), "--set", "augment")
    assert out.returncode == 2 and "expected KEY=VALUE" in out.stderr
    assert not any(tmp_path.iterdir())
