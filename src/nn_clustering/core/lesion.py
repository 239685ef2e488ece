"""Lesion tests (method.md §6): are the clusters functionally important?

A *sub-module* is the set of neurons of one hidden layer that share a cluster label (isolated
neurons excluded). Lesioning a set zeroes its incoming weights and biases, so the neurons'
ReLU output is exactly 0 for every input. Evaluation is plain numpy on the kernels and is
batched: the intact activations up to the first lesioned layer are computed once, and many
lesions are pushed through the rest of the network together, so no Keras model is rebuilt.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ModelError, NnClusteringError
from .enums import Architecture, Taxonomy
from .graph import NetworkWeights
from .parameters import validate_fields
from .progress import progress_bar
from .rows import Row
from .stats import empirical_p, exceed_p, fisher_combined_p, rank_count_test

#: A lesion: hidden layer index (1 = first hidden layer, as in the graph) -> neuron indices.
Lesion = dict[int, np.ndarray]

SMALL_SIZE = 12
DIFF_THRESHOLD = -0.01


@dataclass(frozen=True)
class MLP:
    """Dense kernels (in, out) and biases of a ReLU MLP with a softmax output."""

    kernels: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]

    @classmethod
    def from_weights(cls, weights: NetworkWeights) -> MLP:
        """From loaded weights; a clear error if biases are missing or shapes do not chain."""
        if weights.kind != Architecture.MLP:
            raise ModelError(f"{weights.source}: lesion tests of MLPs need Dense kernels, got a {weights.kind}")
        if len(weights.biases) != len(weights.kernels):
            raise ModelError(f"{weights.source}: lesions need a bias per layer (kernel_i and bias_i arrays)")
        kernels = tuple(np.asarray(k, np.float32) for k in weights.kernels)
        biases = tuple(np.asarray(b, np.float32) for b in weights.biases)
        for i, (k, b) in enumerate(zip(kernels, biases, strict=True)):
            if b.shape != (k.shape[1],) or (i and kernels[i - 1].shape[1] != k.shape[0]):
                raise ModelError(f"{weights.source}: layer {i} kernel {k.shape} / bias {b.shape} do not chain")
            if not (np.isfinite(k).all() and np.isfinite(b).all()):
                raise ModelError(f"{weights.source}: layer {i} has NaN or infinite weights; retrain the model")
        return cls(kernels, biases)

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """Neurons per layer, input first (as in the graph)."""
        return (self.kernels[0].shape[0], *(k.shape[1] for k in self.kernels))

    @property
    def hidden_layers(self) -> range:
        """Graph indices of the hidden layers."""
        return range(1, len(self.kernels))

    @property
    def lesionable_layers(self) -> range:
        """Graph layers whose units can be lesioned: the hidden layers."""
        return self.hidden_layers


def lesion_network(net: MLP, lesion: Lesion) -> MLP:
    """A copy of ``net`` with the lesioned neurons' incoming weights and biases zeroed."""
    kernels, biases = [k.copy() for k in net.kernels], [b.copy() for b in net.biases]
    for layer, neurons in lesion.items():
        if layer not in net.hidden_layers:
            raise ValueError(f"layer {layer} is not a hidden layer (1..{len(net.kernels) - 1})")
        kernels[layer - 1][:, neurons] = 0
        biases[layer - 1][neurons] = 0
    return MLP(tuple(kernels), tuple(biases))


def forward(net: MLP, x: np.ndarray) -> list[np.ndarray]:
    """Activations of every layer for inputs ``x`` (input, ReLU hidden layers, output logits)."""
    out = [np.asarray(x, np.float32)]
    for i, (k, b) in enumerate(zip(net.kernels, net.biases, strict=True)):
        z = out[-1] @ k + b
        out.append(z if i == len(net.kernels) - 1 else np.maximum(z, 0))
    return out


