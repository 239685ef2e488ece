"""Activations of a Keras model (method.md §3.6): one model with the reported layers as outputs,
run with dropout off."""

from __future__ import annotations

import keras
import numpy as np

from ..errors import ModelError
from .units import UnitRunner

#: Keras layers an activation graph's network may hold besides Dense and Conv2D.
KERAS_PASS_THROUGH = ("Dropout", "Flatten", "InputLayer", "Activation", "MaxPooling2D", "AveragePooling2D",
                      "GlobalAveragePooling2D", "BatchNormalization")


def keras_unit_runner(model, outputs: bool, source: str) -> UnitRunner:
    """A Dense network's hidden layers, or a CNN's conv layers (each channel one unit: its mean
    over the image's positions), as the weight graph groups them."""
    source = source or model.name
    unknown = [layer for layer in model.layers if not isinstance(layer, keras.layers.Dense | keras.layers.Conv2D)
               and type(layer).__name__ not in KERAS_PASS_THROUGH]
    if unknown:
        raise ModelError(f"{source}: activation graphs are built for chains of Dense and Conv2D layers; layer "
                         f"{unknown[0].name!r} is a {type(unknown[0]).__name__}")
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    chosen = convs or (dense if outputs else dense[:-1])
    if not chosen:
        raise ModelError(f"{source}: one Dense layer has no hidden units; pass outputs=True")
    probe = keras.Model(model.inputs[0] if len(model.inputs) == 1 else model.inputs, [layer.output for layer in chosen])
    n_inputs = int(np.prod(model.inputs[0].shape[1:]))
    shape = tuple(model.inputs[0].shape[1:])

    def run(x: np.ndarray) -> list[np.ndarray]:
        result = probe(np.asarray(x, np.float32).reshape((-1, *shape)), training=False)
        arrays = [keras.ops.convert_to_numpy(r) for r in (result if isinstance(result, list | tuple) else [result])]
        return [a.mean(axis=tuple(range(1, a.ndim - 1))) if a.ndim > 2 else a for a in arrays]  # channels last

    sizes = tuple(int(layer.filters if isinstance(layer, keras.layers.Conv2D) else layer.units) for layer in chosen)
    return UnitRunner(tuple(layer.name for layer in chosen), sizes, n_inputs, run, source)
