"""Datasets of method.md §1: raw files (:mod:`.raw`), their parsers (:mod:`.parsers`), the
generated sets and mixtures (:mod:`.synthetic`), and building, storing and loading
(:mod:`.build`), and the inputs an activation graph runs on (:mod:`.inputs`)."""

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
from .inputs import activation_inputs

__all__ = ["ALL_DATASETS", "BASE_DATASETS", "MIXTURES", "Dataset", "ImageSet", "activation_inputs", "build_all",
           "ensure_dataset", "load_dataset", "parse_name"]
