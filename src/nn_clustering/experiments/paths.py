"""Where an experiment reads models and writes results: one paths config per profile.

The ``paper`` profile owns ``models/`` and ``results/``; any other profile gets
``models/<profile>/`` and ``results/<profile>/``, so a quick demo never mixes with the
reproduction (the Makefile follows the same rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..storage.cache import ResultCache

PAPER_PROFILE = "paper"


def project_root(start: Path | None = None) -> Path:
    """The repository root (the folder holding ``Makefile`` and ``src/nn_clustering``) above
    ``start`` (default: the working directory), or the working directory if there is none."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "Makefile").exists() and (folder / "src" / "nn_clustering").is_dir():
            return folder
    return here


@dataclass(frozen=True)
class ExperimentPaths:
    """Where an experiment reads models and writes results."""

    models: Path
    results: Path

    @property
    def figures(self) -> Path:
        """``results/figures``."""
        return self.results / "figures"

    @property
    def cache(self) -> ResultCache:
        """The result cache under ``results/cache``."""
        return ResultCache(self.results / "cache")

    @classmethod
    def for_profile(
        cls, profile: str, models_dir: str | Path | None = None, results_dir: str | Path | None = None
    ) -> ExperimentPaths:
        """The profile's default folders (under the project root), unless given explicitly."""
        root = project_root()
        suffix = "" if profile == PAPER_PROFILE else profile
        return cls(
            Path(models_dir) if models_dir else root / "models" / suffix,
            Path(results_dir) if results_dir else root / "results" / suffix,
        )


def k_suffix(k: int) -> str:
    """File-name suffix of a k other than the default 4 (``-k10``)."""
    return "" if k == 4 else f"-k{k}"
