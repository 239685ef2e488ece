"""The project's vocabularies as string enums, each checked where a value enters.

A member is its string (``ShuffleMethod.LAYER == "layer"``), so tables, JSON files and cache
keys hold the plain strings. :meth:`Choice.parse` turns user input into a member, or raises one
:class:`~nn_clustering.errors.ParameterError` that lists the valid values.
"""

from __future__ import annotations

from enum import StrEnum

from ..errors import ParameterError


class Choice(StrEnum):
    """A string enum with one parsing path for user input."""

    @classmethod
    def label(cls) -> str:
        """What a value of this enum is called in messages."""
        return cls.__name__.lower()

    @classmethod
    def parse(cls, value: str, name: str | None = None) -> Choice:
        """The member whose value is ``value``; a :class:`ParameterError` naming the valid ones
        (and the parameter ``name``, if given)."""
        try:
            return cls(value)
        except ValueError:
            where = f" for {name}" if name else ""
            raise ParameterError(
                f"unknown {cls.label()} {value!r}{where}; use one of {', '.join(map(repr, cls.values()))}"
            ) from None

    @classmethod
    def values(cls) -> tuple[str, ...]:
        """Every value, in definition order."""
        return tuple(m.value for m in cls)


class ShuffleMethod(Choice):
    """How the shuffle test permutes each kernel (method.md §5)."""

    LAYER = "layer"  #: every entry among the units of non-isolated nodes, zeros included (the paper's)
    LAYER_NONZERO = "layer_nonzero"  #: the non-zero values among the non-zero positions
    LAYER_FULL = "layer_full"  #: every entry of the whole kernel, dead units' rows and columns included

    @classmethod
    def label(cls) -> str:
        return "shuffle method"


class SliceNorm(Choice):
    """How a conv kernel slice K[:, :, i, j] becomes one channel-graph edge weight (method.md §3.2)."""

    L1 = "l1"  #: entrywise L1 norm, sum |K[:, :, i, j]|
    L2 = "l2"  #: Frobenius norm
    #: the successor paper's np.linalg.norm(|K[:, :, i, j]|, 1): the induced matrix 1-norm, the
    #: largest over the slice's columns (width positions) of the sum of |K| down the column
    INDUCED_L1 = "induced-l1"

    @classmethod
    def label(cls) -> str:
        return "slice norm"


class Stage(Choice):
    """Which of an instance's two saved networks (method.md §2)."""

    DENSE = "dense"  #: after training, before pruning
    PRUNED = "pruned"  #: after pruning to 90% sparsity

    @classmethod
    def label(cls) -> str:
        return "stage"


class Architecture(Choice):
    """The kind of network, and so the kind of graph (method.md §3)."""

    MLP = "mlp"  #: Dense kernels only: one node per neuron
    CNN = "cnn"  #: conv kernels first: one node per channel of each conv layer

    @classmethod
    def label(cls) -> str:
        return "architecture"


class Task(Choice):
    """What a network is trained to do (method.md §2)."""

    CLASSIFY = "classify"  #: softmax over classes, cross-entropy, accuracy
    REGRESS = "regress"  #: linear outputs, mean squared error (the successor's polynomials)

    @classmethod
    def label(cls) -> str:
        return "task"


class PairSelection(Choice):
    """Which pairs of sub-modules the double lesion test runs (method.md §6.2)."""

    ALL = "all"  #: every ordered pair of sub-modules that are not small or complete
    IMPORTANT = "important"  #: only pairs of important sub-modules

    @classmethod
    def label(cls) -> str:
        return "pair selection"


class Taxonomy(Choice):
    """The verdict of a single lesion, applied in this order (method.md §6.1)."""

    COMPLETE = "complete"
    SMALL = "small"
    IMPORTANT = "important"
    PRUNABLE = "prunable"
    LEAST_IMPORTANT = "least_important"
    SIG_BUT_NOT_DIFF = "sig-but-not-diff"
    DIFF_BUT_NOT_SIG = "diff-but-not-sig"
    OTHER = "other"

    @classmethod
    def label(cls) -> str:
        return "lesion verdict"


class GraphKind(Choice):
    """Which graph of a network is clustered (method.md §3, §3.6)."""

    WEIGHTS = "weights"  #: units joined by |w| (method.md §3)
    ACTIVATIONS = "activations"  #: units joined by how alike their activations are over a dataset

    @classmethod
    def label(cls) -> str:
        return "graph"


class Measure(Choice):
    """How alike two units' activations over a dataset are: an activation graph's edge weight
    (method.md §3.6)."""

    PEARSON = "pearson"  #: r squared of the Pearson correlation
    SPEARMAN = "spearman"  #: r squared of the Spearman rank correlation (ties: average ranks)
    COACTIVATION = "coactivation"  #: the share of examples on which both units are active (> 0)

    @classmethod
    def label(cls) -> str:
        return "activation measure"


class ActivationNull(Choice):
    """How an activation graph's shuffles are drawn (method.md §5.1)."""

    EDGES = "edges"  #: every edge weight permuted among all pairs of units (the successor's)
    LAYER_PAIRS = "layer_pairs"  #: edge weights permuted among the pairs of the same two layers

    @classmethod
    def label(cls) -> str:
        return "activation null"


class Partitioner(Choice):
    """How a graph is split into clusters (method.md §4, §4.1)."""

    SPECTRAL = "spectral"  #: spectral clustering into k clusters (the n-cut's partitioner)
    LEIDEN = "leiden"  #: Leiden, maximising Newman's modularity at a resolution
    LOUVAIN = "louvain"  #: Louvain, maximising Newman's modularity at a resolution

    @classmethod
    def label(cls) -> str:
        return "partitioner"
