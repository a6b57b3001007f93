"""The run config: recipe defaults, overrides, and refusal of unknown keys and invalid values."""

from __future__ import annotations

import dataclasses

import pytest

from mnistlab.config import check_run_name, make_config


def test_recipe_defaults():
    config = make_config("bn_cnn")
    assert (config.epochs, config.batch_size, config.learning_rate) == (10, 128, 0.01)
    assert (config.lr_schedule, config.lr_decay) == ("exponential", 0.6)
    assert make_config("slp").lr_schedule == "constant"
    assert (make_config("mlp").lr_schedule, make_config("mlp").learning_rate) == ("cosine", 0.002)


def test_overrides_and_none_keeps_default():
    config = make_config("slp", epochs=3, learning_rate=None, limit=None)
    assert config.epochs == 3 and config.learning_rate == 0.001 and config.limit is None


def test_short_runs_shorten_the_recipes_warmup():
    assert make_config("mlp").lr_warmup_epochs == 1.0
    assert make_config("mlp", epochs=1).lr_warmup_epochs == 0.1


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        make_config("slp").epochs = 3


def test_strings_from_papermill_are_converted():
    config = make_config("slp", epochs="2", seed="7", learning_rate="0.01", limit="100")
    assert (config.epochs, config.seed, config.learning_rate, config.limit) == (2, 7, 0.01, 100)


def test_unknown_key_is_named():
    with pytest.raises(ValueError, match=r"Unknown config key\(s\) 'epoch'; known keys: model, dataset, epochs"):
        make_config("slp", epoch=3)


@pytest.mark.parametrize("overrides, message", [
    ({"epochs": 0}, "epochs must be a positive integer, got 0"),
    ({"epochs": -1}, "epochs must be a positive integer, got -1"),
    ({"epochs": 2.5}, "epochs must be an integer, got 2.5"),
    ({"epochs": "ten"}, "epochs must be an integer, got 'ten'"),
    ({"epochs": True}, "epochs must be an integer, got True"),
    ({"batch_size": 0}, "batch_size must be a positive integer"),
    ({"learning_rate": -0.1}, "learning_rate must be a positive number"),
    ({"learning_rate": float("nan")}, "learning_rate must be finite"),
    ({"learning_rate": "inf"}, "learning_rate must be finite"),
    ({"seed": "1.5"}, "seed must be an integer, got '1.5'"),
    ({"seed": -1}, "seed must be a non-negative integer"),
    ({"limit": 0}, "limit must be a positive integer up to 55000"),
    ({"limit": 55001}, "limit must be a positive integer up to 55000"),
    ({"dataset": "cifar10"}, "dataset='cifar10' is unknown; known datasets: mnist, fashion_mnist"),
    ({"lr_schedule": "one_cycle"}, "lr_schedule='one_cycle' is unknown"),
    ({"strategy": "tpu"}, "strategy='tpu' is unknown"),
    ({"optimizer": "sgd"}, "optimizer='sgd' is unknown"),
    ({"precision": "float16"}, "precision='float16' is unknown; use one of float32, mixed_bfloat16"),
    ({"lr_warmup_epochs": 10}, "lr_warmup_epochs must be in"),
])
def test_invalid_values_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_config("slp", **overrides)


def test_unknown_model():
    with pytest.raises(ValueError, match="No model named 'vgg' found; known models: slp"):
        make_config("vgg")


@pytest.mark.parametrize("name", ["../evil", "/abs", "a/b", "..", ".hidden", "", "a\\b", "x" * 129])
def test_run_names_that_escape_are_refused(name):
    with pytest.raises(ValueError, match="not a plain folder name"):
        check_run_name(name)


def test_plain_run_name_is_accepted():
    assert check_run_name("mlp-20261122-000000-ab12") == "mlp-20261122-000000-ab12"


def test_precision_changes_the_hash_but_float32_keeps_the_old_one():
    import hashlib
    import json

    from mnistlab.config import config_hash

    config = make_config("cnn", precision="float32")
    assert config_hash(make_config("cnn", precision="mixed_bfloat16")) != config_hash(config)
    # Runs recorded before `precision` existed keep their hash (run-all still skips them).
    before = {k: v for k, v in config.to_dict().items()
              if k not in ("verbose", "steps_per_execution", "threads", "precision")}
    assert config_hash(config) == hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:12]


def test_auto_precision_follows_the_cpu_flags(tmp_path):
    from mnistlab.config import auto_precision

    with_amx, plain = tmp_path / "amx", tmp_path / "plain"
    with_amx.write_text("flags\t\t: fpu sse avx2 avx512f amx_bf16 amx_tile\n")
    plain.write_text("flags\t\t: fpu sse avx2 fma\n")
    assert auto_precision(str(with_amx)) == "mixed_bfloat16"
    assert auto_precision(str(plain)) == "float32"
    assert auto_precision(str(tmp_path / "missing")) == "float32"
    assert make_config("bn_cnn").precision == auto_precision()  # the recipe says "auto"
    assert make_config("bn_cnn", precision="float32").precision == "float32"
    assert make_config("slp").precision == "float32"
