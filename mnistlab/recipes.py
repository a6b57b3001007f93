"""Each model's training recipes as plain data (no TensorFlow): mnistlab's and its source article's.

A recipe is a mapping of TrainConfig fields to the values that differ from TrainConfig's
defaults (Adam at a constant 0.001, 10 epochs, batch 128, float32); `make_config` applies it with
`dataclasses.replace`, then the user's overrides. The articles are in ../shared/seeds/.
"""

from __future__ import annotations

from types import MappingProxyType

FIVE_MODELS = "getting-the-mnist-five-models.txt"

# The seed's decaying learning rate, 0.01 * 0.6**epoch.
_SEED_DECAY = {"learning_rate": 0.01, "lr_schedule": "exponential", "lr_decay": 0.6}
# The five-model article trains on all 60,000 training images (it validates on the test set).
_FIVE_MODELS_ARTICLE = {"validation_size": 0}
# A tenth of the steps warming up, then cosine decay to zero: the convolutional recipes reach the
# floors in fewer epochs than the articles' constant or per-epoch rates (docs/results.md).
_CNN = {"epochs": 2, "learning_rate": 0.003, "lr_schedule": "cosine", "lr_warmup_fraction": 0.1,
        "precision": "auto"}

RECIPES: dict[str, dict] = {
    "slp": {},
    # The article's constant 0.001 for 10 epochs leaves the MLP at the 0.975 floor; 4 epochs of
    # warm-up and cosine decay from 0.007 lift it above it (docs/results.md).
    "mlp": {"epochs": 4, "learning_rate": 0.007, "lr_schedule": "cosine", "lr_warmup_fraction": 0.1},
    "dropout_mlp": dict(_SEED_DECAY),
    # A fifth of the article's 10 epochs, with a warm-up and cosine decay.
    "cnn": dict(_CNN),
    "cnn_linear": dict(_CNN),  # cnn's recipe, so that only the missing activation differs
    # The seed's architecture; 7 epochs instead of 10, warm-up and cosine decay from 0.005 instead
    # of 0.01 * 0.6**epoch (which needs all 10 epochs to reach the 0.994 floor, and not always).
    # BatchNorm's moving averages at momentum 0.9: at 0.99 they lag the fast-moving weights of the
    # first epochs, and the validation curve shows the lag rather than the model (0.927 after the
    # first epoch at seed 0, 0.989 at 0.9). Training itself does not use them.
    "bn_cnn": {**_CNN, "epochs": 7, "learning_rate": 0.005, "batch_norm_momentum": 0.9},
    "deep_bn_cnn": {"epochs": 15, "learning_rate": 0.003, "lr_schedule": "cosine",
                    "lr_warmup_fraction": 1 / 15, "precision": "auto"},
    "sigmoid_mlp": {"epochs": 27, "batch_size": 50, "learning_rate": 0.005},
    "pool_cnn": {"epochs": 5, "batch_size": 32},
    "tiny_mlp": {"epochs": 20, "batch_size": 32},
    "small_mlp": {"epochs": 100, "batch_size": 32},
    "ae_classifier": {"learning_rate": 1.0, "optimizer": "adadelta"},
    # `make speedrun`: two epochs of the speedrun network, one-cycle shaped (a fifth warming up).
    # BatchNorm's moving averages at momentum 0.9 rather than Keras' 0.99: a run of a few hundred
    # steps must leave them converged.
    "speedrun": {"epochs": 2, "batch_size": 256, "learning_rate": 0.01, "lr_schedule": "cosine",
                 "lr_warmup_fraction": 0.2, "precision": "auto", "batch_norm_momentum": 0.9},
}

