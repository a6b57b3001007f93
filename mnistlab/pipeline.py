"""tf.data input builders for training and evaluation.

After `create_training_ds` / `create_eval_ds` of the seed article
(../shared/seeds/getting-the-mnist-five-models.txt), with two changes: the images stay uint8
in memory and are scaled to float32 per batch (a quarter of the memory of the article's
float64 arrays, and far less work per step), and each pass over the data is one epoch
(no `repeat()`, so no `steps_per_epoch` bookkeeping and evaluation sees every image once).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

SHUFFLE_BUFFER = 5000
BATCH_SIZE = 128


def _scale(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    # uint8 [0, 255] -> float32 [0, 1], on a whole batch at once.
    return tf.cast(images, tf.float32) / 255.0, labels


def _cast(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    # Unnormalised float32 [0, 255]: only for the tuning study's "before normalisation" runs.
    return tf.cast(images, tf.float32), labels


def create_training_ds(x: np.ndarray, y: np.ndarray, batch_size: int = BATCH_SIZE,
                       shuffle_buffer: int = SHUFFLE_BUFFER, seed: int | None = 0,
                       limit: int | None = None, normalize: bool = True) -> tf.data.Dataset:
    """Shuffled training batches: cache, shuffle, batch (drop_remainder), scale, prefetch.

    Args:
      x: images (N, 28, 28) uint8.  y: labels (N,) integer.
      batch_size: images per batch; the last partial batch is dropped.
      shuffle_buffer: size of the shuffle buffer (the seed uses 5000).
      seed: shuffle seed; the order changes every epoch but is the same for the same seed.
      limit: use only the first `limit` examples.
      normalize: scale to [0, 1] (default); False leaves float32 in [0, 255].
    Yields (images (batch_size, 28, 28) float32 in [0, 1], labels (batch_size,) of y's dtype).
    """
    if limit is not None:
        x, y = x[:limit], y[:limit]
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    ds = ds.cache()  # this small dataset fits in RAM
    ds = ds.shuffle(buffer_size=shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=True)
    ds = ds.map(_scale if normalize else _cast, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)  # fetch the next batch while training on this one


def create_eval_ds(x: np.ndarray, y: np.ndarray, batch_size: int = BATCH_SIZE,
                   limit: int | None = None, normalize: bool = True) -> tf.data.Dataset:
    """Evaluation batches in file order, every example exactly once (last batch may be short).

    Shapes and dtypes as `create_training_ds`.
    """
    if limit is not None:
        x, y = x[:limit], y[:limit]
    ds = tf.data.Dataset.from_tensor_slices((x, y)).cache()
    ds = ds.batch(batch_size, drop_remainder=False)
    ds = ds.map(_scale if normalize else _cast, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
