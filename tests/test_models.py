"""Every registered model: output shape, probabilities, parameter count, and the registry's errors."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from mnistlab.models import FusedBatchNormalization, all_layers, build_model, shift_layers
from mnistlab.registry import get_entry
from mnistlab.zoo import ZOO_MODELS

# Numerics that depend on the CPU's instruction set: CI runs these again under ONEDNN_MAX_CPU_ISA=AVX2.
pytestmark = pytest.mark.isa

# Counted by hand from the seed architectures (see each builder's docstring).
EXPECTED_PARAMS = {
    "slp": 7_850,  # 784*10 + 10
    "mlp": 111_146,  # (784*128+128) + (128*64+64) + (64*32+32) + (32*10+10)
    "dropout_mlp": 111_146,  # dropout adds no parameters
    "cnn": 88_730,  # convs 120 + 10,392 + 27,680; dense 1568*32+32; 330
    "cnn_linear": 88_730,
    "bn_cnn": 241_098,  # convs 38,192; BN 4*(12+24+32+128); dense 200,832; 1,290
    # convs without bias 288 + 9,216 + 25,600 + 18,432 + 36,864 + 102,400 + 131,072; BN 4*416; 1,290
    "deep_bn_cnn": 326_826,
    "sigmoid_mlp": 238_510,  # (784*300+300) + (300*10+10)
    "pool_cnn": 1_199_882,  # 320 + 18,496 + (12*12*64*128+128) + 1,290
    "tiny_mlp": 3_210,  # (784*4+4) + (4*4+4) + (4*10+10)
    "small_mlp": 8_070,  # (784*10+10) + (10*10+10) + (10*10+10)
    "ae_classifier": 670_682,  # autoencoder 435,536 + classifier 235,146
    # convs without bias 800 + 18,432; dense without bias 3136*128; BN 4*(32+64+128); 1,290
    "speedrun": 422_826,
    "speedrun_one_epoch": 422_826,  # speedrun's network
    "robust_cnn": 241_098,  # bn_cnn's; the per-image standardisation learns nothing
}


def test_every_model_has_an_expected_count():
    assert set(EXPECTED_PARAMS) == set(ZOO_MODELS)


@pytest.mark.parametrize("name", ZOO_MODELS)
def test_model_takes_raw_pixels(name):
    model = build_model(name)
    assert not model.compiled
    assert model.input_shape == (None, 28, 28) and model.layers[0].name == "rescale"
    pixels = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    probs = model.predict(pixels, verbose=0)
    assert probs.shape == (3, 10)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5) and (probs >= 0).all()
    # uint8 and float32 raw pixels give the same; the builder's model on [0, 1] images agrees.
    np.testing.assert_allclose(model.predict(pixels.astype(np.float32), verbose=0), probs, atol=1e-6)
    assert model.count_params() == EXPECTED_PARAMS[name]
    builder = get_entry(name).build_fn()
    assert builder.__doc__ and "parameters" in builder.__doc__


def test_normalize_false_feeds_raw_pixels():
    model = build_model("slp", normalize=False)
    assert model.layers[0].name != "rescale" and model.count_params() == EXPECTED_PARAMS["slp"]


def test_cnn_has_relu_and_cnn_linear_has_none():
    activations = lambda m: [layer.activation.__name__ for layer in m.layers if layer.name.startswith("conv2d")]
    assert activations(build_model("cnn")) == ["relu"] * 3
    assert activations(build_model("cnn_linear")) == ["linear"] * 3


def test_other_input_shape_and_classes():
    model = build_model("bn_cnn", input_shape=(20, 20), num_classes=3)
    assert model.output_shape == (None, 3)


def test_unknown_model_lists_known_names():
    with pytest.raises(ValueError, match=r"No model named 'resnet' found; known models: slp, mlp, .*bn_cnn"):
        build_model("resnet")


def test_weight_regularization_adds_a_loss():
    from mnistlab.models import add_weight_regularization

    model = add_weight_regularization(build_model("mlp"), l1=0.001, l2=0.01)
    x = np.random.default_rng(0).integers(0, 256, (2, 28, 28), dtype=np.uint8)
    model(x)
    assert len(model.losses) == 4  # one penalty per Dense kernel
    kernel = next(layer for layer in model.layers if isinstance(layer, keras.layers.Dense)).kernel.numpy()
    expected = 0.001 * np.abs(kernel).sum() + 0.01 * (kernel**2).sum()
    assert float(model.losses[0]) == pytest.approx(expected, rel=1e-4)


def test_augmentation_only_in_training():
    keras.utils.set_random_seed(1)
    model = build_model("cnn", augment=True)
    x = np.zeros((2, 28, 28), dtype=np.uint8)
    x[:, 10:18, 12:16] = 255
    assert np.allclose(model(x, training=False).numpy(), model(x, training=False).numpy())
    assert not np.allclose(model(x, training=True).numpy(), model(x, training=False).numpy())
    assert model.count_params() == EXPECTED_PARAMS["cnn"]


def test_shift_layers_move_whole_pixels_in_training_only():
    keras.utils.set_random_seed(2)
    x = np.zeros((64, 28, 28), dtype=np.float32)
    x[:, 10:18, 12:16] = 1.0
    shift = keras.Sequential([keras.Input((28, 28)), *shift_layers((28, 28), 2)])
    assert np.array_equal(shift(x, training=False).numpy(), x)
    shifted = shift(x, training=True).numpy()
    padded = np.pad(x[0], 2)
    offsets = set()
    for image in shifted:  # each image is the original moved by whole pixels, at most 2 each way
        found = [(dy, dx) for dy in range(5) for dx in range(5) if np.array_equal(padded[dy:dy + 28, dx:dx + 28], image)]
        assert found, "not a whole-pixel shift"
        offsets.add(found[0])
    assert len(offsets) > 5  # and the shifts vary from image to image


def test_augmentation_layers_draw_independent_streams():
    keras.utils.set_random_seed(3)
    model = build_model("slp", augment=True)
    seeds = [layer.generator.state.numpy().tolist() for layer in model.layers
             if isinstance(layer, keras.layers.RandomRotation | keras.layers.RandomTranslation | keras.layers.RandomZoom)]
    assert len(seeds) == 3 and len({tuple(s) for s in seeds}) == 3


def test_augmented_ae_classifier_keeps_its_autoencoder_reachable():
    model = build_model("ae_classifier", augment=True)
    assert model.get_layer("autoencoder").name == "autoencoder"


def test_model_groups_expand_in_order_without_duplicates():
    from mnistlab.registry import expand_model_names
    from mnistlab.zoo import CORE_MODELS

    assert expand_model_names(None) == expand_model_names("") == list(CORE_MODELS)
    assert expand_model_names("all") == list(ZOO_MODELS)
    assert expand_model_names("bn_cnn, core") == ["bn_cnn", "slp", "mlp", "dropout_mlp", "cnn", "cnn_linear"]
    assert expand_model_names(["pool_cnn", "pool_cnn"]) == ["pool_cnn"]
    with pytest.raises(ValueError, match=r"No model named 'cor' found; .*groups: core, all"):
        expand_model_names("cor")


@pytest.mark.parametrize("shape", [(16, 5, 5, 3), (16, 7)])
def test_fused_batch_norm_matches_keras(shape):
    # Same output, gradients and moving statistics as Keras' layer in training; same inference.
    x = tf.random.stateless_normal(shape, seed=(1, 2)) * 3.0 + 1.0
    fused, reference = FusedBatchNormalization(momentum=0.9), keras.layers.BatchNormalization(momentum=0.9)
    fused.build(shape)
    reference.build(shape)
    for layer in (fused, reference):  # non-trivial scale and offset
        layer.gamma.assign(np.linspace(0.5, 2.0, shape[-1]))
        layer.beta.assign(np.linspace(-1.0, 1.0, shape[-1]))
    results = []
    upstream = tf.range(shape[-1], dtype=tf.float32)  # d loss / d y, per channel
    for layer in (fused, reference):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * upstream)
        grads = tape.gradient(loss, [x, layer.gamma.value, layer.beta.value])
        results.append([y, *grads, layer.moving_mean, layer.moving_variance, layer(x, training=False)])
    names = ["output", "input gradient", "gamma gradient", "beta gradient", "moving mean", "moving variance",
             "inference"]
    # gamma's and beta's gradients are sums over every position of a channel: float32 summed in
    # another order (AVX2 and AVX-512 kernels differ) is off by about eps * the sum of the
    # terms' magnitudes, so their tolerance scales with it; everything else is compared at 1e-4.
    positions = int(np.prod(shape[:-1]))
    summed = 1e-6 * positions * float(tf.reduce_max(upstream))
    for name, got, want in zip(names, *results):
        atol = summed if name in ("gamma gradient", "beta gradient") else 1e-4
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=atol, err_msg=name)


def test_fused_batch_norm_in_bn_cnn_saves_and_loads(tmp_path):
    model = build_model("bn_cnn")
    assert sum(isinstance(layer, FusedBatchNormalization) for layer in model.layers) == 4
    x = np.random.default_rng(0).integers(0, 256, (4, 28, 28), dtype=np.uint8)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_batch_norm_models_are_the_ones_with_batch_norm():
    # The registry passes batch_norm_momentum to exactly the builders with BatchNormalization.
    with_batch_norm = {name for name in ZOO_MODELS if any(
        isinstance(layer, keras.layers.BatchNormalization) for layer in all_layers(build_model(name)))}
    assert with_batch_norm == {name for name in ZOO_MODELS
                               if "batch_norm_momentum" in get_entry(name).builder_settings}


@pytest.mark.parametrize("name", ["bn_cnn", "speedrun"])
def test_the_configs_batch_norm_momentum_reaches_every_batch_norm(name):
    from mnistlab.config import make_config
    from mnistlab.train import build

    model = build(make_config(name, batch_norm_momentum=0.8), "float32")
    momenta = [layer.momentum for layer in all_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]
    assert momenta and set(momenta) == {0.8}


def test_robust_augmentation_only_in_training_and_not_in_model_keras(tmp_path):
    from mnistlab.models import TRAINING_ONLY, saved_form

    keras.utils.set_random_seed(4)
    model = build_model("robust_cnn", robust_augment=True)
    x = np.zeros((8, 28, 28), dtype=np.uint8)
    x[:, 8:20, 12:16] = 255
    inference = model(x, training=False).numpy()
    assert np.allclose(inference, model(x, training=False).numpy())
    assert not np.allclose(model(x, training=True).numpy(), inference)
    assert sum(isinstance(layer, TRAINING_ONLY) for layer in model.layers) == 7
    saved_form(model).save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")  # Keras' own layers only
    assert not any(isinstance(layer, TRAINING_ONLY) for layer in loaded.layers)
    # (The training call above moved BatchNorm's averages: compare with the model as saved.)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model(x, training=False).numpy(), atol=1e-6)


def test_elastic_augment_deforms_that_share_of_training_images_only():
    from mnistlab.models import RandomElasticDeformation

    keras.utils.set_random_seed(5)
    x = np.zeros((64, 28, 28), dtype=np.float32)
    x[:, 6:22, 12:16] = 255
    for share, low, high in ((1.0, 64, 64), (0.5, 16, 48)):
        model = build_model("slp", elastic_augment=share)
        [layer] = [layer for layer in model.layers if isinstance(layer, RandomElasticDeformation)]
        assert (layer.alpha, layer.sigma, layer.probability) == (34.0, 4.0, share)
        front = keras.Sequential(model.layers[:model.layers.index(layer) + 2])  # rescale ... reshape back
        moved = np.abs(front(x, training=True).numpy() - x / 255).max(axis=(1, 2)) > 0.05
        assert low <= moved.sum() <= high, (share, moved.sum())
        np.testing.assert_array_equal(front(x, training=False).numpy(), x / 255)
    assert not any(isinstance(layer, RandomElasticDeformation) for layer in build_model("slp").layers)


def test_robust_cnn_standardises_each_image():
    # A grey background and fainter ink (a photographed digit) reach the convolutions as the clean digit.
    model = build_model("robust_cnn")
    x = np.zeros((2, 28, 28), dtype=np.float32)
    x[:, 8:20, 12:16] = 255
    x[1] = 96 + x[1] * 0.5  # background 96, ink 223
    standardised = keras.Sequential(model.layers[:3])(x).numpy()
    np.testing.assert_allclose(standardised[0], standardised[1], rtol=0.01, atol=0.01)  # up to the variance epsilon
