"""LeNet-5 as a model of your own: register it, then compare it with the zoo.

    python -m mnistlab run-all --models-from examples/lenet5.py --models lenet5,bn_cnn --seeds 3
    make run-all MODELS_FROM=examples/lenet5.py MODELS=lenet5,bn_cnn SEEDS=3

After LeCun, Bottou, Bengio and Haffner, "Gradient-based learning applied to document
recognition", Proc. IEEE 86(11), 1998 (LeNet-5, section II.B). Adapted to 28x28 inputs and to a
modern training setup, each change named:
- The paper's 32x32 input is MNIST's 28x28 digit padded by 2 pixels; here C1's 'same' padding
  does the same, so C1 still gives 28x28x6 feature maps and every later size is the paper's.
- Tanh activations (the paper's scaled tanh, 1.7159 tanh(2x/3), is left at plain tanh).
- S2 and S4 are 2x2 average pooling; the paper's subsampling layers also have a trainable
  coefficient and bias per map, left out.
- C3 connects every S2 map to every C3 map; the paper's table connects each C3 map to 3-6 of them.
- The output is Dense(num_classes) with softmax; the paper's is 10 Euclidean RBF units.
61,706 parameters (the paper counts 60,000 trainable parameters with its sparser C3).
"""

import keras
from keras import layers

from mnistlab import register_model


@register_model("lenet5", recipe={"epochs": 5, "learning_rate": 0.002, "lr_schedule": "cosine",
                                  "lr_warmup_fraction": 0.1},
                source="LeCun et al. 1998, Proc. IEEE 86(11) (adapted to 28x28: examples/lenet5.py)",
                reported_accuracy=0.9905)
def build_lenet5(input_shape=(28, 28), num_classes=10):
    """LeNet-5 (LeCun et al. 1998), adapted to 28x28 (see the module's docstring). 61,706 parameters.

    Input (batch, 28, 28) float32 in [0, 1] (mnistlab scales the pixels); output (batch,
    num_classes) probabilities. The paper reports 0.95% test error (0.9905 accuracy) without
    distortions. Recipe: Adam, 5 epochs, batch 128, warm-up to 0.002 then cosine decay.
    """
    return keras.Sequential([
        keras.Input(shape=input_shape),
        layers.Reshape((*input_shape, 1)),  # add a channel axis
        layers.Conv2D(6, 5, padding="same", activation="tanh"),  # C1: 6 maps of 28x28
        layers.AveragePooling2D(2),  # S2: 14x14
        layers.Conv2D(16, 5, activation="tanh"),  # C3: 16 maps of 10x10
        layers.AveragePooling2D(2),  # S4: 5x5
        layers.Conv2D(120, 5, activation="tanh"),  # C5: 120 maps of 1x1
        layers.Flatten(),
        layers.Dense(84, activation="tanh"),  # F6
        layers.Dense(num_classes, activation="softmax"),  # output
    ], name="lenet5")
