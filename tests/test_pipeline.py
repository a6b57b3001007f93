"""The tf.data builders: batch shapes, raw uint8 dtype, remainder handling, and the shuffle as a
pure function of (seed, epoch)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from conftest import synthetic_images

from mnistlab.pipeline import create_eval_ds, create_training_ds


def _ids(ds) -> list[int]:
    # synthetic_images writes each image's index into its first two pixels
    return [int(a) + 256 * int(b) for images, _ in ds for a, b in images[:, 0, :2].numpy()]


def test_training_batches_are_raw_uint8():
    x, y = synthetic_images(300)
    batches = list(create_training_ds(x, y, batch_size=64))
    assert len(batches) == 4  # 300 // 64: the remainder is dropped
    images, labels = batches[0]
    assert images.shape == (64, 28, 28) and images.dtype == tf.uint8
    assert labels.shape == (64,) and labels.dtype == tf.uint8
    ids = _ids(batches)
    assert len(set(ids)) == 256 and np.array_equal(np.stack([x[i] for i in ids[:64]]), images.numpy())


def test_shuffle_depends_on_seed_and_epoch_only():
    x, y = synthetic_images(500)
    epoch = tf.Variable(0, dtype=tf.int64)
    ds = create_training_ds(x, y, batch_size=50, seed=7, epoch=epoch)
    first = _ids(ds)
    assert first == _ids(ds) and first != sorted(first)  # same epoch, same order
    epoch.assign(3)
    third = _ids(ds)
    assert third != first
    # A fresh pipeline (a resumed run) at epoch 3 sees epoch 3's order.
    assert _ids(create_training_ds(x, y, batch_size=50, seed=7, epoch=tf.Variable(3, dtype=tf.int64))) == third
    assert _ids(create_training_ds(x, y, batch_size=50, seed=8)) != first


def test_too_few_images_for_a_batch():
    x, y = synthetic_images(30)
    with pytest.raises(ValueError, match="batch_size=64 is larger than the 30 training images"):
        create_training_ds(x, y, batch_size=64)


def test_eval_keeps_order_and_remainder():
    x, y = synthetic_images(130)
    batches = list(create_eval_ds(x, y, batch_size=64))
    assert [b[0].shape[0] for b in batches] == [64, 64, 2]
    assert [int(v) for _, labels in batches for v in labels.numpy()] == y.tolist()
    assert np.array_equal(batches[0][0].numpy(), x[:64])


def test_autotuning_is_off():
    # With tf.data's autotuning on, destroying an iterator (Keras does it every epoch) waits for
    # the autotuning thread's next wake-up; both builders must turn it off.
    x, y = synthetic_images(256)
    for ds in (create_training_ds(x, y, batch_size=64), create_eval_ds(x, y, batch_size=64)):
        assert ds.options().autotune.enabled is False
