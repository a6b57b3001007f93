"""Data-parallel training through tf.distribute, on two logical CPU devices.

Logical devices must be configured before TensorFlow starts, so the run goes in a fresh process.
"""

from __future__ import annotations

import pytest

import json
import subprocess
import sys
from pathlib import Path

pytestmark = pytest.mark.slow  # a subprocess

SCRIPT = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.path.insert(0, sys.argv[2])
from conftest import synthetic_images
from mnistlab.config import make_config
from mnistlab.data import MnistData
from mnistlab.train import train_and_evaluate
x, y = synthetic_images(440)
data = MnistData(x[:320], y[:320], x[320:380], y[320:380], x[380:], y[380:], tuple("0123456789"), {})
run_dir = train_and_evaluate(make_config("cnn", epochs=2, batch_size=32, strategy="mirrored", verbose=0),
                             sys.argv[1], data=data)
print(run_dir)
"""


def test_mirrored_strategy_on_two_cpus(tmp_path):
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), str(Path(__file__).parent)],
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = Path(out.stdout.strip().splitlines()[-1])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["replicas"] == 2 and metrics["epochs_run"] == 2
    assert json.loads((run_dir / "config.json").read_text())["config"]["strategy"] == "mirrored"
