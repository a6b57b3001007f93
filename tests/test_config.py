"""The run config: recipes as data, overrides, refusal of unknown keys and invalid values, and
the hashes and variant labels computed from what ran."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from mnistlab.config import (FIELDS, TrainConfig, check_run_name, config_from_record, config_hash, describe_schedule,
                             describe_variant, make_config, variant_hash)
from mnistlab.registry import REGISTRY

RESOLVED = {"precision": "float32", "threads": 2, "onednn_ops": True}
ARCHITECTURE = {"fingerprint": "0123456789abcdef", "file_sha256": None}


def test_recipe_defaults():
    config = make_config("bn_cnn")
    assert (config.epochs, config.batch_size, config.learning_rate) == (7, 128, 0.005)
    assert (config.lr_schedule, config.lr_warmup_fraction, config.precision) == ("cosine", 0.1, "auto")
    article = make_config("bn_cnn", recipe="article")  # the seed's own schedule stays reachable
    assert (article.epochs, article.learning_rate, article.lr_schedule, article.lr_decay) == (10, 0.01, "exponential", 0.6)
    assert (make_config("dropout_mlp").lr_schedule, make_config("dropout_mlp").lr_decay) == ("exponential", 0.6)
    assert make_config("slp").to_dict() == {**TrainConfig().to_dict(), "model": "slp"}
    assert (make_config("mlp").lr_schedule, make_config("mlp").learning_rate) == ("cosine", 0.007)


def test_recipes_name_only_config_fields():
    for name, entry in REGISTRY.items():
        for recipe in ("mnistlab", "article"):
            assert set(entry.recipe_for(recipe)) <= set(FIELDS) - {"model", "seed", "recipe", "models_from"}, name


def test_article_recipe():
    config = make_config("mlp", recipe="article")
    assert (config.learning_rate, config.lr_schedule, config.validation_size) == (0.001, "constant", 0)
    assert make_config("tiny_mlp", recipe="article").validation_size == 12000
    with pytest.raises(ValueError, match="recipe='paper' is unknown; use one of mnistlab, article"):
        make_config("mlp", recipe="paper")


def test_overrides_and_none_keeps_the_recipe():
    config = make_config("slp", epochs=3, learning_rate=None, limit=None)
    assert config.epochs == 3 and config.learning_rate == 0.001 and config.limit is None


def test_a_short_run_keeps_the_schedules_shape():
    # The warm-up is a share of the steps, so a one-epoch smoke run needs no rewriting.
    assert make_config("mlp", epochs=1).lr_warmup_fraction == make_config("mlp").lr_warmup_fraction == 0.1


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        make_config("slp").epochs = 3


def test_strings_from_papermill_are_converted():
    config = make_config("slp", epochs="2", seed="7", learning_rate="0.01", limit="1000", augment="True")
    assert (config.epochs, config.seed, config.learning_rate, config.limit, config.augment) == (2, 7, 0.01, 1000, True)
    assert make_config("slp", limit="None").limit is None


def test_unknown_key_is_named():
    with pytest.raises(ValueError, match=r"Unknown config key\(s\) 'epoch'; known keys: model, recipe, models_from, dataset"):
        make_config("slp", epoch=3)


@pytest.mark.parametrize("overrides, message", [
    ({"epochs": 0}, "epochs must be a positive integer up to 10000, got 0"),
    ({"epochs": -1}, "epochs must be a positive integer up to 10000, got -1"),
    ({"epochs": 10**12}, "epochs must be a positive integer up to 10000"),
    ({"epochs": 2.5}, "epochs must be an integer, got 2.5"),
    ({"epochs": "ten"}, "epochs must be an integer, got 'ten'"),
    ({"epochs": True}, "epochs must be an integer, got True"),
    ({"batch_size": 0}, "batch_size must be a positive integer"),
    ({"learning_rate": -0.1}, "learning_rate must be a positive number"),
    ({"learning_rate": float("nan")}, "learning_rate must be finite"),
    ({"learning_rate": "inf"}, "learning_rate must be finite"),
    ({"seed": "1.5"}, "seed must be an integer, got '1.5'"),
    ({"seed": -1}, "seed must be an integer from 0 to 4294967295"),
    ({"seed": 2**32}, "seed must be an integer from 0 to 4294967295"),
    ({"limit": 0}, "limit must be a positive integer up to 55000"),
    ({"limit": 55001}, "limit must be a positive integer up to 55000"),
    ({"dataset": "cifar10"}, "dataset='cifar10' is unknown; use one of mnist, fashion_mnist"),
    ({"lr_schedule": "one_cycle"}, "lr_schedule='one_cycle' is unknown"),
    ({"strategy": "tpu"}, "strategy='tpu' is unknown"),
    ({"optimizer": "sgd"}, "optimizer='sgd' is unknown"),
    ({"precision": "float16"}, "precision='float16' is unknown; use one of float32, mixed_bfloat16, auto"),
    ({"lr_warmup_fraction": 1.0}, "lr_warmup_fraction must be in [0, 1)"),
    ({"label_smoothing": -0.1}, "label_smoothing must be in [0, 1)"),
    ({"ae_noise_stddev": -1}, "ae_noise_stddev must be a non-negative number"),
    ({"shift_pixels": -1}, "shift_pixels must be 0 (off) or up to 13 pixels, got -1"),
    ({"elastic_augment": 1.5}, "elastic_augment must be a share of the training images in [0, 1] (0: off), got 1.5"),
    ({"shift_pixels": 14}, "shift_pixels must be 0 (off) or up to 13 pixels, got 14"),
    # slp has no BatchNorm: a momentum for it would be recorded but change nothing.
    ({"batch_norm_momentum": 0.9}, "batch_norm_momentum applies only to the models whose builder takes it"),
    # Inconsistent pairs name both keys.
    ({"limit": 100}, "batch_size=128 is larger than the 100 training images left by limit=100"),
    ({"early_stopping_patience": 2, "validation_size": 0},
     "early_stopping_patience=2 needs a validation split, but validation_size=0"),
])
def test_invalid_values_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        make_config("slp", **overrides)


@pytest.mark.parametrize("momentum", [1.0, -0.1])
def test_batch_norm_momentum_out_of_range_is_refused(momentum):
    with pytest.raises(ValueError, match=r"batch_norm_momentum must be in \[0, 1\)"):
        make_config("bn_cnn", batch_norm_momentum=momentum)


def test_a_record_from_before_batch_norm_momentum_gets_what_ran_then():
    # Runs recorded before the setting existed ran speedrun at 0.9 and every other BatchNorm at 0.99.
    old = {key: value for key, value in make_config("speedrun").to_dict().items() if key != "batch_norm_momentum"}
    assert config_from_record(old).batch_norm_momentum == 0.9
    assert config_from_record({**old, "model": "deep_bn_cnn"}).batch_norm_momentum == 0.99
    assert config_from_record({"model": "slp"}).batch_norm_momentum == 0.99


def test_unknown_model():
    with pytest.raises(ValueError, match="No model named 'vgg' found; known models: slp"):
        make_config("vgg")


@pytest.mark.parametrize("name", ["../evil", "/abs", "a/b", "..", ".hidden", "", "a\\b", "x" * 129])
def test_run_names_that_escape_are_refused(name):
    with pytest.raises(ValueError, match="not a plain folder name"):
        check_run_name(name)


def test_plain_run_name_is_accepted():
    assert check_run_name("mlp-20261122-000000-ab12") == "mlp-20261122-000000-ab12"


def test_every_result_setting_changes_the_hash():
    config = make_config("cnn")
    base = config_hash(config, RESOLVED, ARCHITECTURE)
    changed = {"recipe": "article", "dataset": "fashion_mnist", "epochs": 4, "batch_size": 64,
               "learning_rate": 0.01, "lr_schedule": "constant", "lr_decay": 0.5, "lr_warmup_fraction": 0.2,
               "label_smoothing": 0.1, "optimizer": "adadelta", "seed": 1, "validation_size": 100, "limit": 1000, "l1": 0.1, "l2": 0.1,
               "early_stopping_patience": 1, "normalize": False, "augment": True, "robust_augment": True, "elastic_augment": 0.5, "shift_pixels": 1, "ae_epochs": 2,
               "ae_learning_rate": 0.5, "ae_noise_stddev": 0.1, "strategy": "mirrored", "deterministic": True,
               "batch_norm_momentum": 0.5, "model": "cnn_linear"}
    for key, value in changed.items():
        other = dataclasses.replace(config, **{key: value})
        assert config_hash(other, RESOLVED, ARCHITECTURE) != base, key
    # Machine-dependent settings count as they ran, not as requested.
    assert config_hash(config, {**RESOLVED, "threads": 1}, ARCHITECTURE) != base
    assert config_hash(config, {**RESOLVED, "precision": "mixed_bfloat16"}, ARCHITECTURE) != base
    assert config_hash(dataclasses.replace(config, precision="float32"), RESOLVED, ARCHITECTURE) == base
    assert config_hash(config, {**RESOLVED, "onednn_ops": False}, ARCHITECTURE) != base
    assert config_hash(dataclasses.replace(config, onednn_ops=True), RESOLVED, ARCHITECTURE) == base
    # Shown not to change results (tests/test_schedules.py): left out.
    for key, value in {"verbose": 0, "steps_per_execution": 1}.items():
        assert config_hash(dataclasses.replace(config, **{key: value}), RESOLVED, ARCHITECTURE) == base, key
    # The architecture: a changed builder (fingerprint) or model file (digest) is a new config.
    assert config_hash(config, RESOLVED, {**ARCHITECTURE, "fingerprint": "fedcba9876543210"}) != base
    assert config_hash(config, RESOLVED, {**ARCHITECTURE, "file_sha256": "ab" * 32}) != base
    # Where a model file is found is not what it holds: models_from is left out (its digest counts).
    assert config_hash(dataclasses.replace(config, models_from=("elsewhere.py",)), RESOLVED, ARCHITECTURE) == base
    assert set(changed) | {"verbose", "steps_per_execution", "precision", "threads", "onednn_ops",
                           "models_from"} == set(FIELDS)


def test_seeds_of_a_variant_share_its_hash_and_label():
    a, b = make_config("mlp", seed=0, epochs=3), make_config("mlp", seed=1, epochs=3)
    assert variant_hash(a, RESOLVED, ARCHITECTURE) == variant_hash(b, RESOLVED, ARCHITECTURE)
    assert config_hash(a, RESOLVED, ARCHITECTURE) != config_hash(b, RESOLVED, ARCHITECTURE)
    assert describe_variant(a) == "mlp[epochs=3]"
    assert describe_variant(make_config("mlp")) == "mlp"
    # TensorFlow's oneDNN operations change round-off, not the experiment (like threads).
    assert variant_hash(a, {**RESOLVED, "onednn_ops": False}, ARCHITECTURE) == variant_hash(a, RESOLVED, ARCHITECTURE)
    assert describe_variant(make_config("mlp", onednn_ops=False)) == "mlp"
    assert describe_variant(make_config("mlp", recipe="article")) == "mlp[recipe=article]"
    # The label is what the user asked for: a recipe's "auto" precision is no change, whatever
    # the machine resolved it to (that stays apart in the hash); asking for float32 is one.
    assert describe_variant(make_config("bn_cnn")) == "bn_cnn"
    assert variant_hash(make_config("bn_cnn"), {**RESOLVED, "precision": "mixed_bfloat16"}, ARCHITECTURE) != \
        variant_hash(make_config("bn_cnn"), RESOLVED, ARCHITECTURE)
    assert describe_variant(make_config("bn_cnn", precision="float32")) == "bn_cnn[precision=float32]"


def test_schedules_in_words():
    assert describe_schedule(make_config("dropout_mlp")) == "0.01 x 0.6^epoch (staircase)"
    assert describe_schedule(make_config("slp")) == "0.001 constant"
    assert "cosine" in describe_schedule(make_config("mlp"))


@pytest.mark.slow
def test_config_module_imports_no_tensorflow():
    code = "import sys; import mnistlab.config, mnistlab.machine; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
