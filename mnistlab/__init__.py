"""mnistlab: reproducible comparison of MNIST-style image classifiers in TensorFlow/Keras."""

import os
import warnings

# TensorFlow's oneDNN operations, on unless the user has set the switch (TensorFlow reads it once,
# when it starts, so this comes before anything imports it). TensorFlow itself turns them on only
# on CPUs with AVX-512 VNNI or newer. A run records the setting as `onednn_ops` (mnistlab.machine).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from mnistlab import quiet  # noqa: E402

# TensorFlow's C++ start-up lines go to a log file, not the console or a notebook cell (mnistlab.quiet).
quiet.install()
# Keras 3.15 on numpy 2 converts tensors with np.array(x, copy=False) in a way numpy warns about on
# every predict: nothing a user can act on (keras/src/backend/tensorflow/core.py).
warnings.filterwarnings("ignore", message=r"__array__ implementation doesn't accept a copy keyword",
                        category=DeprecationWarning, module=r"keras\.")

__version__ = "0.1.0"

from mnistlab.registry import register_model  # noqa: E402  (after the oneDNN switch; imports no TensorFlow)



def explore(runs_dir="../runs", dataset: str = "mnist", static: bool = False, alpha: float = 0.05):
    """Two variants of the runs in `runs_dir` side by side, in Jupyter (mnistlab.pair_view.explore)."""
    from mnistlab.pair_view import explore as view

    return view(runs_dir, dataset, static, alpha)


__all__ = ["register_model", "explore"]
