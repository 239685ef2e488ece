"""What a network is run on for its activation graph (method.md §3.6): a project dataset by
name, or inputs the caller holds."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .build import load_dataset


def activation_inputs(data, data_dir: str | os.PathLike | None = None):
    """``data`` as the activation runners take it: a project dataset's name (``"mnist"``) becomes
    its test split's images; a path (an ``.npz`` of inputs or token ids) or an array passes
    unchanged."""
    if isinstance(data, str) and not data.endswith(".npz") and not Path(data).exists():
        return load_dataset(data, data_dir).x_test
    return data if isinstance(data, str | os.PathLike) else np.asarray(data)
