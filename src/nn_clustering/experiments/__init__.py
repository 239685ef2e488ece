"""The experiments of method.md §7, one module each, as functions that read trained models and
write tables and figures under ``results/`` (the notebooks call these): the profile's
folders (:mod:`.paths`), running a notebook (:mod:`.notebook`), clustering and
shuffle tests of trained instances (:mod:`.clustering`), stability across instances
(:mod:`.stability`), learning curves (:mod:`.learning_curve`), untrained nets' n-cuts (:mod:`.random_init`), lesion tests (:mod:`.lesion`),
the figures (:mod:`.plots`, :mod:`.mlp_plots`) and the summary (:mod:`.summary`).
"""

from ..registry import default_shuffles, load_profile
from .clustering import (
    ClusteringConfig,
    architecture_comparison,
    run_cnn_clustering,
    run_mlp_clustering,
)
from .learning_curve import run_mlp_learning_curve
from .lesion import (
    CNN_LESION_TAGS,
    LESION_TAGS,
    run_cnn_lesion,
    run_mlp_double_lesion,
    run_mlp_lesion,
)
from .mlp_plots import run_mlp_plots
from .paths import ExperimentPaths
from .random_init import run_random_init_ncuts
from .stability import run_mlp_stability
from .summary import summary

__all__ = [
    "CNN_LESION_TAGS", "LESION_TAGS", "ClusteringConfig", "ExperimentPaths", "architecture_comparison",
    "default_shuffles", "load_profile", "run_cnn_clustering", "run_cnn_lesion", "run_mlp_clustering",
    "run_mlp_double_lesion", "run_mlp_learning_curve", "run_mlp_lesion", "run_mlp_plots", "run_mlp_stability",
    "run_random_init_ncuts",
    "summary",
]
