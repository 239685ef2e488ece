"""Provenance recorded with every result: code version and library versions."""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import subprocess
from pathlib import Path

from .._version import __version__

_LIBRARIES = ("numpy", "scipy", "scikit-learn", "joblib", "keras", "tensorflow-cpu", "jax")


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """``<package version>+g<commit>`` (``.dirty`` with uncommitted changes), or the version alone."""
    root = Path(__file__).resolve().parents[3]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{commit}{'.dirty' if dirty else ''}"


def library_versions() -> dict[str, str]:
    """Versions of the numeric and deep-learning libraries that are installed."""
    out = {"python": platform.python_version(), "nn_clustering": __version__}
    for name in _LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out
