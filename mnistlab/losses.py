"""The training loss with label smoothing, for integer labels (Keras' own label smoothing needs
one-hot labels; mnistlab's pipelines and every evaluation keep integer labels)."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="mnistlab")
class SparseCategoricalCrossentropyWithSmoothing(keras.losses.Loss):
    """Cross-entropy of integer labels against targets smoothed as in Szegedy et al. 2016
    ("Rethinking the Inception architecture", section 7): each one-hot target becomes
    `(1 - label_smoothing) * one_hot + label_smoothing / num_classes`. Keras'
    `categorical_crossentropy(..., label_smoothing=...)` on the one-hot of the labels.

    Args:
      label_smoothing: in [0, 1); 0 gives sparse categorical cross-entropy exactly.
      from_logits: whether `y_pred` holds logits (else probabilities).
    Call with y_true (batch,) or (batch, 1) integer class indices and y_pred (batch, num_classes)
    float; returns the per-example loss (batch,) in nats, reduced as Keras' losses are.
    Raises ValueError if label_smoothing is outside [0, 1).
    """

    def __init__(self, label_smoothing: float = 0.0, from_logits: bool = False,
                 name: str = "sparse_categorical_crossentropy_with_smoothing", **kwargs):
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        super().__init__(name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        ops = keras.ops
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        one_hot = ops.one_hot(labels, ops.shape(y_pred)[-1], dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(one_hot, y_pred, from_logits=self.from_logits,
                                                     label_smoothing=self.label_smoothing)

    def get_config(self) -> dict:
        return {**super().get_config(), "label_smoothing": self.label_smoothing, "from_logits": self.from_logits}
