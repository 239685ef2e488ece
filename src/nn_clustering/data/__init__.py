"""Datasets of method.md §1: raw files (:mod:`.raw`), their parsers (:mod:`.parsers`), the
generated sets and mixtures (:mod:`.synthetic`), and building, storing and loading
(:mod:`.build`)."""

from .build import (
           ALL_DATASETS,
           BASE_DATASETS,
           MIXTURES,
           build_all,
           ensure_dataset,
           load_dataset,
           parse_name,
)
from .imageset import Dataset, ImageSet

__all__ = ["ALL_DATASETS", "BASE_DATASETS", "MIXTURES", "Dataset", "ImageSet", "build_all", "ensure_dataset",
           "load_dataset", "parse_name"]
