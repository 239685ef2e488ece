"""The in-memory form of a dataset: train and test splits of 28x28 images with labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IMAGE_SIDE = 28


@dataclass
class ImageSet:
    """Train and test splits of 28x28 images with integer labels.

    ``source_*`` is set for mixtures only: True where the row came from the second dataset.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source_train: np.ndarray | None = None
    source_test: np.ndarray | None = None


@dataclass
class Dataset(ImageSet):
    """What :func:`load_dataset` returns: float32 images scaled to [0, 1], int labels, a name."""

    name: str = ""
