"""A run's settings: one frozen, typed dataclass, built from a model's recipe plus overrides."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import re
import typing

from mnistlab.data import DATASETS
from mnistlab.models import get_spec

LR_SCHEDULES = ("constant", "exponential", "cosine")
OPTIMIZERS = ("adam", "adadelta")
STRATEGIES = ("default", "mirrored", "multi_worker_mirrored")
PRECISIONS = ("float32", "mixed_bfloat16")  # and "auto" in a recipe or override, see auto_precision
TRAIN_IMAGES = 60000  # in both datasets' training files, checked when they are read
# A run name becomes a folder under runs/: letters, digits, '.', '_', '-'; no separators or '..'.
RUN_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run. Build it with `make_config`, which validates.

    The defaults of `epochs`, `batch_size`, `learning_rate`, `lr_schedule`, `lr_decay`,
    `lr_warmup_epochs`, `optimizer` and `precision` come from the model's recipe
    (mnistlab.models.MODELS[model].recipe).
    """

    model: str = "slp"
    dataset: str = "mnist"  # "mnist" or "fashion_mnist"
    epochs: int = 10  # full passes over the training split
    batch_size: int = 128  # images per training step
    learning_rate: float = 0.001  # Adam's (initial) learning rate
    lr_schedule: str = "constant"  # "constant"; "exponential": learning_rate * lr_decay**epoch;
    # "cosine": linear warm-up to learning_rate over lr_warmup_epochs, then cosine decay to 0, per step
    lr_decay: float = 1.0  # per-epoch factor of the exponential schedule
    lr_warmup_epochs: float = 0.0  # warm-up of the cosine schedule, in epochs
    seed: int = 0  # seeds weights, shuffling, dropout and the validation split
    validation_size: int = 5000  # images held out of the 60,000 training images
    limit: int | None = None  # use only the first N examples of each split (smoke runs)
    shuffle_buffer: int = 5000  # tf.data shuffle buffer, as in the seed
    optimizer: str = "adam"  # "adam" or "adadelta" (the autoencoder article's)
    l1: float = 0.0  # L1 penalty on every Dense/Conv kernel (0: off)
    l2: float = 0.0  # L2 penalty on every Dense/Conv kernel (0: off)
    early_stopping_patience: int = 0  # stop after N epochs without a better val_loss and restore the best weights (0: off)
    normalize: bool = True  # scale pixels to [0, 1]; False feeds raw [0, 255] (tuning study only)
    augment: bool = False  # random rotations (±10°), shifts and zooms (±10%) of training images
    strategy: str = "default"  # tf.distribute: "default", "mirrored" or "multi_worker_mirrored"
    threads: int = 0  # TensorFlow intra-op threads (0: all cores); run-all sets cores/WORKERS
    steps_per_execution: int = 32  # training steps per compiled call: less Python overhead, same result
    # Keras dtype policy: "mixed_bfloat16" computes in bfloat16 with float32 weights and a float32
    # softmax; fast only on CPUs with bfloat16 units (AMX, AVX512_BF16) or recent GPUs.
    precision: str = "float32"
    verbose: int = 2  # Keras fit verbosity: 1 progress bar (interactive), 2 one line per epoch
    deterministic: bool = False  # TF op determinism: bit-identical reruns on one machine, slower

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_TYPES = typing.get_type_hints(TrainConfig)


def _coerce(key: str, value):
    """Check (and, for strings papermill or a CLI may pass, convert) one setting's type."""
    hint = _TYPES[key]
    optional = type(None) in typing.get_args(hint)
    base = next(t for t in (typing.get_args(hint) or (hint,)) if t is not type(None))
    if value is None:
        if optional:
            return None
        raise ValueError(f"{key} must be a {base.__name__}, not None")
    if base is int:
        if isinstance(value, bool):
            raise ValueError(f"{key} must be an integer, got {value!r}")
        if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
            value = int(value)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int):
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


def validate(config: TrainConfig) -> TrainConfig:
    """Raise ValueError, naming the setting and the accepted values, for any invalid setting."""
    get_spec(config.model)  # unknown model: lists the known ones
    if config.dataset not in DATASETS:
        raise ValueError(f"dataset={config.dataset!r} is unknown; known datasets: {', '.join(DATASETS)}")
    if config.threads < 0:
        raise ValueError(f"threads must be 0 (all cores) or a positive integer, got {config.threads}")
    for key in ("epochs", "batch_size", "shuffle_buffer", "steps_per_execution"):
        if getattr(config, key) < 1:
            raise ValueError(f"{key} must be a positive integer, got {getattr(config, key)}")
    if not config.learning_rate > 0:
        raise ValueError(f"learning_rate must be a positive number, got {config.learning_rate}")
    if config.lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule={config.lr_schedule!r} is unknown; use one of {', '.join(LR_SCHEDULES)}")
    if not 0 <= config.lr_warmup_epochs < config.epochs:
        raise ValueError(f"lr_warmup_epochs must be in [0, epochs={config.epochs}), got {config.lr_warmup_epochs}")
    if not 0 < config.lr_decay <= 1:
        raise ValueError(f"lr_decay must be in (0, 1], got {config.lr_decay}")
    if config.strategy not in STRATEGIES:
        raise ValueError(f"strategy={config.strategy!r} is unknown; use one of {', '.join(STRATEGIES)}")
    if config.precision not in PRECISIONS:
        raise ValueError(f"precision={config.precision!r} is unknown; use one of {', '.join(PRECISIONS)}, auto")
    if config.optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer={config.optimizer!r} is unknown; use one of {', '.join(OPTIMIZERS)}")
    for key in ("l1", "l2"):
        if getattr(config, key) < 0:
            raise ValueError(f"{key} must be a non-negative number, got {getattr(config, key)}")
    if config.early_stopping_patience < 0:
        raise ValueError(f"early_stopping_patience must be 0 (off) or a positive integer, "
                         f"got {config.early_stopping_patience}")
    if config.early_stopping_patience and config.validation_size == 0:
        raise ValueError("early_stopping_patience needs a validation split: set validation_size > 0")
    if config.seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {config.seed}")
    if not 0 <= config.validation_size < TRAIN_IMAGES:
        raise ValueError(f"validation_size must be in [0, {TRAIN_IMAGES}), got {config.validation_size}")
    train_size = TRAIN_IMAGES - config.validation_size
    if config.limit is not None and not 1 <= config.limit <= train_size:
        raise ValueError(f"limit must be a positive integer up to {train_size} (the training images left "
                         f"after the validation split) or None (all data), got {config.limit}")
    if config.verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 0, 1 or 2, got {config.verbose}")
    return config


