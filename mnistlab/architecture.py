"""What a run's model is, checked and recorded before any training: the builder contract
(a keras.Model of the right output shape, probabilities or logits as its entry says) and the
architecture record that config.json keeps and the config hash covers (a fingerprint of the built
model's layer configurations, its parameter count, the builder and, for a user's model, its origin
and file digest)."""

from __future__ import annotations

import functools
import hashlib
import json
import re
import traceback
from pathlib import Path

import keras
import numpy as np

from mnistlab.config import TrainConfig, config_hash, describe_variant, variant_hash
from mnistlab.registry import ModelEntry, get_entry

# The fix every contract failure ends with.
CONTRACT = ("a builder takes (input_shape=(28, 28), num_classes=10) and returns an uncompiled keras.Model "
            "mapping (batch, 28, 28) float32 images in [0, 1] to (batch, num_classes)")


class BuilderError(ValueError):
    """A model's builder breaks the contract: one line naming the builder, where it is (file and
    line for an exception) and the fix. `details` holds the traceback, for a log file."""

    def __init__(self, message: str, details: str = ""):
        super().__init__(message)
        self.details = details


def builder_kwargs(config: TrainConfig, entry: ModelEntry) -> dict:
    """The config settings the entry's builder takes as keyword arguments (batch_norm_momentum)."""
    return {key: getattr(config, key) for key in entry.builder_settings}


def _where(entry: ModelEntry, error: BaseException | None = None) -> str:
    """The builder and where it is: "build_lenet5 (examples/lenet5.py, line 12)"."""
    qualname = entry.builder_name.partition(":")[2]
    path = (entry.origin or {}).get("path")
    line = None
    if error is not None and path:
        for frame in traceback.extract_tb(error.__traceback__):
            if Path(frame.filename).resolve() == Path(path):
                line = frame.lineno
    place = entry.where + (f", line {line}" if line else "")
    return f"{qualname} ({place})"


def build_body(entry: ModelEntry, input_shape=(28, 28), num_classes: int = 10, **kwargs) -> keras.Model:
    """The entry's builder called and checked: a keras.Model mapping (batch, *input_shape) float32
    to (batch, num_classes), rows summing to 1 unless the entry says its outputs are logits.
    Raises BuilderError (one line, the traceback in `details`) if the builder raises or breaks
    the contract."""
    try:
        model = entry.build_fn()(input_shape=input_shape, num_classes=num_classes, **kwargs)
    except Exception as e:  # noqa: BLE001 -- a user's builder: any error is reported as one line
        raise BuilderError(f"model {entry.name!r}: {_where(entry, e)} raised {type(e).__name__}: {e}; fix the builder "
                           f"({CONTRACT})", traceback.format_exc()) from None
    if not isinstance(model, keras.Model):
        raise BuilderError(f"model {entry.name!r}: {_where(entry)} returned a {type(model).__name__}, not a "
                           f"keras.Model; {CONTRACT}")
    x = np.random.default_rng(0).random((2, *input_shape), dtype=np.float32)
    # The numbers are checked in float32 (the architecture record is built so, before any run); under
    # a bfloat16 policy the shapes are traced without running a kernel (an AVX2 CPU has none for it).
    numeric = keras.mixed_precision.global_policy().name == "float32"
    try:
        if numeric:
            outputs = keras.ops.convert_to_numpy(model(x, training=False))
        else:
            outputs = np.zeros(tuple(model.compute_output_spec(keras.KerasTensor(x.shape, dtype="float32")).shape))
    except Exception as e:  # noqa: BLE001
        raise BuilderError(f"model {entry.name!r}: {_where(entry, e)}'s model cannot take a (batch, "
                           f"{', '.join(map(str, input_shape))}) float32 batch ({type(e).__name__}: {e}); {CONTRACT}",
                           traceback.format_exc()) from None
    if outputs.shape != (2, num_classes):
        raise BuilderError(f"model {entry.name!r}: {_where(entry)}'s model maps a batch of 2 images to shape "
                           f"{tuple(outputs.shape)}, not (2, {num_classes}); end it with "
                           "Dense(num_classes), using the builder's num_classes argument")
    if numeric and entry.outputs == "probabilities" and not np.allclose(outputs.sum(axis=1), 1.0, atol=1e-3):
        raise BuilderError(f"model {entry.name!r}: {_where(entry)}'s outputs do not sum to 1 (not probabilities); "
                           "end the model with a softmax, or register it with outputs=\"logits\"")
    return model


