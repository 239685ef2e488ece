"""Architectures of method.md §2, in Keras 3 only (``keras.*``; runs on TensorFlow or JAX)."""

from __future__ import annotations

import keras

MLP_HIDDEN = (256, 256, 256, 256)
N_CLASSES = 10


def penalty(l1: float = 0.0, l2: float = 0.0) -> keras.regularizers.Regularizer | None:
    """The kernel regulariser of method.md §2.5: l1 * sum |W| + l2 * sum W^2 added to the loss
    (None for none)."""
    if not l1 and not l2:
        return None
    return keras.regularizers.L1L2(l1=float(l1), l2=float(l2))


def build_mlp(dropout: float = 0.0, hidden: tuple[int, ...] = MLP_HIDDEN, n_inputs: int = 784,
              n_classes: int = N_CLASSES, l1: float = 0.0, l2: float = 0.0, output: str = "softmax") -> keras.Model:
    """784 -> 256 x 4 (ReLU) -> 10 softmax (``output="linear"``: linear outputs, for regression);
    with ``dropout`` > 0 a Dropout after each hidden layer; ``l1``/``l2`` penalise every kernel
    (:func:`penalty`)."""
    layers: list[keras.layers.Layer] = [keras.Input((n_inputs,))]
    for i, width in enumerate(hidden):
        layers.append(keras.layers.Dense(width, activation="relu", name=f"dense_{i}",
                                         kernel_regularizer=penalty(l1, l2)))
        if dropout > 0:
            layers.append(keras.layers.Dropout(dropout, name=f"dropout_{i}"))
    layers.append(keras.layers.Dense(n_classes, activation=output, name=f"dense_{len(hidden)}",
                                     kernel_regularizer=penalty(l1, l2)))
    return keras.Sequential(layers, name="mlp")


def build_cnn(dropout: bool = False, n_classes: int = N_CLASSES, l1: float = 0.0, l2: float = 0.0,
              channels: int = 1) -> keras.Model:
    """Conv64-Conv64-Pool-Conv64-Pool-Flatten-Dense128-Dense10 on 28 x 28 x ``channels`` images;
    dropout 0.25 after each conv block and 0.5 after Dense 128 in the dropout variant;
    ``l1``/``l2`` penalise every kernel."""
    def conv(i: int) -> keras.layers.Layer:
        return keras.layers.Conv2D(64, 3, padding="same", activation="relu", name=f"conv_{i}",
                                   kernel_regularizer=penalty(l1, l2))

    layers: list[keras.layers.Layer] = [keras.Input((28, 28, channels)), conv(0), conv(1),
                                        keras.layers.MaxPooling2D(2, name="pool_0")]
    if dropout:
        layers.append(keras.layers.Dropout(0.25, name="dropout_0"))
    layers += [conv(2), keras.layers.MaxPooling2D(2, name="pool_1")]
    if dropout:
        layers.append(keras.layers.Dropout(0.25, name="dropout_1"))
    layers += [keras.layers.Flatten(name="flatten"),
               keras.layers.Dense(128, activation="relu", name="dense_0", kernel_regularizer=penalty(l1, l2))]
    if dropout:
        layers.append(keras.layers.Dropout(0.5, name="dropout_2"))
    layers.append(keras.layers.Dense(n_classes, activation="softmax", name="dense_1",
                                     kernel_regularizer=penalty(l1, l2)))
    return keras.Sequential(layers, name="cnn")


def prunable_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Layers whose kernels are pruned and clustered: every Dense and Conv2D, in order."""
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Dense | keras.layers.Conv2D)]
