"""mnistlab: reproducible comparison of MNIST-style image classifiers in TensorFlow/Keras."""

__version__ = "0.1.0"
