"""A run's settings: one frozen, typed dataclass, built from a model's recipe plus overrides.

Pure data: nothing here imports TensorFlow or looks at the machine. What depends on the machine
(`precision="auto"`, `threads=0`, `onednn_ops=None`) is resolved when training starts
(mnistlab.machine) and recorded in config.json beside what was requested.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import typing

DATASET_NAMES = ("mnist", "fashion_mnist")
LR_SCHEDULES = ("constant", "exponential", "cosine")
OPTIMIZERS = ("adam", "adadelta")
STRATEGIES = ("default", "mirrored", "multi_worker_mirrored")
PRECISIONS = ("float32", "mixed_bfloat16", "auto")
TRAIN_IMAGES = 60000  # in both datasets' training files, checked when they are read
MAX_EPOCHS = 10_000
MAX_SEED = 2**32 - 1  # numpy's and scikit-learn's seeds are 32-bit
MAX_SHIFT_PIXELS = 13  # a shift of 14 or more can move a 28x28 digit out of its image
# A run name becomes a folder under the runs folder: letters, digits, '.', '_', '-'; no separators or '..'.
RUN_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run. Build it with `make_config`, which applies the model's
    recipe (its registry entry, mnistlab.registry) and validates; the defaults here are what a
    recipe does not change."""

    model: str = "slp"  # a registered model (mnistlab.registry): the zoo's, or one of models_from's
    recipe: str = "mnistlab"  # "mnistlab" (tuned defaults) or "article" (the source article's settings)
    # Python files (paths) or modules that register models of the user's (mnistlab.register_model),
    # imported wherever the run goes (a papermill kernel, a Dask worker). Where they are found does
    # not change a result: the config hash covers the model file's SHA-256 and the built model's
    # architecture fingerprint instead (mnistlab.architecture).
    models_from: tuple[str, ...] = ()
    dataset: str = "mnist"  # "mnist" or "fashion_mnist"
    epochs: int = 10  # full passes over the training split
    batch_size: int = 128  # images per training step
    learning_rate: float = 0.001  # the optimizer's (peak) learning rate
    # "constant"; "exponential": learning_rate * lr_decay**epoch, a staircase over steps;
    # "cosine": linear warm-up from learning_rate/10 over lr_warmup_fraction of the steps, then cosine to 0.
    lr_schedule: str = "constant"
    lr_decay: float = 1.0  # per-epoch factor of the exponential schedule
    lr_warmup_fraction: float = 0.0  # share of all training steps spent warming up (cosine schedule)
    optimizer: str = "adam"  # "adam" or "adadelta" (the autoencoder article's)
    # Share of each training target spread evenly over the classes (Szegedy et al. 2016, "Rethinking
    # the Inception architecture", section 7); 0: plain cross-entropy. Keras' loss and val_loss
    # include it; test_loss and the NLL in metrics.json are plain cross-entropy.
    label_smoothing: float = 0.0
    seed: int = 0  # seeds weights, shuffling, dropout, augmentation and the validation split
    validation_size: int = 5000  # images held out of the 60,000 training images (0: train on all)
    limit: int | None = None  # use only the first N examples of each split (smoke runs)
    l1: float = 0.0  # L1 penalty on every Dense/Conv kernel (0: off)
    l2: float = 0.0  # L2 penalty on every Dense/Conv kernel (0: off)
    early_stopping_patience: int = 0  # stop after N epochs without a better val_loss, restore the best (0: off)
    normalize: bool = True  # the model scales pixels to [0, 1]; False feeds raw [0, 255] (tuning study)
    augment: bool = False  # random rotations (±10°), shifts and zooms (±10%) of training images
    # The shifts people's own digits bring, for training images: thinner and thicker strokes,
    # rotations, shears, zooms, shifts, elastic deformation and pixel noise (mnistlab.models.
    # robust_augmentation_layers; the `robust_bn_cnn` recipe). Never MNIST-C's corruptions.
    robust_augment: bool = False
    # The share of training images given Simard et al.'s elastic deformation (2003; alpha 34 and
    # sigma 4 pixels), after `augment`'s rotations, shifts and zooms when both are on (0: none).
    # Costs about 10 s per epoch of 55,000 images on 2 cores, whatever the share. On make best's
    # recipe (deep_bn_cnn, augment, 20 epochs, seed 0) a share of 0.5 cost 0.005 of validation
    # accuracy (docs/results.md, best-levers-validation): no recipe uses it.
    elastic_augment: float = 0.0
    # Random translations of training images by whole pixels, up to this many each way (0: none):
    # cheap (no interpolation), unlike `augment`; `make speedrun-995` uses 1.
    shift_pixels: int = 0
    # BatchNormalization's moving-average momentum (models with BatchNorm only; Keras' default 0.99).
    # Training steps use each batch's statistics; this sets only the averages used at evaluation.
    batch_norm_momentum: float = 0.99
    ae_epochs: int = 10  # ae_classifier: epochs of the autoencoder's pretraining
    ae_learning_rate: float = 1.0  # ae_classifier: the autoencoder's Adadelta learning rate (original Keras')
    ae_noise_stddev: float = 0.3  # ae_classifier: Gaussian noise added to [0, 1] pixels to train denoising
    strategy: str = "default"  # tf.distribute: "default", "mirrored" or "multi_worker_mirrored"
    threads: int = 0  # TensorFlow intra-op threads (0: every core this process may use)
    steps_per_execution: int = 32  # training steps per compiled call: less Python overhead, same result
    # "float32", "mixed_bfloat16" (bfloat16 compute, float32 weights and softmax), or "auto":
    # bfloat16 where the CPU has bfloat16 units that oneDNN may use, else float32.
    precision: str = "float32"
    # TensorFlow's oneDNN operations (TF_ENABLE_ONEDNN_OPTS, read when TensorFlow starts; mnistlab
    # sets it to 1 unless the user has set it). None: as this process's TensorFlow runs; True/False:
    # required, and a run in a process started otherwise stops before it begins, saying how to start it.
    onednn_ops: bool | None = None
    deterministic: bool = False  # TF op determinism: bit-identical reruns on one machine, slower
    verbose: int = 2  # 0 silent, 1 Keras' progress bar (interactive), 2 one line per epoch

    def to_dict(self) -> dict:
        """The settings as JSON-shaped data (models_from as a list), as config.json records them."""
        return {**dataclasses.asdict(self), "models_from": list(self.models_from)}


FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))
_TYPES = typing.get_type_hints(TrainConfig)
# Proven not to change a run's history or predictions (tests/test_schedules.py): left out of
# the config hash, so runs that differ only in these count as the same config.
# models_from says where the model's file is found, not what it holds: the hash covers the file's
# SHA-256 and the architecture fingerprint instead (see config_hash).
NOT_RESULT = ("verbose", "steps_per_execution", "models_from")
# Settings that do not make a run a different experiment: the seeds of one variant differ only in these.
NOT_VARIANT = ("seed", "verbose", "steps_per_execution", "threads", "deterministic", "onednn_ops", "models_from")
RECIPE_NAMES = ("mnistlab", "article")
_validated: set = set()  # configs validated in this process: each is checked once


def _coerce(key: str, value):
    """Check (and, for strings papermill or a CLI may pass, convert) one setting's type."""
    hint = _TYPES[key]
    if typing.get_origin(hint) is tuple:  # models_from: a list (JSON, CLI) or a comma-separated string
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v.strip() for v in value):
            raise ValueError(f"{key} must be a list of file paths or module names, got {value!r}")
        return tuple(v.strip() for v in value)
    optional = type(None) in typing.get_args(hint)
    base = next(t for t in (typing.get_args(hint) or (hint,)) if t is not type(None))
    if value is None or (optional and isinstance(value, str) and value.strip().lower() == "none"):
        if optional:
            return None
        raise ValueError(f"{key} must be a {base.__name__}, not None")
    if base is int:
        if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
            value = int(value)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{key} must be an integer, got {value!r}")
        return value
    if base is bool:
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            value = value.strip().lower() == "true"
        if not isinstance(value, bool):
            raise ValueError(f"{key} must be True or False, got {value!r}")
        return value
    if base is float:
        if isinstance(value, bool):
            raise ValueError(f"{key} must be a number, got {value!r}")
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{key} must be a number, got {value!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"{key} must be finite, got {value!r}")
        return value
    if not isinstance(value, base):
        raise ValueError(f"{key} must be a {base.__name__}, got {value!r}")
    return value


