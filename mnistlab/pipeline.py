"""tf.data input builders for training and evaluation: raw uint8 pixel batches.

After `create_training_ds` / `create_eval_ds` of the seed article
(../shared/seeds/getting-the-mnist-five-models.txt), with three changes: the images stay uint8
(the model scales them: its first layer is `Rescaling(1/255)`), a training batch is gathered from
the in-memory arrays in one op rather than assembled image by image, and the shuffle is a
full permutation drawn from (seed, epoch), not a 5,000-image buffer: every epoch's order is a
pure function of the seed and the epoch number, so a run resumed at epoch k sees exactly the
order an uninterrupted run sees there. Each pass over the data is one epoch (no `repeat()`).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

BATCH_SIZE = 128


def create_training_ds(x: np.ndarray, y: np.ndarray, batch_size: int = BATCH_SIZE, seed: int = 0,
                       epoch: tf.Variable | None = None) -> tf.data.Dataset:
    """Shuffled training batches: a permutation of the indices seeded by (seed, epoch), batched
    (the last partial batch dropped), gathered from `x` and `y`, prefetched.

    Args:
      x: images (N, 28, 28) uint8.  y: labels (N,) integer.
      batch_size: images per batch.
      seed: shuffle seed.
      epoch: an int64 variable read each time the dataset is iterated (set it before each epoch,
        e.g. with mnistlab.callbacks.ShuffleEpoch); None: every pass uses epoch 0's order.
    Yields (images (batch_size, 28, 28) uint8, labels (batch_size,) of y's dtype); len(x) //
    batch_size batches per pass. Raises ValueError if there is not one full batch.
    """
    n = len(x)
    if n < batch_size:
        raise ValueError(f"batch_size={batch_size} is larger than the {n} training images")
    images, labels = tf.constant(x), tf.constant(y)
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False) if epoch is None else epoch

    def gather(index):
        order = tf.random.experimental.index_shuffle(index, tf.stack([tf.constant(seed, tf.int64),
                                                                      epoch.read_value()]), max_index=n - 1)
        return tf.gather(images, order), tf.gather(labels, order)

    ds = tf.data.Dataset.range(n).batch(batch_size, drop_remainder=True)
    return _prefetched(ds.map(gather))


def create_eval_ds(x: np.ndarray, y: np.ndarray, batch_size: int = BATCH_SIZE) -> tf.data.Dataset:
    """Evaluation batches in file order, every example exactly once (the last batch may be
    short): (images (b, 28, 28) uint8, labels (b,))."""
    images, labels = tf.constant(x), tf.constant(y)

    def gather(index):
        return tf.gather(images, index), tf.gather(labels, index)

    ds = tf.data.Dataset.range(len(x)).batch(batch_size, drop_remainder=False)
    return _prefetched(ds.map(gather))


def _prefetched(ds: tf.data.Dataset) -> tf.data.Dataset:
    """`ds` with two batches prepared ahead on a background thread and tf.data's autotuning off.

    A batch is one gather from arrays in memory: nothing to tune. Autotuning runs a model thread
    per iterator, and in TF 2.21 destroying the iterator waits for that thread's next wake-up
    (seconds); Keras destroys one per epoch and per validation pass, which can double an epoch.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.prefetch(2).with_options(options)
