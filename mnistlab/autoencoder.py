"""The two-model pipeline of ../shared/seeds/autoencoder-and-classifier.txt: a denoising
autoencoder (784 -> code -> 784, tanh, mean squared error, Adadelta) trained first, then a
tanh classifier trained on the autoencoder's outputs.

Adadelta's learning rate is the article's pitfall: the original stand-alone Keras defaulted
to 1.0, tf.keras (and Keras 3) default to 0.001, with which the article's models "flat out
refused to converge". mnistlab's recipe sets 1.0 for both models, explicitly (`learning_rate`
and `ae_learning_rate`; tests/test_autoencoder.py shows both rates side by side).
"""

from __future__ import annotations

from pathlib import Path

import keras
import matplotlib.pyplot as plt
import numpy as np
from keras import layers

CODE_UNITS = 64  # size of the compressed code (architecture)
HIDDEN_UNITS = 256


def build_autoencoder(input_dim: int = 784, code_units: int = CODE_UNITS) -> keras.Model:
    """784 -> 256 -> 64 (code) -> 256 -> 784, tanh throughout (the article's activation);
    maps (batch, 784) float32 in [0, 1] to (batch, 784). 435,536 parameters."""
    return keras.Sequential([
        keras.Input(shape=(input_dim,)),
        layers.Dense(HIDDEN_UNITS, activation="tanh"),
        layers.Dense(code_units, activation="tanh"),  # the compressed code
        layers.Dense(HIDDEN_UNITS, activation="tanh"),
        layers.Dense(input_dim, activation="tanh"),
    ], name="autoencoder")


def build_classifier(input_dim: int = 784, num_classes: int = 10) -> keras.Model:
    """The article's "simple tanh activated deep neural network": 784 -> 256 -> 128 (tanh) ->
    softmax. 235,146 parameters for 10 classes."""
    return keras.Sequential([
        keras.Input(shape=(input_dim,)),
        layers.Dense(256, activation="tanh"),
        layers.Dense(128, activation="tanh"),
        layers.Dense(num_classes, activation="softmax", dtype="float32"),  # float32 under mixed precision
    ], name="classifier")


def build_ae_classifier(input_shape=(28, 28), num_classes=10) -> keras.Model:
    """Image -> Flatten -> autoencoder -> classifier, as one model of (batch, 28, 28) float32
    in [0, 1] -> (batch, num_classes). 670,682 parameters.

    Training first runs `pretrain_autoencoder` (a stage of mnistlab.train), which trains and
    freezes the autoencoder; the main fit then trains only the classifier, on the autoencoder's
    outputs. Recipe: Adadelta at 1.0 for both, 10 + 10 epochs, batch 128. The article reports a
    reconstruction loss of about 0.025 and no test accuracy.
    """
    input_dim = int(np.prod(input_shape))
    return keras.Sequential([
        keras.Input(shape=input_shape),
        layers.Flatten(),
        build_autoencoder(input_dim),
        build_classifier(input_dim, num_classes),
    ], name="ae_classifier")


def add_noise(x: np.ndarray, rng: np.random.Generator, stddev: float, high: float = 1.0) -> np.ndarray:
    """x: (N, 784) float32 in [0, high] -> the same plus Gaussian noise of `stddev`, clipped to [0, high]."""
    return np.clip(x + rng.normal(0.0, stddev, size=x.shape).astype(np.float32), 0.0, high)


def pretrain_autoencoder(model: keras.Model, data, config, run_path: Path) -> dict:
    """Train `model`'s autoencoder layer to map noisy training images to clean ones
    (`config.ae_epochs` epochs of Adadelta at `config.ae_learning_rate`, Gaussian noise of
    `config.ae_noise_stddev` in [0, 1] pixel units), freeze it, and write `ae_gallery.png`
    (inputs, noisy inputs, reconstructions) into `run_path`.

    The autoencoder sees what it sees inside the model: flattened pixels, scaled to [0, 1]
    unless `config.normalize` is False. Returns the metrics it adds to metrics.json:
    reconstruction MSE on clean and on noisy test images (in [0, 1] units).
    """
    autoencoder = model.get_layer("autoencoder")
    high = 1.0 if config.normalize else 255.0
    rng = np.random.default_rng(config.seed)
    flat = lambda x: x.reshape(len(x), -1).astype(np.float32) * (high / 255.0)  # noqa: E731
    noise = config.ae_noise_stddev * high
    x_train, x_val, x_test = flat(data.x_train), flat(data.x_val), flat(data.x_test)
    autoencoder.compile(optimizer=keras.optimizers.Adadelta(learning_rate=config.ae_learning_rate), loss="mse")
    validation = (add_noise(x_val, rng, noise, high), x_val) if len(x_val) else None
    autoencoder.fit(add_noise(x_train, rng, noise, high), x_train, epochs=config.ae_epochs,
                    batch_size=config.batch_size, validation_data=validation, verbose=0)
    autoencoder.trainable = False  # the classifier's fit must not change it
    noisy_test = add_noise(x_test, rng, noise, high)
    reconstructed = autoencoder.predict(noisy_test, verbose=0)
    clean = autoencoder.predict(x_test, verbose=0)
    fig = plot_gallery(x_test[:10] / high, noisy_test[:10] / high, reconstructed[:10] / high, data.x_test.shape[1:])
    fig.savefig(run_path / "ae_gallery.png", dpi=100)
    plt.close(fig)
    return {"reconstruction_mse": float(np.mean(((clean - x_test) / high) ** 2)),
            "denoising_mse": float(np.mean(((reconstructed - x_test) / high) ** 2))}


def plot_gallery(clean, noisy, reconstructed, image_shape=(28, 28)) -> plt.Figure:
    """Three rows of images: inputs, noisy inputs, the autoencoder's reconstructions."""
    fig, axes = plt.subplots(3, len(clean), figsize=(1.3 * len(clean), 4.2))
    for row, (images, label) in enumerate(((clean, "input"), (noisy, "noisy"), (reconstructed, "reconstructed"))):
        for col, image in enumerate(images):
            ax = axes[row, col]
            ax.imshow(np.clip(image.reshape(image_shape), 0, 1), cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[row, 0].set_ylabel(label)
    fig.tight_layout()
    return fig