def _one_of(key: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{key}={value!r} is unknown; use one of {', '.join(allowed)}")


def _in_range(key: str, value, low, high, what: str) -> None:
    if not low <= value <= high:
        raise ValueError(f"{key} must be {what}, got {value}")


def train_images(config: TrainConfig) -> int:
    """Training images a run of `config` sees per epoch (both datasets have 60,000 to split)."""
    available = TRAIN_IMAGES - config.validation_size
    return available if config.limit is None else min(config.limit, available)


def validate(config: TrainConfig) -> TrainConfig:
    """Raise ValueError, naming the setting (or both settings of an inconsistent pair) and the
    accepted values, for any invalid setting; return `config` otherwise.

    The model files of `models_from` are imported first (mnistlab.registry.load_models_from),
    so that a model of the user's is known. A config is checked once per process: a config equal
    to one validated before is returned at once.
    """
    if config not in _validated:
        _check_all(config)
        _validated.add(config)
    return config


def _check_all(config: TrainConfig) -> None:
    registry.load_models_from(config.models_from)
    entry = registry.get_entry(config.model)
    _one_of("recipe", config.recipe, RECIPE_NAMES)
    _one_of("dataset", config.dataset, DATASET_NAMES)
    _one_of("lr_schedule", config.lr_schedule, LR_SCHEDULES)
    _one_of("optimizer", config.optimizer, OPTIMIZERS)
    _one_of("strategy", config.strategy, STRATEGIES)
    _one_of("precision", config.precision, PRECISIONS)
    _in_range("epochs", config.epochs, 1, MAX_EPOCHS, f"a positive integer up to {MAX_EPOCHS}")
    _in_range("ae_epochs", config.ae_epochs, 1, MAX_EPOCHS, f"a positive integer up to {MAX_EPOCHS}")
    for key in ("batch_size", "steps_per_execution"):
        _in_range(key, getattr(config, key), 1, 2**31 - 1, "a positive integer")
    _in_range("seed", config.seed, 0, MAX_SEED, f"an integer from 0 to {MAX_SEED} (2**32 - 1)")
    _in_range("threads", config.threads, 0, 4096, "0 (every core) or a positive integer")
    _in_range("verbose", config.verbose, 0, 2, "0, 1 or 2")
    _in_range("elastic_augment", config.elastic_augment, 0.0, 1.0, "a share of the training images in [0, 1] (0: off)")
    _in_range("shift_pixels", config.shift_pixels, 0, MAX_SHIFT_PIXELS, f"0 (off) or up to {MAX_SHIFT_PIXELS} pixels")
    _in_range("early_stopping_patience", config.early_stopping_patience, 0, MAX_EPOCHS,
              "0 (off) or a positive integer")
    _in_range("validation_size", config.validation_size, 0, TRAIN_IMAGES - 1, f"in [0, {TRAIN_IMAGES})")
    for key in ("learning_rate", "ae_learning_rate"):
        if not getattr(config, key) > 0:
            raise ValueError(f"{key} must be a positive number, got {getattr(config, key)}")
    for key in ("l1", "l2", "ae_noise_stddev"):
        if getattr(config, key) < 0:
            raise ValueError(f"{key} must be a non-negative number, got {getattr(config, key)}")
    if not 0 < config.lr_decay <= 1:
        raise ValueError(f"lr_decay must be in (0, 1], got {config.lr_decay}")
    if not 0 <= config.batch_norm_momentum < 1:
        raise ValueError(f"batch_norm_momentum must be in [0, 1), got {config.batch_norm_momentum}")
    if ("batch_norm_momentum" not in entry.builder_settings
            and config.batch_norm_momentum != TrainConfig.batch_norm_momentum):
        takers = [name for name, e in registry.REGISTRY.items() if "batch_norm_momentum" in e.builder_settings]
        raise ValueError(f"batch_norm_momentum applies only to the models whose builder takes it "
                         f"({', '.join(takers)}); {config.model}'s does not: leave it out")
    if not 0 <= config.lr_warmup_fraction < 1:
        raise ValueError(f"lr_warmup_fraction must be in [0, 1) (a share of the training steps), "
                         f"got {config.lr_warmup_fraction}")
    if not 0 <= config.label_smoothing < 1:
        raise ValueError(f"label_smoothing must be in [0, 1) (the share of each target spread over the "
                         f"classes; 0: off), got {config.label_smoothing}")
    train_size = TRAIN_IMAGES - config.validation_size
    if config.limit is not None and not 1 <= config.limit <= train_size:
        raise ValueError(f"limit must be a positive integer up to {train_size} (the training images left "
                         f"by validation_size={config.validation_size}) or None (all data), got {config.limit}")
    if config.batch_size > train_images(config):
        raise ValueError(f"batch_size={config.batch_size} is larger than the {train_images(config)} training "
                         f"images left by limit={config.limit} and validation_size={config.validation_size}: "
                         "not one full batch per epoch; lower batch_size or raise limit")
    if config.early_stopping_patience and config.validation_size == 0:
        raise ValueError(f"early_stopping_patience={config.early_stopping_patience} needs a validation split, "
                         "but validation_size=0: set validation_size > 0 or early_stopping_patience=0")


def check_overrides(overrides: dict) -> dict:
    """`overrides` with every value checked and converted to its setting's type; None values of
    settings that cannot be None are dropped ("keep the recipe's value"). Raises ValueError for an
    unknown key (naming it and the known keys) or a wrong type."""
    unknown = sorted(set(overrides) - set(FIELDS))
    if unknown:
        raise ValueError(f"Unknown config key(s) {', '.join(map(repr, unknown))}; known keys: {', '.join(FIELDS)}")
    return {key: _coerce(key, value) for key, value in overrides.items()
            if value is not None or type(None) in typing.get_args(_TYPES[key])}


def make_config(model: str = "slp", **overrides) -> TrainConfig:
    """The run config of `model`: TrainConfig's defaults, then its recipe (`recipe="mnistlab"`,
    the default, or `"article"`) from its registry entry, then `overrides`.

    `models_from` (files or modules registering models of the user's) is imported first; a model
    registered from a file or module that `models_from` does not name yet is added to it, so that
    the config carries what another process needs to build the model. Overrides whose value is
    None mean "keep the recipe's value" for settings that cannot be None (so a notebook or CLI can
    pass every parameter through). Raises ValueError for an unknown model, an unknown key (naming
    it and the known keys), a wrong type or an invalid value.
    """
    explicit = check_overrides(overrides)
    if not isinstance(model, str):
        raise ValueError(f"model must be a string naming a registered model, got {model!r}")
    models_from = explicit.get("models_from", ())
    registry.load_models_from(models_from)
    entry = registry.get_entry(model)
    if entry.models_from is not None and entry.models_from not in models_from:
        explicit["models_from"] = (*models_from, entry.models_from)
    recipe_name = explicit.get("recipe", TrainConfig.recipe)
    _one_of("recipe", recipe_name, RECIPE_NAMES)
    config = dataclasses.replace(TrainConfig(model=model), **entry.recipe_for(recipe_name))
    return validate(dataclasses.replace(config, **explicit))


def config_from_dict(settings: dict) -> TrainConfig:
    """The TrainConfig of a mapping of its fields (a notebook's `config` parameter, JSON from
    papermill): a complete config (a run-all plan's) is taken as it is, converted and validated,
    nothing re-derived; a partial one (interactive use) is completed from the model's recipe
    (make_config). Raises ValueError naming a bad key or value."""
    if not isinstance(settings, dict):
        raise ValueError(f"config must be a mapping of config keys to values, got {type(settings).__name__}")
    settings = check_overrides(settings)
    if set(settings) == set(FIELDS):
        return validate(TrainConfig(**settings))
    return make_config(**settings)


def config_from_record(settings: dict) -> TrainConfig:
    """The TrainConfig of a config.json's "config" mapping, validated like user input
    (a run folder from elsewhere is not trusted). Raises ValueError naming the bad key."""
    if not isinstance(settings, dict):
        raise ValueError(f"a recorded config must be a mapping, got {type(settings).__name__}")
    if "batch_norm_momentum" not in settings and settings.get("model") in ("bn_cnn", "deep_bn_cnn", "speedrun"):
        # Recorded before the setting existed: what the zoo's builders used then.
        settings = {**settings, "batch_norm_momentum": 0.9 if settings["model"] == "speedrun" else 0.99}
    return make_config(**settings)


def check_run_name(run_name: str) -> str:
    """Return `run_name` if it is a safe single folder name; else raise ValueError."""
    if not isinstance(run_name, str) or not RUN_NAME_PATTERN.match(run_name) or ".." in run_name:
        raise ValueError(
            f"run_name={run_name!r} is not a plain folder name: use letters, digits, '.', '_' and "
            "'-' only (no path separators, no '..', at most 128 characters)"
        )
    return run_name


def effective(config: TrainConfig, resolved: dict) -> dict:
    """The settings that ran: `config` with the machine's resolved values (precision, threads)
    in place of what was requested."""
    settings = config.to_dict()
    settings.update({k: v for k, v in resolved.items() if k in settings})
    return settings


def _digest(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def _architecture_key(architecture: dict | None) -> dict:
    """What of a run's architecture record identifies its result: the built model's fingerprint
    and, for a model of the user's, its file's SHA-256 (mnistlab.architecture)."""
    architecture = architecture or {}
    return {"fingerprint": architecture.get("fingerprint"), "file_sha256": architecture.get("file_sha256")}


def config_hash(config: TrainConfig, resolved: dict, architecture: dict | None) -> str:
    """12 hex digits identifying everything that can change a run's result: every setting as it
    ran (resolved precision and thread count) except NOT_RESULT, the architecture's fingerprint
    and the model file's SHA-256 (so editing a model file, or a zoo builder, is a new config)."""
    settings = {k: v for k, v in effective(config, resolved).items() if k not in NOT_RESULT}
    return _digest({**settings, "architecture": _architecture_key(architecture)})


def variant_hash(config: TrainConfig, resolved: dict, architecture: dict | None) -> str:
    """12 hex digits shared by the runs of one variant (the seeds of one experiment): every
    setting as it ran except NOT_VARIANT, and the architecture."""
    settings = {k: v for k, v in effective(config, resolved).items() if k not in NOT_VARIANT}
    return _digest({**settings, "architecture": _architecture_key(architecture)})


def describe_variant(config: TrainConfig) -> str:
    """The model's name plus every setting the user asked for that differs from its recipe:
    "tiny_mlp", "tiny_mlp[normalize=False]", "bn_cnn[augment=True,epochs=30]",
    "mlp[recipe=article]". What the machine resolved (precision, threads) is not part of the label:
    run records keep it beside the label, and a comparison names it only where two runs of one
    label differ in it. Pure data: computed when the run is recorded, never again."""
    default = make_config(config.model, recipe=config.recipe, models_from=config.models_from).to_dict()
    requested = config.to_dict()
    changed = [f"{k}={requested[k]}" for k in FIELDS
               if k not in NOT_VARIANT and k not in ("model", "recipe") and requested[k] != default[k]]
    if config.recipe != TrainConfig.recipe:
        changed.insert(0, f"recipe={config.recipe}")
    return config.model + (f"[{','.join(changed)}]" if changed else "")


# The settings a learner reads first, in this order (explain_config).
HEADLINE_SETTINGS = ("model", "recipe", "dataset", "epochs", "batch_size", "optimizer", "learning_rate", "lr_schedule",
                     "seed", "validation_size", "limit", "precision")


def explain_config(config: TrainConfig, requested: dict | None = None) -> list[dict]:
    """The config as a learner reads it: the headline settings, then every other setting that
    differs from TrainConfig's defaults; each with its value and where it comes from ("you" for a
    key in `requested`, "recipe" for one the model's recipe sets, else "default"). The schedule is
    written out in words. Rows: {"setting", "value", "from"}."""
    requested = requested or {}
    recipe = registry.get_entry(config.model).recipe_for(config.recipe)
    defaults = TrainConfig()
    keys = list(HEADLINE_SETTINGS) + [k for k in FIELDS if k not in HEADLINE_SETTINGS
                                      and getattr(config, k) != getattr(defaults, k)]
    rows = []
    for key in keys:
        value = getattr(config, key)
        if key == "lr_schedule":
            value = describe_schedule(config)
        elif isinstance(value, tuple):
            value = ", ".join(value) or "-"
        source = "you" if key in requested else "recipe" if key in recipe else "default"
        rows.append({"setting": key, "value": str(value), "from": source})
    return rows


def describe_schedule(config: TrainConfig) -> str:
    """The learning-rate schedule in words, e.g. "0.01 x 0.6^epoch (staircase)"."""
    if config.lr_schedule == "exponential":
        return f"{config.learning_rate:g} x {config.lr_decay:g}^epoch (staircase)"
    if config.lr_schedule == "cosine":
        warmup = (f"warm-up over {config.lr_warmup_fraction:.0%} of steps to {config.learning_rate:g}, "
                  if config.lr_warmup_fraction else f"{config.learning_rate:g}, ")
        return warmup + "cosine to 0 (per step)"
    return f"{config.learning_rate:g} constant"


from mnistlab import registry  # noqa: E402 -- after the definitions the zoo's registration uses