# Each article's own settings, exactly where it states them (`recipe="article"`).
ARTICLE_RECIPES: dict[str, dict] = {
    "slp": dict(_FIVE_MODELS_ARTICLE),
    "mlp": dict(_FIVE_MODELS_ARTICLE),
    "dropout_mlp": {**_SEED_DECAY, **_FIVE_MODELS_ARTICLE},
    "cnn": dict(_FIVE_MODELS_ARTICLE),
    "cnn_linear": dict(_FIVE_MODELS_ARTICLE),
    "bn_cnn": {**_SEED_DECAY, **_FIVE_MODELS_ARTICLE},
    # No article: its recipe is mnistlab's.
    "deep_bn_cnn": dict(RECIPES["deep_bn_cnn"]),
    # 30,000 steps of 50 images on TensorFlow's 55k/5k split: 27 epochs.
    "sigmoid_mlp": dict(RECIPES["sigmoid_mlp"]),
    # model.fit(train_images, ...) on all 60,000 images, Keras' default batch of 32.
    "pool_cnn": {"epochs": 5, "batch_size": 32, "validation_size": 0},
    # A 48k/12k train/validation split.
    "tiny_mlp": {"epochs": 20, "batch_size": 32, "validation_size": 12000},
    "small_mlp": {"epochs": 100, "batch_size": 32, "validation_size": 12000},
    "ae_classifier": {"learning_rate": 1.0, "optimizer": "adadelta"},
    # No article: its recipe is mnistlab's.
    "speedrun": dict(RECIPES["speedrun"]),
}

RECIPE_NAMES = ("mnistlab", "article")

# Source article (in ../shared/seeds/ unless a paper is named) and the test accuracy its text states.
SOURCES: dict[str, tuple[str, float | None]] = {
    "slp": (FIVE_MODELS, 0.92),
    "mlp": (FIVE_MODELS, None),
    "dropout_mlp": (FIVE_MODELS, 0.97),
    "cnn": (FIVE_MODELS, None),
    "cnn_linear": (FIVE_MODELS, None),
    "bn_cnn": (FIVE_MODELS, 0.99),
    "deep_bn_cnn": ("An et al. 2020, arXiv:2008.10400", None),
    "sigmoid_mlp": ("tf1-mlp-784-300-10.txt", 0.9718),
    "pool_cnn": ("keras-cnn-99.txt", 0.9913),
    "tiny_mlp": ("workflow-and-tuning.txt", None),
    "small_mlp": ("workflow-and-tuning.txt", None),
    "ae_classifier": ("autoencoder-and-classifier.txt", None),
    "speedrun": ("mnistlab (after published MNIST speed records)", None),
}

# The test accuracy each core model's default recipe must reach as the mean of three seeds.
FLOORS = MappingProxyType({"slp": 0.920, "mlp": 0.975, "dropout_mlp": 0.972, "cnn": 0.985, "bn_cnn": 0.994})

MODEL_NAMES = tuple(RECIPES)
# The models with BatchNormalization layers: the ones `batch_norm_momentum` applies to.
BATCH_NORM_MODELS = ("bn_cnn", "deep_bn_cnn", "speedrun")
# Named sets for `run-all --models`: "core" is the five-model article's comparison (with
# cnn_linear, its literal CNN), the default of `make run-all`; "all" is the whole zoo.
CORE_MODELS = ("slp", "mlp", "dropout_mlp", "cnn", "cnn_linear", "bn_cnn")
MODEL_GROUPS = MappingProxyType({"core": CORE_MODELS, "all": MODEL_NAMES})


def check_model(name) -> str:
    """Return `name` if it is a registered model; else raise ValueError listing the known ones."""
    if name not in RECIPES:
        raise ValueError(f"No model named {name!r} found; known models: {', '.join(MODEL_NAMES)}")
    return name


def recipe(model: str, name: str = "mnistlab") -> dict:
    """The overrides of recipe `name` ("mnistlab" or "article") for `model`, a new dict.

    Raises ValueError for an unknown model or recipe name, listing the known ones.
    """
    check_model(model)
    if name not in RECIPE_NAMES:
        raise ValueError(f"recipe={name!r} is unknown; use one of {', '.join(RECIPE_NAMES)}")
    return dict((RECIPES if name == "mnistlab" else ARTICLE_RECIPES)[model])


def expand_model_names(names: str | list[str] | None) -> list[str]:
    """Model names from a list or a comma-separated string, with the groups ("core", "all")
    expanded, duplicates dropped, order kept; None or empty gives "core".

    Raises ValueError naming an unknown model (and listing the known names and groups).
    """
    if isinstance(names, str):
        names = names.split(",")
    names = [n.strip() for n in names or [] if n.strip()] or ["core"]
    expanded: list[str] = []
    for name in names:
        if name not in MODEL_GROUPS and name not in RECIPES:
            raise ValueError(f"No model named {name!r} found; known models: {', '.join(MODEL_NAMES)}; "
                             f"groups: {', '.join(MODEL_GROUPS)}")
        expanded += [m for m in MODEL_GROUPS.get(name, (name,)) if m not in expanded]
    return expanded
