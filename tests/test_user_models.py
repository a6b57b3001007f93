"""A user's model everywhere the zoo goes: the builder contract checked before any work (one line,
exit 2, no run folder, the traceback in a log), Sequential, functional and subclassed models,
logits, custom layers through model.keras, the architecture fingerprint in the hash, rerun of a
changed file, and a config validated once per process on its way from run-all to Keras."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from mnistlab.architecture import describe, fingerprint, planned_hash
from mnistlab.config import make_config
from mnistlab.registry import get_entry, load_models_from, restored
from mnistlab.train import train_and_evaluate

pytestmark = pytest.mark.isa  # trains models


@pytest.fixture(autouse=True)
def clean_registry():
    with restored():
        yield


def model_file(folder: Path, body: str, name: str = "user_models.py") -> Path:
    path = folder / name
    path.write_text("import keras\nimport numpy as np\nfrom keras import layers\nfrom mnistlab import register_model\n\n"
                    + textwrap.dedent(body))
    return path


SEQUENTIAL = '''
@register_model("user_seq", recipe={"epochs": 1, "batch_size": 32})
def build(input_shape=(28, 28), num_classes=10, width=16):
    return keras.Sequential([keras.Input(input_shape), layers.Flatten(), layers.Dense(width, activation="relu"),
                             layers.Dense(num_classes, activation="softmax")])
'''

FUNCTIONAL = '''
@register_model("user_functional", recipe={"epochs": 1, "batch_size": 32})
def build(input_shape=(28, 28), num_classes=10):
    inputs = keras.Input(input_shape)
    x = layers.Flatten()(inputs)
    x = layers.Dense(32, activation="relu")(x) + layers.Dense(32)(x)  # a branch: not a Sequential
    return keras.Model(inputs, layers.Dense(num_classes, activation="softmax")(x))
'''

# A custom layer and a subclassed model, not registered with Keras: mnistlab finds them in the file.
SUBCLASSED = '''
class Scale(layers.Layer):
    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


@register_model("user_custom_layer", recipe={"epochs": 1, "batch_size": 32})
def build_custom(input_shape=(28, 28), num_classes=10):
    return keras.Sequential([keras.Input(input_shape), layers.Flatten(), Scale(0.5),
                             layers.Dense(num_classes, activation="softmax")])


@keras.saving.register_keras_serializable(package="user_models")
class TwoLayers(keras.Model):
    def __init__(self, num_classes=10, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.flatten = layers.Flatten()
        self.hidden = layers.Dense(24, activation="relu")
        self.out = layers.Dense(num_classes)

    def call(self, x):
        return self.out(self.hidden(self.flatten(x)))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


@register_model("user_subclassed", recipe={"epochs": 1, "batch_size": 32}, outputs="logits")
def build_subclassed(input_shape=(28, 28), num_classes=10):
    return TwoLayers(num_classes)
'''


@pytest.mark.parametrize("body, name", [(SEQUENTIAL, "user_seq"), (FUNCTIONAL, "user_functional"),
                                        (SUBCLASSED, "user_custom_layer"), (SUBCLASSED, "user_subclassed")])
def test_every_kind_of_model_trains_saves_and_loads(tmp_path, tiny_data, body, name):
    from mnistlab.results import load_model

    path = model_file(tmp_path, body)
    config = make_config(name, models_from=[str(path)], verbose=0)
    run_dir = train_and_evaluate(config, tmp_path / "runs", data=tiny_data)
    record = json.loads((run_dir / "config.json").read_text())
    assert record["model"]["origin"] == {"kind": "file", "given": str(path), "path": str(path.resolve()),
                                         "sha256": get_entry(name).origin["sha256"]}
    assert record["model"]["builder"].endswith(":build" if name in ("user_seq", "user_functional")
                                               else ":build_custom" if name == "user_custom_layer"
                                               else ":build_subclassed")
    assert record["variant"] == name and len(record["model"]["fingerprint"]) == 16
    saved = np.load(run_dir / "predictions.npz")["probabilities"]
    np.testing.assert_allclose(saved.sum(axis=1), 1.0, atol=1e-5)  # probabilities, logits or not
    # model.keras loads back (custom layers found in the recorded file) and predicts what the run did.
    model = load_model(run_dir)
    np.testing.assert_allclose(model.predict(tiny_data.x_test, verbose=0), saved, atol=1e-5)


def test_custom_layers_load_in_a_new_process_from_the_recorded_file(tmp_path, tiny_data):
    path = model_file(tmp_path, SUBCLASSED)
    config = make_config("user_custom_layer", models_from=[str(path)], verbose=0)
    run_dir = train_and_evaluate(config, tmp_path / "runs", data=tiny_data)
    code = ("import sys, numpy as np; from mnistlab.results import load_model; "
            f"m = load_model({str(run_dir)!r}); x = np.load({str(run_dir / 'predictions.npz')!r}); "
            "print(type(m.layers[2]).__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "Scale"


@pytest.mark.slow
def test_a_zoo_model_keras_loads_without_mnistlab(tmp_path, tiny_data):
    run_dir = train_and_evaluate(make_config("bn_cnn", epochs=1, batch_size=32, verbose=0), tmp_path, data=tiny_data)
    code = ("import sys, keras, numpy as np; "
            f"m = keras.models.load_model({str(run_dir / 'model.keras')!r}); "
            f"x = np.load({str(run_dir / 'predictions.npz')!r}); "
            "assert 'mnistlab' not in sys.modules; print(sorted({type(l).__name__ for l in m.layers}))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "BatchNormalization" in out.stdout and "Fused" not in out.stdout


def test_the_fingerprint_ignores_generated_names_and_sees_changes(tmp_path):
    path = model_file(tmp_path, SEQUENTIAL)
    load_models_from([str(path)])
    entry = get_entry("user_seq")
    from mnistlab.architecture import build_body

    first, second = build_body(entry), build_body(entry)
    assert [layer.name for layer in first.layers] != [layer.name for layer in second.layers]  # dense vs dense_1
    assert fingerprint(first) == fingerprint(second)
    assert fingerprint(build_body(entry, width=17)) != fingerprint(first)
    # Editing the file (one width) gives a new fingerprint, file digest and config hash.
    before = planned_hash(make_config("user_seq"))
    path.write_text(path.read_text().replace("width=16", "width=20"))
    load_models_from([str(path)])
    after = make_config("user_seq")
    assert describe(after)["fingerprint"] != fingerprint(first)
    assert planned_hash(after) != before
    # A zoo model's hash is its own, whatever the user's file does.
    assert planned_hash(make_config("slp")) == planned_hash(make_config("slp"))


BAD_MODELS = {
    "raises": ('''
@register_model("bad")
def build(input_shape=(28, 28), num_classes=10):
    width = 0
    return 10 // width
''', r"model 'bad': build \(.*bad_models.py, line 10\) raised ZeroDivisionError: integer division or modulo by zero"),
    "not_a_model": ('''
@register_model("bad")
def build(input_shape=(28, 28), num_classes=10):
    return layers.Dense(10)
''', r"model 'bad': build \(.*bad_models.py\) returned a Dense, not a keras.Model"),
    "wrong_shape": ('''
@register_model("bad")
def build(input_shape=(28, 28), num_classes=10):
    return keras.Sequential([keras.Input(input_shape), layers.Flatten(), layers.Dense(12, activation="softmax")])
''', r"maps a batch of 2 images to shape \(2, 12\), not \(2, 10\); end it with Dense\(num_classes\)"),
    "not_probabilities": ('''
@register_model("bad")
def build(input_shape=(28, 28), num_classes=10):
    return keras.Sequential([keras.Input(input_shape), layers.Flatten(), layers.Dense(num_classes)])
''', r"outputs do not sum to 1 \(not probabilities\); end the model with a softmax, or register it with "
     r"outputs=\"logits\""),
    "fails_to_import": ('''
import a_package_that_is_not_installed
''', r"--models-from .*bad_models.py, line 7: ModuleNotFoundError: No module named "
     r"'a_package_that_is_not_installed'; fix the file"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(BAD_MODELS))
def test_a_bad_model_file_is_one_line_exit_2_and_no_run_folder(tmp_path, case):
    import re

    body, message = BAD_MODELS[case]
    path = model_file(tmp_path, body, name="bad_models.py")
    runs = tmp_path / "runs"
    out = subprocess.run([sys.executable, "-m", "mnistlab", "train", "--model", "bad", "--models-from", str(path),
                          "--runs-dir", str(runs), "--limit", "500"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(message, lines[0]), out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    assert not [p for p in runs.glob("*") if not p.name.startswith(".")]  # no run folder
    if case != "not_a_model" and case not in ("wrong_shape", "not_probabilities"):  # an exception: its traceback is kept
        assert "Traceback" in (runs / ".logs" / "errors.log").read_text() and "traceback: " in lines[0]


def test_rerun_refuses_a_changed_model_file(tmp_path, tiny_data, monkeypatch):
    from mnistlab.train import rerun

    path = model_file(tmp_path, SEQUENTIAL)
    run_dir = train_and_evaluate(make_config("user_seq", models_from=[str(path)], verbose=0), tmp_path / "runs",
                                 data=tiny_data)
    recorded = json.loads((run_dir / "config.json").read_text())["model"]["origin"]["sha256"]
    path.write_text(path.read_text().replace("width=16", "width=20"))
    with pytest.raises(ValueError, match=rf"user_models.py changed since {run_dir.name} trained: its SHA-256 is "
                                         rf"[0-9a-f]{{64}} now, the run recorded {recorded}; restore the file as it was"):
        rerun(run_dir)
    assert len(list((tmp_path / "runs").glob("user_seq-*"))) == 1  # nothing trained


def test_a_model_registered_in_a_notebook_cell_trains_here_but_not_in_run_all(tmp_path, tiny_data):
    from mnistlab.run_all import run_all

    namespace = {"__name__": "__main__"}
    exec("from mnistlab import register_model\nimport keras\n"
         "@register_model('cell_model', recipe={'epochs': 1, 'batch_size': 32})\n"
         "def build(input_shape=(28, 28), num_classes=10):\n"
         "    return keras.Sequential([keras.Input(input_shape), keras.layers.Flatten(),\n"
         "                             keras.layers.Dense(num_classes, activation='softmax')])\n", namespace)
    run_dir = train_and_evaluate(make_config("cell_model", verbose=0), tmp_path, data=tiny_data)
    assert json.loads((run_dir / "status.json").read_text())["status"] == "completed"
    with pytest.raises(ValueError, match="model 'cell_model' was registered in this Python session .*put it in a "
                                         "Python file that calls mnistlab.register_model, and pass --models-from FILE"):
        run_all(["cell_model"], runs_dir=tmp_path / "batch")
    assert not (tmp_path / "batch").exists()


def test_a_config_is_validated_once_per_process_from_run_all_to_keras(tmp_path, tiny_data, monkeypatch):
    """The client plans each config once; the notebook's kernel turns the dict it receives into the
    same TrainConfig and validates it once; nothing on the way validates again."""
    import mnistlab.config
    from mnistlab.config import config_from_dict
    from mnistlab.run_all import plan_runs

    checks = []
    real_check = mnistlab.config._check_all

    def counting(config):
        checks.append(config)
        return real_check(config)

    monkeypatch.setattr(mnistlab.config, "_check_all", counting)
    mnistlab.config._validated.clear()
    plan = plan_runs(["slp", "mlp"], seeds=2, epochs=1, limit=300)
    assert len(checks) == len(plan) == 4  # the client: each planned config once
    # The kernel's side: the papermill parameter (JSON) back to the same TrainConfig, validated once,
    # then train_and_evaluate, describe and run_state on the way to Keras validate nothing more.
    mnistlab.config._validated.clear()
    checks.clear()
    config = config_from_dict(json.loads(json.dumps(plan[0].to_dict())))
    assert config == plan[0] and len(checks) == 1
    train_and_evaluate(config, tmp_path, data=tiny_data)
    # (The label compares the config with its recipe's default: that other config is checked once too.)
    assert checks.count(config) == 1
