"""mnistlab: reproducible comparison of MNIST-style image classifiers in TensorFlow/Keras."""

import os

# TensorFlow's oneDNN operations, on unless the user has set the switch (TensorFlow reads it once,
# when it starts, so this comes before anything imports it). TensorFlow itself turns them on only
# on CPUs with AVX-512 VNNI or newer. A run records the setting as `onednn_ops` (mnistlab.machine).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from mnistlab import quiet  # noqa: E402

# TensorFlow's C++ start-up lines go to a log file, not the console or a notebook cell (mnistlab.quiet).
quiet.install()

__version__ = "0.1.0"

from mnistlab.registry import register_model  # noqa: E402  (after the oneDNN switch; imports no TensorFlow)

__all__ = ["register_model"]