def _generated_names(model: keras.Model) -> dict[str, str]:
    """Keras' generated layer names ("dense_3", "sequential_1", "input_layer_2") in the model, each
    mapped to its position: two builds of one architecture differ only in these."""
    from keras.src.utils.naming import to_snake_case

    layers = list(model._flatten_layers(include_self=True, recursive=True))
    names = {}
    for i, layer in enumerate(layers):
        if re.fullmatch(rf"{re.escape(to_snake_case(type(layer).__name__))}(_\d+)?", layer.name):
            names[layer.name] = f"<layer {i}>"
    for i, tensor in enumerate(getattr(model, "inputs", None) or []):  # a functional model's Input tensors
        name = getattr(tensor, "name", "")
        if re.fullmatch(r"(keras_tensor|input_layer)(_\d+)?", name or ""):
            names.setdefault(name, f"<input {i}>")
    return names


def _canonical(value, names: dict[str, str]):
    if isinstance(value, dict):
        return {k: _canonical(v, names) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v, names) for v in value]
    if isinstance(value, str):
        return names.get(value, value)
    return value


def fingerprint(model: keras.Model) -> str:
    """16 hex digits of the SHA-256 of the model's architecture: every layer's class and
    configuration (and a Sequential's or functional model's wiring), Keras' generated layer names
    left out, and the parameter count. Two builds of one builder give the same fingerprint; a
    change to any layer (width, activation, initialiser) gives another."""
    names = _generated_names(model)
    layers = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        try:
            config = layer.get_config()
        except NotImplementedError:
            config = {}
        layers.append({"class": f"{type(layer).__module__}.{type(layer).__qualname__}", "config": config,
                       "weights": [list(w.shape) for w in layer.weights]})
    try:
        wiring = model.get_config()  # Sequential and functional models: how the layers connect
    except NotImplementedError:  # a subclassed model: its layers are what is known
        wiring = {}
    payload = {"model": f"{type(model).__module__}.{type(model).__qualname__}", "wiring": wiring, "layers": layers,
               "params": int(model.count_params())}
    text = json.dumps(_canonical(payload, names), sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=256)
def _architecture(name: str, builder_id: int, file_sha256: str | None, kwargs: tuple, input_shape: tuple,
                  num_classes: int) -> dict:
    from mnistlab.train import dtype_policy

    entry = get_entry(name)
    with dtype_policy("float32"):  # the architecture, whatever precision a run resolves (that is hashed apart)
        model = build_body(entry, input_shape, num_classes, **dict(kwargs))
    return {"fingerprint": fingerprint(model), "params": int(model.count_params()),
            "flops_per_image": forward_flops(model)}


def forward_flops(model: keras.Model) -> int:
    """FLOPs of one image's forward pass through the model's Dense and convolution layers (2 per
    multiply-add; a convolution's output size read from its built output, else its input's size):
    the cost that the time-left estimates and the bench scale by. Other layers count as their
    parameters (a rough lower bound for layers Keras cannot describe)."""
    flops = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if list(layer._flatten_layers(include_self=False, recursive=False)):
            continue  # a container: its layers are counted themselves
        kernel = getattr(layer, "kernel", None)
        if isinstance(layer, keras.layers.Dense):
            flops += 2 * int(np.prod(kernel.shape))
        elif kernel is not None and len(kernel.shape) >= 3:  # Conv1D/2D/3D: kernel x output positions
            try:
                positions = int(np.prod(layer.output.shape[1:-1]))
            except (AttributeError, ValueError, TypeError):
                positions = 28 * 28
            flops += 2 * int(np.prod(kernel.shape)) * positions
        else:
            flops += 2 * int(layer.count_params()) if layer.built else 0
    return flops


def describe(config: TrainConfig, input_shape=(28, 28), num_classes: int = 10) -> dict:
    """The architecture record of a run of `config` (config.json's "model"): name, builder
    ("module:qualname"), origin (None for the zoo; else the file as given and resolved and its
    SHA-256, or the module), file_sha256, outputs, reported_accuracy, fingerprint and params (of
    the builder's model, float32, before mnistlab's preprocessing). The builder is called and
    checked (see build_body) once per process and setting. Raises BuilderError."""
    entry = get_entry(config.model)
    origin = dict(entry.origin) if entry.origin else None
    file_sha256 = (origin or {}).get("sha256")
    built = _architecture(entry.name, id(entry.builder), file_sha256,
                          tuple(sorted(builder_kwargs(config, entry).items())), tuple(input_shape), num_classes)
    return {"name": entry.name, "builder": entry.builder_name, "origin": origin, "file_sha256": file_sha256,
            "outputs": entry.outputs, "source": entry.source, "reported_accuracy": entry.reported_accuracy,
            **built}


def identity(config: TrainConfig, resolved: dict, architecture: dict) -> dict:
    """The hashes and label of a run: config_hash, variant and variant_hash."""
    return {"config_hash": config_hash(config, resolved, architecture), "variant": describe_variant(config),
            "variant_hash": variant_hash(config, resolved, architecture)}


def planned_hash(config: TrainConfig) -> str:
    """The config hash a run of `config` started now, in a fresh process here, will record."""
    from mnistlab.machine import resolve

    return config_hash(config, resolve(config), describe(config))