def accuracy_scores(predictions: np.ndarray, y: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy (m,) and per-class accuracy (m, classes) of m rows of predicted labels."""
    correct = predictions == y[None, :]
    per_class = np.stack([np.bincount(y[row], minlength=n_classes) for row in correct])
    with np.errstate(invalid="ignore", divide="ignore"):
        return correct.mean(axis=1), per_class / np.bincount(y, minlength=n_classes)[None, :]


def first_lesioned_layers(lesions: Sequence[Lesion], default: int) -> list[int]:
    """The first layer with a lesioned unit of each lesion (``default`` when none is)."""
    return [min((layer for layer, n in lesion.items() if len(n)), default=default) for lesion in lesions]


class LesionEvaluator:
    """Accuracy (overall and per class) of many lesioned copies of one network, batched."""

    def __init__(self, net: MLP, x: np.ndarray, y: np.ndarray, n_classes: int | None = None, chunk: int = 8):
        self.net = net
        self.y = np.asarray(y, np.int64)
        self.n_classes = int(n_classes or self.y.max() + 1)
        self.chunk = chunk
        x = np.asarray(x, np.float32).reshape(len(self.y), -1)
        self.activations = forward(net, x)
        #: pre-activations z_l = a_{l-1} W + b of layers 1..L (index 0 unused)
        self.pre_activations = [x] + [a @ k + b for a, k, b in
                                      zip(self.activations[:-1], net.kernels, net.biases, strict=True)]

    def intact(self) -> tuple[float, np.ndarray]:
        """Accuracy and per-class accuracy of the intact network."""
        acc, per_class = accuracy_scores(self.activations[-1].argmax(axis=1)[None, :], self.y, self.n_classes)
        return float(acc[0]), per_class[0]

    def _run(self, lesions: Sequence[Lesion], first: int) -> np.ndarray:
        """Predictions of lesions whose first lesioned layer is ``first``.

        The next layer's pre-activation is the intact one minus the lesioned neurons'
        contribution (a product of size |S| instead of the whole layer); later layers are
        recomputed in one batched product per layer.
        """
        net, last = self.net, len(self.net.kernels)
        if first >= last:  # nothing lesioned
            return np.repeat(self.activations[-1].argmax(axis=1)[None], len(lesions), axis=0)
        kernel, before = net.kernels[first], self.activations[first]
        h = np.repeat(self.pre_activations[first + 1][None], len(lesions), axis=0)
        for i, lesion in enumerate(lesions):
            neurons = lesion[first]
            h[i] -= before[:, neurons] @ kernel[neurons, :]
        for layer in range(first + 1, last + 1):
            if layer > first + 1:
                h = h @ net.kernels[layer - 1] + net.biases[layer - 1]
            if layer < last:
                np.maximum(h, 0, out=h)
                for i, lesion in enumerate(lesions):
                    if layer in lesion:
                        h[i][:, lesion[layer]] = 0
        return h.argmax(axis=2)

    def evaluate(self, lesions: Sequence[Lesion]) -> tuple[np.ndarray, np.ndarray]:
        """Accuracy (m,) and per-class accuracy (m, classes) of each lesion, in order."""
        predictions = np.empty((len(lesions), self.y.size), np.int64)
        firsts = first_lesioned_layers(lesions, len(self.net.kernels))
        order = np.argsort(firsts, kind="stable")
        for start in range(0, len(order), self.chunk):
            idx = order[start:start + self.chunk]
            groups: dict[int, list[int]] = {}
            for i in idx:
                groups.setdefault(firsts[i], []).append(int(i))
            for first, members in groups.items():
                predictions[members] = self._run([lesions[i] for i in members], first)
        return accuracy_scores(predictions, self.y, self.n_classes)


@dataclass(frozen=True)
class SubModule:
    """Neurons of one hidden layer that share a cluster label."""

    layer: int
    cluster: int
    neurons: np.ndarray

    @property
    def size(self) -> int:
        """Number of neurons."""
        return int(self.neurons.size)

    @property
    def name(self) -> str:
        """``L<layer>C<cluster>``, e.g. ``L2C7``."""
        return f"L{self.layer}C{self.cluster}"


def _layer_labels(labels: np.ndarray, layer_sizes: Sequence[int], layer: int) -> np.ndarray:
    offsets = np.concatenate([[0], np.cumsum(layer_sizes)])
    return np.asarray(labels)[offsets[layer]:offsets[layer + 1]]


def active_neurons(labels: np.ndarray, layer_sizes: Sequence[int], layer: int) -> np.ndarray:
    """Indices of the non-isolated neurons of ``layer`` (label >= 0)."""
    return np.flatnonzero(_layer_labels(labels, layer_sizes, layer) >= 0)


def submodules(labels: np.ndarray, layer_sizes: Sequence[int], layers: Iterable[int] | None = None) -> list[SubModule]:
    """Every sub-module of ``layers`` (default: the hidden layers, every layer but the first and
    the last), by layer then cluster (isolated neurons excluded)."""
    if len(labels) != sum(layer_sizes):
        raise ValueError(f"{len(labels)} labels for {sum(layer_sizes)} neurons")
    out = []
    for layer in range(1, len(layer_sizes) - 1) if layers is None else layers:
        lab = _layer_labels(labels, layer_sizes, layer)
        for cluster in np.unique(lab[lab >= 0]):
            out.append(SubModule(layer, int(cluster), np.flatnonzero(lab == cluster)))
    return out


def random_sets(pool: np.ndarray, size: int, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``n`` random subsets of ``pool`` of ``size`` neurons each (without replacement)."""
    if size > pool.size:
        raise ValueError(f"cannot draw {size} neurons from a pool of {pool.size}")
    return [np.sort(rng.choice(pool, size, replace=False)) for _ in range(n)]


def classify(size: int, complete: bool, p: float, diff: float, n: int) -> Taxonomy:
    """The taxonomy of method.md §6.1, applied in order."""
    if complete:
        return Taxonomy.COMPLETE
    if size <= SMALL_SIZE:
        return Taxonomy.SMALL
    significant, different = p < 1 / n, diff <= DIFF_THRESHOLD
    if significant and different:
        return Taxonomy.IMPORTANT
    if p == 1 and not different:
        return Taxonomy.PRUNABLE
    if p == 1 and different:
        return Taxonomy.LEAST_IMPORTANT
    if significant:
        return Taxonomy.SIG_BUT_NOT_DIFF
    if different:
        return Taxonomy.DIFF_BUT_NOT_SIG
    return Taxonomy.OTHER


@dataclass(frozen=True)
class LesionConfig:
    """Random lesions per sub-module and the root seed (one child seed per sub-module)."""

    n_random: int = 100
    random_state: int = 42

    def __post_init__(self) -> None:
        validate_fields(self)


@dataclass(frozen=True)
class SingleLesionRow(Row):
    """One sub-module's lesion against random same-size lesions of its layer (method.md §6.1).

    ``acc_class`` holds the lesioned network's accuracy on each class; in the table it becomes
    the columns ``acc_class_0``, ``acc_class_1``, ... in place of the field.
    """

    layer: int
    cluster: int
    name: str
    size: int
    proportion: float
    acc: float
    intact_acc: float
    diff: float
    p_value: float
    random_mean: float
    random_sd: float
    z: float
    taxonomy: Taxonomy
    class_range: float
    range_p: float
    acc_class: tuple[float, ...]
    n_random: int
    random_state: int

    def as_dict(self) -> dict[str, Any]:
        """The row's columns, ``acc_class`` spread over one column per class."""
        out: dict[str, Any] = {}
        for name, value in super().as_dict().items():
            if name == "acc_class":
                out.update({f"acc_class_{c}": float(v) for c, v in enumerate(value)})
            else:
                out[name] = value
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SingleLesionRow:
        """The row back from :meth:`as_dict`'s output (the result cache stores that)."""
        per_class = sorted((int(k.removeprefix("acc_class_")), v) for k, v in values.items()
                           if k.startswith("acc_class_"))
        plain = {k: v for k, v in values.items() if not k.startswith("acc_class_")}
        return cls(**{**plain, "taxonomy": Taxonomy(plain["taxonomy"]),
                      "acc_class": tuple(float(v) for _, v in per_class)})


@dataclass(frozen=True)
class ImportanceRow(Row):
    """One network's single lesions combined (method.md §6.3): do its sub-modules, taken
    together, hurt the network more than random same-size lesions do? The sub-modules that are
    their whole layer are left out (their random lesions are the same set)."""

    n_submodules: int
    n_important: int
    fisher_p: float
    count_chi2: float
    count_p: float
    range_fisher_p: float
    range_count_chi2: float
    range_count_p: float
    n_random: int
    random_state: int


def combined_importance(rows: Sequence[SingleLesionRow]) -> ImportanceRow:
    """The :class:`ImportanceRow` of one network's :class:`SingleLesionRow` s: Fisher's
    combination and the rank-count chi-square test of their accuracy p-values and of their
    class-range p-values."""
    kept = [r for r in rows if r.taxonomy != Taxonomy.COMPLETE]
    n_random = rows[0].n_random if rows else 0
    p = np.array([r.p_value for r in kept])
    range_p = np.array([r.range_p for r in kept])
    statistic, count_p = rank_count_test(p, n_random)
    range_statistic, range_count_p = rank_count_test(range_p, n_random)
    return ImportanceRow(
        n_submodules=len(kept), n_important=sum(r.taxonomy == Taxonomy.IMPORTANT for r in kept),
        fisher_p=fisher_combined_p(p, n_random), count_chi2=statistic, count_p=count_p,
        range_fisher_p=fisher_combined_p(range_p, n_random), range_count_chi2=range_statistic,
        range_count_p=range_count_p, n_random=n_random, random_state=rows[0].random_state if rows else 0,
    )


def class_range(intact_class: np.ndarray, lesioned_class: np.ndarray) -> np.ndarray:
    """The successor paper's class range of each lesion (method.md §6.3): the spread (max -
    min) over classes of the per-class accuracy drops divided by their mean, ptp(drop) /
    |mean drop|; 0 where no class changes, inf where the drops cancel to a zero mean (below
    1e-12: rounding).

    Parameters
    ----------
    intact_class : numpy.ndarray
        The intact network's accuracy on each class, ``(classes,)``.
    lesioned_class : numpy.ndarray
        Each lesion's accuracy on each class, ``(lesions, classes)``.

    Returns
    -------
    numpy.ndarray
        One value per lesion.
    """
    drops = np.asarray(intact_class, np.float64)[None, :] - np.asarray(lesioned_class, np.float64)
    spread, mean = np.ptp(drops, axis=1), np.abs(drops.mean(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(spread == 0, 0.0, np.where(mean > 1e-12, spread / mean, np.inf))


def _progress(items: Iterable, total: int, desc: str, enabled: bool):
    return progress_bar(items, total=total, desc=desc, unit="sub-module", enabled=enabled)


def single_lesion_test(
    evaluator: LesionEvaluator,
    labels: np.ndarray,
    config: LesionConfig = LesionConfig(),
    progress: bool = True,
) -> tuple[list[SingleLesionRow], dict[str, np.ndarray]]:
    """Each sub-module's lesion against ``n_random`` random same-size lesions of its layer.

    Returns one row per sub-module and the random lesions' accuracies by sub-module name.
    """
    net = evaluator.net
    modules = submodules(labels, net.layer_sizes, net.lesionable_layers)
    intact, intact_class = evaluator.intact()
    seeds = np.random.SeedSequence(config.random_state).spawn(max(1, len(modules)))
    rows, randoms = [], {}
    for module, seed in _progress(zip(modules, seeds, strict=False), len(modules), "single lesions", progress):
        pool = active_neurons(labels, net.layer_sizes, module.layer)
        rng = np.random.default_rng(seed)
        draws = random_sets(pool, module.size, config.n_random, rng)
        accs, per_class = evaluator.evaluate([{module.layer: module.neurons}] + [{module.layer: d} for d in draws])
        true_acc, random_accs = float(accs[0]), accs[1:]
        p = empirical_p(true_acc, random_accs)
        mean, sd = float(random_accs.mean()), float(random_accs.std(ddof=1)) if config.n_random > 1 else np.nan
        diff = true_acc - intact
        complete = module.size == pool.size
        ranges = class_range(intact_class, per_class)
        rows.append(SingleLesionRow(
            layer=module.layer, cluster=module.cluster, name=module.name, size=module.size,
            proportion=module.size / net.layer_sizes[module.layer], acc=true_acc, intact_acc=intact,
            diff=diff, p_value=p, random_mean=mean, random_sd=sd,
            z=(true_acc - mean) / sd if sd > 0 else np.nan,
            taxonomy=classify(module.size, complete, p, diff, config.n_random),
            class_range=float(ranges[0]), range_p=exceed_p(float(ranges[0]), ranges[1:]),
            acc_class=tuple(float(v) for v in per_class[0]),
            n_random=config.n_random, random_state=config.random_state,
        ))
        randoms[module.name] = random_accs
    return rows, randoms


def _union(*parts: tuple[int, np.ndarray]) -> Lesion:
    """One lesion of several (layer, neurons) parts.

    Parameters
    ----------
    *parts : tuple of (int, numpy.ndarray)
        Hidden layer index and neuron indices; parts of one layer are merged.

    Returns
    -------
    Lesion
        Layer -> the sorted union of its parts' neurons (``int64``).
    """
    out: dict[int, np.ndarray] = {}
    for layer, neurons in parts:
        out[layer] = np.union1d(out.get(layer, np.array([], np.int64)), neurons).astype(np.int64)
    return out


def _joint_random(
    x_module: SubModule,
    y_module: SubModule,
    pools: tuple[np.ndarray, np.ndarray],
    n_random: int,
    rng: np.random.Generator,
) -> list[Lesion]:
    """Random stand-ins for the joint lesion of X and Y.

    Parameters
    ----------
    x_module, y_module : SubModule
        The sub-modules X and Y.
    pools : tuple of numpy.ndarray
        The active neurons of X's layer and of Y's layer (:func:`active_neurons`).
    n_random : int
        Number of random lesions.
    rng : numpy.random.Generator
        Source of the draws.

    Returns
    -------
    list of Lesion
        In one layer, a random set the size of X's and Y's union; in two layers, a random set
        the size of X in X's layer and one the size of Y in Y's.
    """
    x_pool, y_pool = pools
    joint_random: list[Lesion] = []
    for _ in range(n_random):
        if x_module.layer == y_module.layer:
            both = rng.choice(x_pool, len(np.union1d(x_module.neurons, y_module.neurons)), replace=False)
            joint_random.append({x_module.layer: np.sort(both)})
        else:
            joint_random.append({x_module.layer: rng.choice(x_pool, x_module.size, replace=False),
                                 y_module.layer: rng.choice(y_pool, y_module.size, replace=False)})
    return joint_random


def _conditional_random(
    x_module: SubModule, y_module: SubModule, x_pool: np.ndarray, n_random: int, rng: np.random.Generator
) -> list[Lesion]:
    """Random stand-ins for lesioning X once Y is lesioned.

    Parameters
    ----------
    x_module, y_module : SubModule
        The sub-modules X and Y.
    x_pool : numpy.ndarray
        The active neurons of X's layer (:func:`active_neurons`).
    n_random : int
        Number of random lesions.
    rng : numpy.random.Generator
        Source of the draws (:func:`random_sets`).

    Returns
    -------
    list of Lesion
        Y together with a random set of X's size (at most the pool's) in X's layer that
        excludes Y's neurons.
    """
    excluded = np.setdiff1d(x_pool, y_module.neurons) if x_module.layer == y_module.layer else x_pool
    cond_size = min(x_module.size, excluded.size)
    return [_union((y_module.layer, y_module.neurons), (x_module.layer, d))
            for d in random_sets(excluded, cond_size, n_random, rng)]


def _joint_fields(acc_xy: float, joint: np.ndarray, n_random: int) -> dict[str, Any]:
    """The joint lesion's fields of a :class:`DoubleLesionRow`.

    Parameters
    ----------
    acc_xy : float
        Accuracy with X and Y lesioned.
    joint : numpy.ndarray
        Accuracies of the random joint lesions (:func:`_joint_random`).
    n_random : int
        Their number (the SD is NaN below 2).

    Returns
    -------
    dict
        ``joint_p``, ``joint_random_mean``, ``joint_random_sd`` and ``joint_z``.
    """
    sd_joint = float(joint.std(ddof=1)) if n_random > 1 else np.nan
    return {
        "joint_p": empirical_p(acc_xy, joint), "joint_random_mean": float(joint.mean()),
        "joint_random_sd": sd_joint,
        "joint_z": (acc_xy - float(joint.mean())) / sd_joint if sd_joint > 0 else np.nan,
    }


def _conditional_fields(acc_y: float, acc_xy: float, cond: np.ndarray, n_random: int) -> dict[str, Any]:
    """The conditional lesion's fields of a :class:`DoubleLesionRow`.

    Parameters
    ----------
    acc_y, acc_xy : float
        Accuracy with Y lesioned, and with X and Y lesioned.
    cond : numpy.ndarray
        Accuracies of Y with a random set in X's layer (:func:`_conditional_random`).
    n_random : int
        Their number (the SD is NaN below 2; a p-value below 1 / n_random is significant).

    Returns
    -------
    dict
        ``cond_effect`` s(X|Y) = acc(Y) - acc(X and Y), ``cond_p``, ``cond_random_mean``,
        ``cond_random_sd``, ``cond_z`` (of the effect against the random effects) and
        ``cond_important`` (significant, and an effect of at least ``-DIFF_THRESHOLD``).
    """
    effect = acc_y - acc_xy
    random_effects = acc_y - cond
    sd_cond = float(random_effects.std(ddof=1)) if n_random > 1 else np.nan
    p_cond = empirical_p(acc_xy, cond)
    return {
        "cond_effect": effect, "cond_p": p_cond, "cond_random_mean": float(random_effects.mean()),
        "cond_random_sd": sd_cond,
        "cond_z": (effect - float(random_effects.mean())) / sd_cond if sd_cond > 0 else np.nan,
        "cond_important": bool(p_cond < 1 / n_random and effect >= -DIFF_THRESHOLD),
    }


def double_lesion_pair(
    evaluator: LesionEvaluator,
    labels: np.ndarray,
    x_module: SubModule,
    y_module: SubModule,
    n_random: int,
    rng: np.random.Generator,
) -> dict:
    """Joint and conditional lesion of sub-modules X and Y (method.md §6.2); the measured
    fields of a :class:`DoubleLesionRow`.

    *Joint*: X and Y lesioned together against X and Y replaced by random same-size sets of
    their layers. *Conditional*: with Y lesioned, lesioning X too against a random set in X's
    layer that excludes Y's neurons; effect s(X|Y) = acc(Y) - acc(X and Y).
    """
    sizes = evaluator.net.layer_sizes
    x_pool = active_neurons(labels, sizes, x_module.layer)
    y_pool = active_neurons(labels, sizes, y_module.layer)
    joint_random = _joint_random(x_module, y_module, (x_pool, y_pool), n_random, rng)
    cond_random = _conditional_random(x_module, y_module, x_pool, n_random, rng)
    lesions = [
        {y_module.layer: y_module.neurons},
        _union((x_module.layer, x_module.neurons), (y_module.layer, y_module.neurons)),
        *joint_random,
        *cond_random,
    ]
    accs, _ = evaluator.evaluate(lesions)
    acc_y, acc_xy = float(accs[0]), float(accs[1])
    return {
        "x": x_module.name, "y": y_module.name, "x_layer": x_module.layer, "y_layer": y_module.layer,
        "x_size": x_module.size, "y_size": y_module.size,
        "acc_y": acc_y, "acc_xy": acc_xy,
        **_joint_fields(acc_xy, accs[2:2 + n_random], n_random),
        **_conditional_fields(acc_y, acc_xy, accs[2 + n_random:], n_random),
    }


#: Pairs between two checkpoints of an interruptible double lesion test.
CHECKPOINT_EVERY = 25


@dataclass(frozen=True)
class DoubleLesionRow(Row):
    """One ordered pair (X, Y) of sub-modules, lesioned jointly and conditionally (method.md §6.2)."""

    x: str
    y: str
    x_layer: int
    y_layer: int
    x_size: int
    y_size: int
    acc_y: float
    acc_xy: float
    joint_p: float
    joint_random_mean: float
    joint_random_sd: float
    joint_z: float
    cond_effect: float
    cond_p: float
    cond_random_mean: float
    cond_random_sd: float
    cond_z: float
    cond_important: bool
    x_single: Taxonomy | None
    y_single: Taxonomy | None
    x_important_alone: bool
    verdict_changed: bool
    n_random: int
    random_state: int

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DoubleLesionRow:
        """The row back from :meth:`as_dict`'s output (the result cache stores that)."""
        row = super().from_dict(values)
        verdicts = {k: None if values[k] is None else Taxonomy(values[k]) for k in ("x_single", "y_single")}
        return cls(**{**row.__dict__, **verdicts})


#: Columns of a double-lesion row (besides provenance), in order.
DOUBLE_LESION_COLUMNS = DoubleLesionRow.columns()


def double_lesion_test(
    evaluator: LesionEvaluator,
    labels: np.ndarray,
    single_rows: Sequence[SingleLesionRow],
    n_random: int = 50,
    random_state: int = 42,
    modules: Sequence[SubModule] | None = None,
    progress: bool = True,
    done: Sequence[DoubleLesionRow] = (),
    checkpoint: Callable[[list[DoubleLesionRow]], None] | None = None,
    checkpoint_every: int | None = None,
) -> list[DoubleLesionRow]:
    """Every ordered pair (X, Y), X != Y, of ``modules`` (default: every sub-module that is not
    ``small`` or ``complete``); each row says whether X's single-lesion verdict (important or
    not) changes when Y is already lesioned.

    Resumable: each pair draws from its own seed (spawned by its position in the list of
    pairs), so the rows of an interrupted run (``done``, the first pairs in order) are kept and
    the rest computed, giving the same rows as one uninterrupted run. ``checkpoint`` receives
    the rows so far every ``checkpoint_every`` pairs (default :data:`CHECKPOINT_EVERY`)."""
    verdict = {r.name: r.taxonomy for r in single_rows}
    if modules is None:
        modules = [m for m in submodules(labels, evaluator.net.layer_sizes, evaluator.net.lesionable_layers)
                   if verdict.get(m.name) not in (Taxonomy.SMALL, Taxonomy.COMPLETE)]
    pairs = [(x, y) for x in modules for y in modules if x.name != y.name]
    every = checkpoint_every or CHECKPOINT_EVERY
    rows = list(done)
    if [(r.x, r.y) for r in rows] != [(x.name, y.name) for x, y in pairs[:len(rows)]]:
        raise NnClusteringError("the saved double-lesion rows do not match this run's pairs; delete them and rerun")
    seeds = np.random.SeedSequence(random_state).spawn(max(1, len(pairs)))
    todo = list(zip(pairs, seeds, strict=False))[len(rows):]
    for (x, y), s in _progress(todo, len(todo), "double lesions", progress):
        measured = double_lesion_pair(evaluator, labels, x, y, n_random, np.random.default_rng(s))
        alone = verdict.get(x.name) == Taxonomy.IMPORTANT
        rows.append(DoubleLesionRow(
            **measured, x_single=verdict.get(x.name), y_single=verdict.get(y.name), x_important_alone=alone,
            verdict_changed=alone != measured["cond_important"], n_random=n_random, random_state=random_state,
        ))
        if checkpoint is not None and len(rows) % every == 0 and len(rows) < len(pairs):
            checkpoint(rows)
    return rows


def dependency_edges(double_rows: Sequence[DoubleLesionRow]) -> list[tuple[str, str, float]]:
    """Edges Y -> X between important sub-modules: X is important alone but no longer
    significantly so once Y is lesioned (X's function depends on Y); weight s(X|Y)."""
    return [(r.y, r.x, float(r.cond_effect)) for r in double_rows
            if r.x_single == Taxonomy.IMPORTANT and r.y_single == Taxonomy.IMPORTANT and r.verdict_changed]
