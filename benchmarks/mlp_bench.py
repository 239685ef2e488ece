"""What the training benchmarks share: the MNIST MLP, bare or with our pruning stage, fitted
one epoch (compiled, first masks set), and its training data. Import after KERAS_BACKEND is set."""

from __future__ import annotations

import keras
import numpy as np

from nn_clustering.training.architectures import build_mlp
from nn_clustering.training.pruning import MagnitudePruning, PruningSchedule
from nn_clustering.training.train import compile_model, make_optimizer

BATCH, STEPS_PER_EPOCH = 128, 469


def training_data() -> tuple[np.ndarray, np.ndarray]:
    """MNIST's training images and one-hot labels, or random data of the same shape."""
    try:
        from nn_clustering.data import load_dataset

        data = load_dataset("mnist")
        x, y = data.x_train.reshape(-1, 784), data.y_train
    except Exception:  # no dataset built: the timing does not depend on the values
        rng = np.random.default_rng(0)
        x, y = rng.random((60000, 784), dtype=np.float32), rng.integers(0, 10, 60000)
    return x, keras.utils.to_categorical(y, 10)


def fitted(pruned: bool, x: np.ndarray, y: np.ndarray) -> tuple[keras.Model, list]:
    """The MLP (seed 0) and the callbacks its fits take, after one warm-up epoch: with a bare
    compile and no callbacks, or with our pruning stage at the paper's schedule (20 epochs)."""
    keras.utils.set_random_seed(0)
    model = build_mlp()
    callbacks: list = []
    if pruned:
        optimizer = make_optimizer()
        pruning = MagnitudePruning(PruningSchedule(total_steps=STEPS_PER_EPOCH * 20))
        pruning.attach(model, optimizer)
        compile_model(model, optimizer)
        callbacks = [pruning]
    else:
        compile_model(model)  # the same compile
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=callbacks)
    return model, callbacks
