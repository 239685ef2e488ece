"""``random-init-ncuts``: the n-cut of untrained MLPs, the successor paper's baseline (method.md §7).

``n_nets`` MLPs of the paper's architecture (784-256x4-10) are initialised as training
initialises them (Keras' defaults under ``keras.utils.set_random_seed(seed)``, seeds
``first_seed`` .. ``first_seed + n_nets - 1``) and clustered at k = 12 without shuffles. The table
has one row per net and a summary (mean, SD, min, max); the figure places every trained MLP found
in the profile's models folder (its n-cut at the same k) against that distribution. Keras'
backends draw different initial weights from the same seed, so every row records its backend.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.enums import Stage
from ..core.graph import mlp_graph
from ..core.progress import progress_bar
from ..core.rows import Row
from ..core.shuffle import observed_clustering
from ..core.spectral import SpectralConfig
from ..errors import ModelError
from ..storage.provenance import code_version
from ..storage.tables import frame, save_figure, write_csv
from ..training.catalog import find_instances
from .paths import ExperimentPaths, k_suffix


@dataclass(frozen=True)
class RandomInitRow(Row):
    """One row of ``random-init-ncuts.csv``: one freshly initialised MLP."""

    init_seed: int
    ncut: float
    n_clusters: int
    random_state: int  # root seed of the clustering
    layer_sizes: str
    backend: str  # Keras backend: each draws its own initial weights from the same seed
    code_version: str


@dataclass(frozen=True)
class TrainedNcutRow(Row):
    """A trained MLP's n-cut at the same k, for the figure and ``random-init-ncuts-trained.csv``."""

    tag: str
    instance: int
    stage: Stage
    ncut: float
    n_clusters: int
    random_state: int
    percentile: float  # share of the untrained nets with a lower n-cut
    code_version: str


def keras_backend() -> str:
    """The Keras backend in use (``KERAS_BACKEND``), recorded with each untrained net."""
    import keras

    return keras.backend.backend()


def initial_kernels(init_seed: int) -> list[np.ndarray]:
    """The kernels of the paper's MLP as training initialises it under ``init_seed``."""
    import keras

    from ..training.architectures import build_mlp, prunable_layers

    keras.utils.set_random_seed(init_seed)
    return [np.asarray(layer.kernel, np.float64) for layer in prunable_layers(build_mlp())]


def random_init_rows(n_nets: int = 100, n_clusters: int = 12, first_seed: int = 0, random_state: int = 42,
                     progress: bool = False) -> list[RandomInitRow]:
    """The n-cut at k of ``n_nets`` untrained MLPs (init seeds ``first_seed`` onwards)."""
    spectral, version, backend, rows = SpectralConfig(n_clusters=n_clusters), code_version(), keras_backend(), []
    for init_seed in progress_bar(range(first_seed, first_seed + n_nets), desc="untrained MLPs", enabled=progress):
        graph = mlp_graph(initial_kernels(init_seed))
        ncut = observed_clustering(graph, spectral, random_state).ncut
        rows.append(RandomInitRow(init_seed, ncut, n_clusters, random_state, "-".join(map(str, graph.layer_sizes)), backend,
                                  version))
    return rows


def trained_rows(paths: ExperimentPaths, untrained: np.ndarray, n_clusters: int, random_state: int) -> list[TrainedNcutRow]:
    """Every trained MLP under the profile's models folder at k (none when nothing is trained)."""
    try:
        instances = find_instances(paths.models)
    except ModelError:
        return []
    spectral, version, rows = SpectralConfig(n_clusters=n_clusters), code_version(), []
    for instance in instances:
        for stage in Stage:
            ncut = observed_clustering(mlp_graph(instance.weights(stage).kernels), spectral, random_state).ncut
            rows.append(TrainedNcutRow(instance.tag, instance.instance, stage, ncut, n_clusters, random_state,
                                       float(np.mean(untrained < ncut)), version))
    return rows


def run_random_init_ncuts(paths: ExperimentPaths, n_nets: int = 100, n_clusters: int = 12, first_seed: int = 0,
                          random_state: int = 42, progress: bool = False):
    """Write ``random-init-ncuts[-kK].csv`` (one row per untrained net), its ``-summary.csv``,
    ``-trained.csv`` and the figure ``figures/random-init-ncuts[-kK].png``; return the summary."""
    import matplotlib.pyplot as plt
    import pandas as pd

    table = frame(random_init_rows(n_nets, n_clusters, first_seed, random_state, progress), RandomInitRow)
    stem = f"random-init-ncuts{k_suffix(n_clusters)}"
    write_csv(table, paths.results / f"{stem}.csv")
    values = table["ncut"].to_numpy()
    summary = pd.DataFrame([{
        "n_nets": len(values), "n_clusters": n_clusters, "mean": values.mean(), "sd": values.std(ddof=1), "min": values.min(),
        "max": values.max(), "first_seed": first_seed, "random_state": random_state, "backend": keras_backend(),
        "code_version": code_version(),
    }])
    write_csv(summary, paths.results / f"{stem}-summary.csv")
    trained = frame(trained_rows(paths, values, n_clusters, random_state), TrainedNcutRow)
    write_csv(trained, paths.results / f"{stem}-trained.csv")

    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.hist(values, bins=20, color="0.7", label=f"{len(values)} untrained MLPs")
    colours = {Stage.DENSE: "tab:blue", Stage.PRUNED: "tab:red"}
    for stage, rows in trained.groupby("stage", sort=False) if len(trained) else []:
        ax.vlines(rows["ncut"], 0, 0.25, transform=ax.get_xaxis_transform(), colors=colours[Stage(stage)],
                  label=f"trained, {stage} ({len(rows)})")
    ax.set_xlabel(f"n-cut (k = {n_clusters})")
    ax.set_ylabel("untrained nets")
    ax.set_title(f"Untrained 784-256x4-10 MLPs: n-cut {values.mean():.3f} +- {values.std(ddof=1):.3f}")
    ax.legend(loc="upper left", fontsize=8)
    save_figure(fig, paths.figures / stem)
    return summary
