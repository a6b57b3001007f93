"""The model zoo: one registry of builders, each with its default training recipe.

Every builder has the signature `build_x(input_shape=(28, 28), num_classes=10, **hparams)`
and returns an uncompiled `keras.Model` mapping (batch, 28, 28) float32 images in [0, 1] to
(batch, num_classes) softmax probabilities. This module knows nothing of files or data.

Source of the five seed models: Ajay Krishnan, "Getting the MNIST" (2022),
../shared/seeds/getting-the-mnist-five-models.txt; the others name their article (also in
../shared/seeds/). Reported accuracies are quoted per model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import keras
import tensorflow as tf
from keras import layers

from mnistlab import autoencoder


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A model's default training settings (any of them can be overridden in the run config)."""

    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 0.001  # Adam's default
    lr_schedule: str = "constant"  # "constant", "exponential" (learning_rate * lr_decay**epoch) or "cosine"
    lr_decay: float = 1.0
    lr_warmup_epochs: float = 0.0  # the cosine schedule's warm-up
    optimizer: str = "adam"  # "adam" or "adadelta"
    # Keras dtype policy: "float32", "mixed_bfloat16", or "auto" (bfloat16 where the CPU has
    # bfloat16 units, see mnistlab.config.auto_precision).
    precision: str = "float32"
    reported_accuracy: float | None = None  # test accuracy the source article's text states
    source: str = "getting-the-mnist-five-models.txt"


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    build: Callable[..., keras.Model]
    recipe: Recipe
    # Optional stage before the main fit (the autoencoder of ae_classifier):
    # pretrain(model, data, config, run_path) -> dict of extra metrics.
    pretrain: Callable[..., dict] | None = None


def classifier_head(num_classes: int) -> layers.Layer:
    """The output layer: Dense(num_classes, softmax), kept in float32 under a mixed-precision
    policy (Keras' advice: a bfloat16 softmax loses the small probabilities the loss needs)."""
    return layers.Dense(num_classes, activation="softmax", dtype="float32")