def make_config(model: str = "slp", **overrides) -> TrainConfig:
    """The run config of `model`: its recipe's defaults, then `overrides`.

    Overrides whose value is None mean "keep the default" for settings that cannot be None
    (so a notebook or CLI can pass every parameter through). Raises ValueError for an unknown
    model, an unknown key (naming it and the known keys), a wrong type or an invalid value.
    """
    unknown = sorted(set(overrides) - set(_FIELDS))
    if unknown:
        raise ValueError(f"Unknown config key(s) {', '.join(map(repr, unknown))}; "
                         f"known keys: {', '.join(_FIELDS)}")
    if not isinstance(model, str):
        raise ValueError(f"model must be a string naming a registered model, got {model!r}")
    recipe = get_spec(model).recipe
    values = {"model": model, **{k: getattr(recipe, k) for k in
                                 ("epochs", "batch_size", "learning_rate", "lr_schedule", "lr_decay",
                                  "lr_warmup_epochs", "optimizer", "precision")}}
    for key, value in overrides.items():
        if value is None and type(None) not in typing.get_args(_TYPES[key]):
            continue
        values[key] = _coerce(key, value)
    if values["precision"] == "auto":
        values["precision"] = auto_precision()
    if overrides.get("lr_warmup_epochs") is None and values["lr_warmup_epochs"] >= values.get("epochs", 1) >= 1:
        # A short run (a smoke test) keeps the recipe's shape: warm up over a tenth of it.
        values["lr_warmup_epochs"] = values["epochs"] / 10
    return validate(TrainConfig(**values))


@functools.lru_cache(maxsize=None)  # make_config runs for every run listed: read the CPU's flags once
def auto_precision(cpuinfo: str = "/proc/cpuinfo") -> str:
    """"mixed_bfloat16" on a CPU-only machine whose CPU has bfloat16 matrix units (the
    `amx_bf16` or `avx512_bf16` flags of Linux's /proc/cpuinfo), else "float32".

    There, oneDNN runs bfloat16 convolutions on those units: measured on this project's machine,
    `cnn` trains about 1.6x and `bn_cnn` (with its fused BatchNorm) about 1.35x faster than in
    float32 at the same accuracy (`make bench-levers`, README, issue #6). Elsewhere bfloat16 is emulated and slower, so float32 stays.
    """
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        return "float32"
    try:
        flags = set(open(cpuinfo).read().split())
    except OSError:
        return "float32"
    return "mixed_bfloat16" if flags & {"amx_bf16", "avx512_bf16"} else "float32"


def check_run_name(run_name: str) -> str:
    """Return `run_name` if it is a safe single folder name; else raise ValueError."""
    if not isinstance(run_name, str) or not RUN_NAME_PATTERN.match(run_name) or ".." in run_name:
        raise ValueError(
            f"run_name={run_name!r} is not a plain folder name: use letters, digits, '.', '_' and "
            "'-' only (no path separators, no '..', at most 128 characters)"
        )
    return run_name



_NOT_RESULT = ("verbose", "steps_per_execution", "threads")  # the strategy can change results (batch statistics)


# Keys added after runs were recorded: left out of the hash at their default, so the
# earlier runs keep their hashes (and `run-all` still skips them).
_HASH_OMITS_DEFAULT = {"precision": "float32"}


def config_hash(config: TrainConfig) -> str:
    """12 hex digits identifying everything that changes a run's result (not `verbose` nor
    `steps_per_execution`, which change only how it is shown and dispatched)."""
    settings = {k: v for k, v in config.to_dict().items()
                if k not in _NOT_RESULT and _HASH_OMITS_DEFAULT.get(k, object()) != v}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


# Settings that do not make a run a different experiment.
_NOT_VARIANT = ("model", "seed", "verbose", "deterministic", "steps_per_execution", "threads")


def describe_variant(settings: dict) -> str:
    """The model's name, plus every setting that differs from its recipe's default:
    "tiny_mlp", "tiny_mlp[normalize=False]", "bn_cnn[augment=True,epochs=30]". Runs of one
    variant (with different seeds) are comparable; runs of different variants are not averaged."""
    try:
        default = make_config(settings["model"]).to_dict()
    except (KeyError, ValueError):
        return str(settings.get("model"))
    changed = [f"{k}={settings[k]}" for k in sorted(settings)
               if k not in _NOT_VARIANT and k in default and settings[k] != default[k]]
    return settings["model"] + (f"[{','.join(changed)}]" if changed else "")
