"""The tf.data builders: batch shapes, dtypes, value range, remainder handling, seeded shuffling."""

from __future__ import annotations

import numpy as np
from conftest import synthetic_images

from mnistlab.pipeline import create_eval_ds, create_training_ds


def _labels_in_order(ds) -> list[int]:
    return [int(v) for _, y in ds for v in y.numpy()]


def test_training_batches():
    x, y = synthetic_images(300)
    batches = list(create_training_ds(x, y, batch_size=64))
    assert len(batches) == 4  # 300 // 64: the remainder is dropped
    images, labels = batches[0]
    assert images.shape == (64, 28, 28) and images.dtype.name == "float32"
    assert labels.shape == (64,) and labels.dtype.name == "uint8"
    values = np.concatenate([b[0].numpy().ravel() for b in batches])
    assert values.min() >= 0.0 and values.max() == 1.0


def test_training_shuffle_is_seeded():
    x, y = synthetic_images(500)
    ids = lambda ds: [int(i) for b, _ in ds for i in (b[:, 0, 0] * 255).numpy().round()]
    a = ids(create_training_ds(x, y, batch_size=50, shuffle_buffer=500, seed=7))
    b = ids(create_training_ds(x, y, batch_size=50, shuffle_buffer=500, seed=7))
    c = ids(create_training_ds(x, y, batch_size=50, shuffle_buffer=500, seed=8))
    assert a == b and a != c and a != sorted(a)


def test_training_reshuffles_each_epoch():
    x, y = synthetic_images(200)
    ds = create_training_ds(x, y, batch_size=50, shuffle_buffer=200, seed=0)
    assert _labels_in_order(ds) != _labels_in_order(ds)


def test_eval_keeps_order_and_remainder():
    x, y = synthetic_images(130)
    batches = list(create_eval_ds(x, y, batch_size=64))
    assert [b[0].shape[0] for b in batches] == [64, 64, 2]
    assert _labels_in_order(batches) == y.tolist()
    assert np.allclose(batches[0][0].numpy(), x[:64] / 255.0)


def test_limit():
    x, y = synthetic_images(300)
    assert sum(b[0].shape[0] for b in create_eval_ds(x, y, batch_size=64, limit=100)) == 100
    assert len(list(create_training_ds(x, y, batch_size=10, limit=100))) == 10