@keras.saving.register_keras_serializable(package="mnistlab")
class FusedBatchNormalization(layers.BatchNormalization):
    """`keras.layers.BatchNormalization` whose training step runs TensorFlow's fused kernel.

    Same arguments, weights, saved form and inference as Keras' layer. In training (channels
    last, rank 2 or 4, no mask, no renorm) it normalises with one FusedBatchNormV3 kernel
    forward and one backward, in float32 whatever the dtype policy (bfloat16 inputs are cast in
    and the result cast back), where Keras 3 runs about a dozen element-wise ops. The moving
    mean and variance follow Keras' rule (the batch's biased variance). Anything else falls
    back to Keras' own code path. Measured for issue #6 (`make bench-levers` at 889e9ca): bn_cnn
    trains 1.19x faster in float32 and 1.48x in mixed bfloat16 than with Keras' layer.

    Input and output: (batch, ..., channels), the policy's compute dtype.
    """

    def _fusable(self, inputs, training, mask) -> bool:
        rank = len(inputs.shape)
        return (bool(training) and self.trainable and mask is None and not self.renorm
                and self.scale and self.center and rank in (2, 4) and self.axis in (-1, rank - 1))

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        shape = tf.shape(inputs)
        x = tf.cast(inputs, tf.float32)
        if len(inputs.shape) == 2:  # (batch, units) -> (batch, 1, 1, units): the kernel is 4-D
            x = tf.reshape(x, [-1, 1, 1, inputs.shape[-1]])
        y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            x, tf.cast(self.gamma, tf.float32), tf.cast(self.beta, tf.float32),
            epsilon=self.epsilon, is_training=True, data_format="NHWC")
        # The kernel returns the unbiased variance; Keras' moving variance uses the biased one.
        count = tf.cast(tf.size(x) // tf.shape(x)[-1], tf.float32)
        variance = variance * (count - 1.0) / count
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(
            self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return tf.cast(tf.reshape(y, shape), self.compute_dtype)


# The faster recipe of cnn and cnn_linear (issue #6), in place of the article's 10 epochs at 0.001.
CNN_RECIPE = Recipe(epochs=5, learning_rate=0.003, lr_schedule="cosine", lr_warmup_epochs=0.5, precision="auto")

# The seed's decaying learning rate, `0.01 * 0.6**epoch`, used by dropout_mlp and bn_cnn.
SEED_DECAY = dict(learning_rate=0.01, lr_schedule="exponential", lr_decay=0.6)


def build_slp(input_shape=(28, 28), num_classes=10) -> keras.Model:
    """Single-layer perceptron: Flatten -> Dense(num_classes, softmax). 7,850 parameters.

    Recipe: Adam 0.001, 10 epochs, batch 128. The seed reports 92% test accuracy.
    """
    return keras.Sequential([
        keras.Input(shape=input_shape),
        layers.Flatten(),  # 28x28 image -> 784 pixels
        classifier_head(num_classes),
    ], name="slp")


def build_mlp(input_shape=(28, 28), num_classes=10, dropout_rate: float = 0.0) -> keras.Model:
    """Multi-layer perceptron: Flatten -> Dense 128 -> 64 -> 32 (ReLU) -> Dense(softmax).

    111,146 parameters. With `dropout_rate` > 0, Dropout follows each hidden layer.
    Recipe: Adam, 10 epochs, batch 128, learning rate warmed up to 0.002 over the first epoch
    then cosine-decayed to 0 (mnistlab's; the article's constant 0.001 is
    `lr_schedule="constant", learning_rate=0.001, lr_warmup_epochs=0`). The article states no
    figure in its text (it notes the model overfits); its code gives 97.7% after 10 epochs.
    """
    model = keras.Sequential([keras.Input(shape=input_shape), layers.Flatten()], name="mlp")
    for units in (128, 64, 32):
        model.add(layers.Dense(units, activation="relu"))
        if dropout_rate:
            model.add(layers.Dropout(dropout_rate))  # regularises: each batch sees a thinned net
    model.add(classifier_head(num_classes))
    return model


def build_dropout_mlp(input_shape=(28, 28), num_classes=10, dropout_rate: float = 0.2) -> keras.Model:
    """The MLP with Dropout(0.2) after each hidden layer. 111,146 parameters.

    Recipe: Adam with the seed's decay, learning rate 0.01 * 0.6**epoch, 10 epochs, batch 128.
    The seed reports "around 97% during both training and testing"; its code gives 97.5% after
    10 epochs (measured for issue #2).
    """
    model = build_mlp(input_shape, num_classes, dropout_rate=dropout_rate)
    model.name = "dropout_mlp"
    return model


def _conv_stack(input_shape, activation: str | None, batch_norm: bool,
                fused_batch_norm: bool = True) -> list[layers.Layer]:
    # Görner's three convolutions: 12 3x3 /1, 24 6x6 /2, 32 6x6 /2 -> 7x7x32 feature maps.
    stack = [keras.Input(shape=input_shape), layers.Reshape((*input_shape, 1))]  # add a channel axis
    for filters, kernel_size, strides in ((12, 3, 1), (24, 6, 2), (32, 6, 2)):
        if batch_norm:
            # The seed puts BN between the weighted sum and the activation (and keeps the bias).
            stack += [layers.Conv2D(filters, kernel_size, strides=strides, padding="same"),
                      _batch_norm(fused_batch_norm), layers.Activation("relu")]
        else:
            stack.append(layers.Conv2D(filters, kernel_size, strides=strides, padding="same",
                                       activation=activation))
    return stack + [layers.Flatten()]


def build_cnn(input_shape=(28, 28), num_classes=10) -> keras.Model:
    """CNN: Reshape(28, 28, 1) -> Conv2D 12 3x3 s1 -> Conv2D 24 6x6 s2 -> Conv2D 32 6x6 s2
    (all 'same', ReLU) -> Flatten -> Dense 32 ReLU -> Dense(softmax). 88,730 parameters.

    The seed's code gives the three convolutions no activation, which collapses them into one
    linear map; the architecture's original (Martin Görner, "TensorFlow and deep learning,
    without a PhD") has a ReLU after each, as here. The literal version is `cnn_linear`.
    Recipe (mnistlab's, CNN_RECIPE): Adam, 5 epochs, batch 128, learning rate warmed up to
    0.003 over half an epoch, then a cosine decay to 0 (the article's: 0.001 for 10 epochs).
    The seed states no figure for this model.
    """
    return keras.Sequential(_conv_stack(input_shape, "relu", batch_norm=False) + [
        layers.Dense(32, activation="relu"),
        classifier_head(num_classes),
    ], name="cnn")


def build_cnn_linear(input_shape=(28, 28), num_classes=10) -> keras.Model:
    """`cnn` exactly as the seed's code writes it: no activation on the three convolutions.

    88,730 parameters. Kept so the comparison shows what the missing activation costs
    (measured before this project: 0.966 test accuracy after 10 epochs). Recipe: cnn's.
    """
    return keras.Sequential(_conv_stack(input_shape, None, batch_norm=False) + [
        layers.Dense(32, activation="relu"),
        classifier_head(num_classes),
    ], name="cnn_linear")


def _batch_norm(fused: bool) -> layers.Layer:
    return FusedBatchNormalization() if fused else layers.BatchNormalization()


def build_bn_cnn(input_shape=(28, 28), num_classes=10, dropout_rate: float = 0.2,
                 fused_batch_norm: bool = True) -> keras.Model:
    """The CNN with BatchNormalization + ReLU after every convolution, then Dense 128 + BN +
    ReLU, Dropout(0.2), Dense(softmax). 241,098 parameters (240,642 trainable).

    Recipe: Adam with the seed's decay 0.01 * 0.6**epoch, 10 epochs, batch 128. The seed
    reports "around 99%"; its code gives 99.5% after 10 epochs (measured for issue #2).
    `fused_batch_norm` (default True) uses FusedBatchNormalization, the same computation in
    TensorFlow's fused kernel; False uses Keras' layer as the article does (for benchmarks).
    """
    return keras.Sequential(_conv_stack(input_shape, None, batch_norm=True, fused_batch_norm=fused_batch_norm) + [
        layers.Dense(128),
        _batch_norm(fused_batch_norm),
        layers.Activation("relu"),
        layers.Dropout(dropout_rate),
        classifier_head(num_classes),
    ], name="bn_cnn")


def build_deep_bn_cnn(input_shape=(28, 28), num_classes=10, dropout_rate: float = 0.4,
                      fused_batch_norm: bool = True) -> keras.Model:
    """A deeper BatchNorm CNN for the accuracy target of issue #6 (`make best`): seven
    convolutions, each Conv -> BatchNorm -> ReLU, no pooling (strided 5x5 convolutions halve the
    size), then Dense(softmax) on the 1x1x128 output. 326,826 parameters (325,994 trainable).

      32 3x3 -> 32 3x3 -> 32 5x5 /2 'same' -> Dropout -> 64 3x3 -> 64 3x3 -> 64 5x5 /2 'same'
      -> Dropout -> 128 4x4 -> Flatten -> Dropout -> Dense(softmax)   ('valid' unless named)

    Not from ../shared/seeds: conv-BN-ReLU without pooling follows An et al. 2020, "An Ensemble
    of Simple Convolutional Neural Network Models for MNIST Digit Recognition"
    (arXiv:2008.10400), the anchor issue #6 names; the layer sizes and the 0.4 dropout are those
    of a widely copied Kaggle MNIST network (Chris Deotte, 2018), with BN before the ReLU as in An
    et al. Convolutions have no bias (the BN offset replaces it). About 4x bn_cnn's FLOPs.
    Recipe (mnistlab's): Adam, warm-up 1 epoch to 0.003, cosine to 0, 15 epochs, batch 128;
    `make best` adds augmentation. No figure is quoted from a source for this exact network.
    `fused_batch_norm`: as in build_bn_cnn.
    """
    def conv(filters, kernel_size, strides=1, padding="valid"):
        return [layers.Conv2D(filters, kernel_size, strides=strides, padding=padding, use_bias=False),
                _batch_norm(fused_batch_norm), layers.Activation("relu")]

    return keras.Sequential([
        keras.Input(shape=input_shape),
        layers.Reshape((*input_shape, 1)),
        *conv(32, 3), *conv(32, 3), *conv(32, 5, 2, "same"), layers.Dropout(dropout_rate),
        *conv(64, 3), *conv(64, 3), *conv(64, 5, 2, "same"), layers.Dropout(dropout_rate),
        *conv(128, 4), layers.Flatten(), layers.Dropout(dropout_rate),
        classifier_head(num_classes),
    ], name="deep_bn_cnn")


def build_sigmoid_mlp(input_shape=(28, 28), num_classes=10) -> keras.Model:
    """784 -> 300 sigmoid -> 10: the network of ../shared/seeds/tf1-mlp-784-300-10.txt.
    238,510 parameters.

    Recipe as the article: Adam 0.005, batch 50, 27 epochs of the 55k split (its 30,000 steps of
    50 images), validation on the 5k split. It reports 97.18% test accuracy. The article draws
    its initial weights from N(0, 1); Keras' Glorot initialisation is kept here (N(0, 1) only
    slows the start). `mnistlab.export.export_theta` writes its weights as the article does.
    """
    return keras.Sequential([
        keras.Input(shape=input_shape),
        layers.Flatten(),
        layers.Dense(300, activation="sigmoid"),
        classifier_head(num_classes),
    ], name="sigmoid_mlp")


def build_pool_cnn(input_shape=(28, 28), num_classes=10) -> keras.Model:
    """Conv2D 32 3x3 ReLU -> Conv2D 64 3x3 ReLU -> MaxPool 2 -> Dropout 0.25 -> Flatten ->
    Dense 128 ReLU -> Dropout 0.5 -> Dense(softmax): ../shared/seeds/keras-cnn-99.txt (after
    Lex Fridman's tutorial). 1,199,882 parameters.

    Recipe as the article: Adam 0.001, 5 epochs, Keras' default batch of 32. It reports 99.13%.
    """
    return keras.Sequential([
        keras.Input(shape=input_shape),
        layers.Reshape((*input_shape, 1)),
        layers.Conv2D(32, 3, activation="relu"),  # 32 filters of 3x3
        layers.Conv2D(64, 3, activation="relu"),
        layers.MaxPooling2D(2),  # keep the strongest response of each 2x2 patch
        layers.Dropout(0.25),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dropout(0.5),
        classifier_head(num_classes),
    ], name="pool_cnn")


def _small_dense(name: str, units: int, input_shape, num_classes) -> keras.Model:
    return keras.Sequential([
        keras.Input(shape=input_shape),
        layers.Flatten(),
        layers.Dense(units, activation="relu"),
        layers.Dense(units, activation="relu"),
        classifier_head(num_classes),
    ], name=name)


def build_tiny_mlp(input_shape=(28, 28), num_classes=10) -> keras.Model:
    """Flatten -> Dense 4 ReLU -> Dense 4 ReLU -> Dense(softmax): the first model of
    ../shared/seeds/workflow-and-tuning.txt. 3,210 parameters.

    Recipe as the article: Adam 0.001, 20 epochs, Keras' default batch of 32. The article
    reports 66% training accuracy on unnormalised pixels and 86% once normalised (mnistlab
    always normalises; notebooks/tuning_study.ipynb reproduces the comparison).
    """
    return _small_dense("tiny_mlp", 4, input_shape, num_classes)


def build_small_mlp(input_shape=(28, 28), num_classes=10) -> keras.Model:
    """Flatten -> Dense 10 ReLU -> Dense 10 ReLU -> Dense(softmax): the widened model of
    ../shared/seeds/workflow-and-tuning.txt. 8,070 parameters.

    Recipe as the article: Adam 0.001, 100 epochs, batch 32. It reports 93% validation accuracy
    (above 95% training accuracy).
    """
    return _small_dense("small_mlp", 10, input_shape, num_classes)


def add_weight_regularization(model: keras.Model, l1: float = 0.0, l2: float = 0.0) -> keras.Model:
    """Penalise every Dense and Conv kernel of `model` by l1*sum|w| + l2*sum(w**2) (in place).

    Works on any registered model, so the builders need not know about it. The penalty is part
    of the training loss, not of the saved model.
    """
    if l1 or l2:
        regularizer = keras.regularizers.L1L2(l1=l1, l2=l2)
        for layer in _all_layers(model):
            if hasattr(layer, "kernel") and not isinstance(layer, layers.BatchNormalization):
                layer.kernel.regularizer = regularizer
    return model


def _all_layers(model: keras.Model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def with_augmentation(model: keras.Model, rotation_degrees: float = 10.0, shift: float = 0.1,
                      zoom: float = 0.1, seed: int | None = None) -> keras.Model:
    """`model` behind random rotations (±`rotation_degrees`), shifts (±`shift` of the size) and
    zooms (±`zoom`): Keras preprocessing layers, active only in training (identity at inference).

    Input and output as `model`'s: (batch, 28, 28) float32 in [0, 1] -> (batch, num_classes).
    """
    input_shape = model.input_shape[1:]
    return keras.Sequential([
        keras.Input(shape=input_shape),
        layers.Reshape((*input_shape, 1)),  # the image layers want a channel axis
        layers.RandomRotation(rotation_degrees / 360.0, fill_mode="constant", seed=seed),
        layers.RandomTranslation(shift, shift, fill_mode="constant", seed=seed),
        layers.RandomZoom(zoom, fill_mode="constant", seed=seed),
        layers.Reshape(input_shape),
        model,
    ], name=f"{model.name}_augmented")


MODELS: dict[str, ModelSpec] = {
    "slp": ModelSpec(build_slp, Recipe(reported_accuracy=0.92)),
    # mnistlab's recipe (issue #6): the article's constant 0.001 gave 0.9748 ± 0.0010 over 3
    # seeds, one below the 0.975 floor; this cosine gave 0.9798 ± 0.0007.
    "mlp": ModelSpec(build_mlp, Recipe(learning_rate=0.002, lr_schedule="cosine", lr_warmup_epochs=1.0)),
    "dropout_mlp": ModelSpec(build_dropout_mlp, Recipe(**SEED_DECAY, reported_accuracy=0.97)),
    # mnistlab's recipe (issue #6): the article's 10 epochs at a constant 0.001 gave 0.9879 ±
    # 0.0007 in 151 s; a warm-up to 0.003 and a cosine decay over 5 epochs gave 0.9905 in 93 s.
    "cnn": ModelSpec(build_cnn, CNN_RECIPE),
    "cnn_linear": ModelSpec(build_cnn_linear, CNN_RECIPE),  # the same recipe, so only the activation differs
    "bn_cnn": ModelSpec(build_bn_cnn, Recipe(**SEED_DECAY, precision="auto", reported_accuracy=0.99)),
    "deep_bn_cnn": ModelSpec(build_deep_bn_cnn, Recipe(
        epochs=15, learning_rate=0.003, lr_schedule="cosine", lr_warmup_epochs=1.0, precision="auto",
        source="An et al. 2020, arXiv:2008.10400 (not in ../shared/seeds)")),
    "sigmoid_mlp": ModelSpec(build_sigmoid_mlp, Recipe(
        epochs=27, batch_size=50, learning_rate=0.005, reported_accuracy=0.9718,
        source="tf1-mlp-784-300-10.txt")),
    "pool_cnn": ModelSpec(build_pool_cnn, Recipe(
        epochs=5, batch_size=32, reported_accuracy=0.9913, source="keras-cnn-99.txt")),
    "tiny_mlp": ModelSpec(build_tiny_mlp, Recipe(
        epochs=20, batch_size=32, source="workflow-and-tuning.txt")),
    "small_mlp": ModelSpec(build_small_mlp, Recipe(
        epochs=100, batch_size=32, source="workflow-and-tuning.txt")),
    "ae_classifier": ModelSpec(autoencoder.build_ae_classifier, Recipe(
        epochs=10, batch_size=128, learning_rate=1.0, optimizer="adadelta",
        source="autoencoder-and-classifier.txt"), pretrain=autoencoder.pretrain_autoencoder),
}


# Named sets of models for `run-all --models`: "core" is the comparison of the seed article
# (issue #2), the default of `make run-all`; "all" is the whole zoo.
CORE_MODELS = ("slp", "mlp", "dropout_mlp", "cnn", "cnn_linear", "bn_cnn")
MODEL_GROUPS: dict[str, tuple[str, ...]] = {"core": CORE_MODELS, "all": tuple(MODELS)}


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
        if name not in MODEL_GROUPS and name not in MODELS:
            raise ValueError(f"No model named {name!r} found; known models: {', '.join(MODELS)}; "
                             f"groups: {', '.join(MODEL_GROUPS)}")
        expanded += [m for m in MODEL_GROUPS.get(name, (name,)) if m not in expanded]
    return expanded


def get_spec(name: str) -> ModelSpec:
    """Return the registered ModelSpec. Raises ValueError listing the known names."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"No model named {name!r} found; known models: {', '.join(MODELS)}") from None


def build_model(name: str, input_shape=(28, 28), num_classes: int = 10, **hparams) -> keras.Model:
    """Build the registered model `name` (uncompiled). Raises ValueError for an unknown name."""
    return get_spec(name).build(input_shape=input_shape, num_classes=num_classes, **hparams)
