"""Exports of trained models: TF Serving's versioned SavedModel layout, and the 784-300-10
network's weights as the CSV files of ../shared/seeds/tf1-mlp-784-300-10.txt with a pure-numpy
predictor that reads them (what a JavaScript app would reimplement)."""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np


def export_serving(model: keras.Model, models_dir: str | os.PathLike, name: str, version: int = 1) -> Path:
    """Write `model` as a SavedModel for TF Serving at `models_dir/<name>/<version>/`.

    The `serve` signature takes raw pixels, images (N, 28, 28) float32 in [0, 255] (the model
    scales them itself; (N, 784) in the units its first layer expects for a sub-model whose input
    is flat), and returns class probabilities (N, 10). Raises FileExistsError rather than
    overwrite an existing version.
    """
    if not isinstance(version, int) or version < 1:
        raise ValueError(f"version must be a positive integer (TF Serving's folder name), got {version!r}")
    target = Path(models_dir) / name / str(version)
    if target.exists():
        raise FileExistsError(f"{target} exists; TF Serving versions are immutable: use version {version + 1}")
    target.parent.mkdir(parents=True, exist_ok=True)
    model.export(str(target), format="tf_saved_model", verbose=False)
    return target


def export_theta(model: keras.Model, directory: str | os.PathLike) -> tuple[Path, Path]:
    """Write the two Dense layers of a 784-H-10 model as `theta1.csv` ((1 + 784) x H: the bias
    row, then the weights) and `theta2.csv` ((1 + H) x 10), as the article does.

    Raises ValueError for a model that is not Flatten -> Dense(sigmoid) -> Dense(softmax).
    """
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    if len(dense) != 2 or dense[0].activation.__name__ != "sigmoid":
        raise ValueError(f"theta export needs a 784-H-10 sigmoid network (sigmoid_mlp), not {model.name!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, layer in enumerate(dense, 1):
        weights, bias = (np.asarray(v) for v in layer.get_weights())
        path = directory / f"theta{i}.csv"
        np.savetxt(path, np.vstack([bias.reshape(1, -1), weights]), delimiter=",")
        paths.append(path)
    return paths[0], paths[1]


def load_theta(directory: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read theta1.csv and theta2.csv: (785, H) and (H + 1, 10) float64."""
    directory = Path(directory)
    return (np.loadtxt(directory / "theta1.csv", delimiter=",", ndmin=2),
            np.loadtxt(directory / "theta2.csv", delimiter=",", ndmin=2))


def predict_theta(theta1: np.ndarray, theta2: np.ndarray, x: np.ndarray, normalize: bool = True) -> np.ndarray:
    """Class probabilities (N, 10) for raw pixels x (N, 28, 28) or (N, 784) in [0, 255], uint8
    or float, using only numpy: scale to [0, 1] (as the model does; not with `normalize=False`,
    the run's setting), then sigmoid(x W1 + b1) W2 + b2, then softmax."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1) / (255.0 if normalize else 1.0)
    hidden = 1.0 / (1.0 + np.exp(-(x @ theta1[1:] + theta1[0])))
    logits = hidden @ theta2[1:] + theta2[0]
    logits -= logits.max(axis=1, keepdims=True)  # stable softmax
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)
