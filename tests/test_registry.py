"""The model registry: one table every reader uses, register_model as a decorator and a call, taken
names, recipe keys checked like config keys, and models loaded from a file or module."""

from __future__ import annotations

import sys
import textwrap

import keras
import pytest

from mnistlab import register_model
from mnistlab.config import make_config
from mnistlab.registry import REGISTRY, ModelsFromError, expand_model_names, get_entry, load_models_from, restored


@pytest.fixture(autouse=True)
def clean_registry():
    with restored():
        yield


def build_tiny(input_shape=(28, 28), num_classes=10):
    return keras.Sequential([keras.Input(input_shape), keras.layers.Flatten(),
                             keras.layers.Dense(num_classes, activation="softmax")])


MODEL_FILE = '''
import keras
from mnistlab import register_model

@register_model("tiny_user", recipe={"epochs": 3, "learning_rate": 0.01}, source="a test", reported_accuracy=0.5)
def build_tiny_user(input_shape=(28, 28), num_classes=10, width: int = 8):
    return keras.Sequential([keras.Input(input_shape), keras.layers.Flatten(),
                             keras.layers.Dense(width, activation="relu"),
                             keras.layers.Dense(num_classes, activation="softmax")])
'''


def write_model_file(folder, text=MODEL_FILE, name="my_models.py"):
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def test_decorator_and_call_register_the_same_way():
    @register_model("tiny_a", recipe={"epochs": 2})
    def build_a(input_shape=(28, 28), num_classes=10):
        return build_tiny(input_shape, num_classes)

    assert build_a.__name__ == "build_a"  # the decorator leaves the function as it is
    register_model("tiny_b", build_tiny, recipe={"epochs": 4}, outputs="probabilities")
    assert make_config("tiny_a").epochs == 2 and make_config("tiny_b").epochs == 4
    assert get_entry("tiny_b").builder_name == f"{__name__}:build_tiny"


def test_every_reader_uses_the_registry(tmp_path, capsys):
    """make_config, build_model, expand_model_names and the CLI's `models` read the same entry."""
    from mnistlab.cli import main
    from mnistlab.models import build_model

    path = write_model_file(tmp_path)
    assert main(["models", "--models-from", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"{path}:" in out and "tiny_user" in out and "0.5000" in out  # listed under its file
    assert out.index("mnistlab's zoo:") < out.index(f"{path}:")
    config = make_config("tiny_user")  # registered now: its recipe applies, and the config names its file
    assert (config.epochs, config.learning_rate, config.models_from) == (3, 0.01, (str(path),))
    assert build_model("tiny_user").count_params() == 784 * 8 + 8 + 8 * 10 + 10
    assert expand_model_names("tiny_user,bn_cnn") == ["tiny_user", "bn_cnn"]
    entry = get_entry("tiny_user")
    assert entry.origin["kind"] == "file" and entry.origin["path"] == str(path.resolve())
    assert entry.source == "a test" and entry.reported_accuracy == 0.5


def test_the_zoo_is_in_the_registry_with_its_floors():
    from mnistlab.zoo import CORE_MODELS, ZOO_MODELS

    assert tuple(REGISTRY)[: len(ZOO_MODELS)] == ZOO_MODELS
    assert all(get_entry(name).origin is None for name in ZOO_MODELS)
    assert {name: get_entry(name).floor for name in CORE_MODELS if get_entry(name).floor} == {
        "slp": 0.92, "mlp": 0.975, "dropout_mlp": 0.972, "cnn": 0.985, "bn_cnn": 0.994}


def test_a_taken_name_raises_unless_replaced():
    with pytest.raises(ValueError, match=r"a model named 'cnn' is registered already \(by mnistlab's zoo\); "
                                         "choose another name, or pass replace=True"):
        register_model("cnn", build_tiny)
    register_model("cnn", build_tiny, replace=True)
    assert get_entry("cnn").builder is build_tiny


def test_a_notebook_cell_run_again_registers_its_model_anew():
    namespace = {"__name__": "__main__"}
    cell = "from mnistlab import register_model\nimport keras\n@register_model('cell_model')\n" \
           "def build(input_shape=(28, 28), num_classes=10):\n    return None\n"
    exec(cell, namespace)
    exec(cell, namespace)  # the same cell again: no error
    assert get_entry("cell_model").origin["kind"] == "session" and not get_entry("cell_model").portable
    with pytest.raises(ValueError, match="registered already"):
        register_model("cell_model", build_tiny)  # another builder under that name


@pytest.mark.parametrize("name", ["lenet-5", "5lenet", "", "a b", "core"])
def test_a_name_is_a_plain_identifier(name):
    with pytest.raises(ValueError, match="not a plain identifier|name of a group"):
        register_model(name, build_tiny)


@pytest.mark.parametrize("recipe, message", [
    ({"epoch": 3}, r"model 'x': recipe: Unknown config key\(s\) 'epoch'; known keys: model"),
    ({"epochs": "three"}, "model 'x': recipe: epochs must be an integer, got 'three'"),
    ({"seed": 1}, "model 'x': recipe sets seed, which a recipe cannot set"),
    ({"models_from": ["a.py"]}, "recipe sets models_from, which a recipe cannot set"),
])
def test_recipe_keys_are_checked_like_config_keys(recipe, message):
    with pytest.raises(ValueError, match=message):
        register_model("x", build_tiny, recipe=recipe)
    assert "x" not in REGISTRY


def test_a_recipe_value_out_of_range_is_refused_when_the_config_is_made():
    register_model("x", build_tiny, recipe={"epochs": -2})
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        make_config("x")


def test_models_from_a_module(tmp_path, monkeypatch):
    write_model_file(tmp_path, name="user_zoo_module.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_models_from(["user_zoo_module"]) == ["tiny_user"]
    entry = get_entry("tiny_user")
    assert entry.origin["kind"] == "module" and entry.origin["module"] == "user_zoo_module"
    assert make_config("tiny_user").models_from == ("user_zoo_module",)
    sys.modules.pop("user_zoo_module", None)


@pytest.mark.parametrize("text, message", [
    ("x = 1\n", "it registers no model"),
    ("import keras\n\nimport not_a_module_anywhere\n", r"line 3: ModuleNotFoundError: No module named 'not_a_module_any"),
    ("def f(:\n", "line 1: SyntaxError"),
])
def test_a_file_that_fails_is_named_with_its_line(tmp_path, text, message):
    path = write_model_file(tmp_path, text, name="bad_models.py")
    with pytest.raises(ModelsFromError, match=message) as error:
        load_models_from([str(path)])
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_a_missing_file_or_module_is_named(tmp_path):
    with pytest.raises(ModelsFromError, match=r"--models-from nowhere.py: no such file"):
        load_models_from(["nowhere.py"])
    with pytest.raises(ModelsFromError, match=r"--models-from no_such_module_here: no such file, and no importable"):
        load_models_from(["no_such_module_here"])


@pytest.mark.slow  # builds every model
def test_the_models_page_is_the_registry(tmp_path):
    """docs/models.md is generated from the registry (CI checks it is current); a user's model
    appears there under its file, as in `python -m mnistlab models`."""
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "docs"))
    import make_models

    assert make_models.render() == make_models.PAGE.read_text()
    path = write_model_file(tmp_path)
    load_models_from([str(path)])
    page = make_models.render()
    assert f"## {path}" in page and "| `tiny_user` |" in page and "| 6,370 |" in page  # 784*8+8 + 8*10+10
