"""The public estimators, in the style of scikit-learn: keyword-only parameters set in
``__init__``, checked and used by ``fit``, results in attributes ending with ``_``.

:class:`SpectralNCut` clusters one network's weight graph; :class:`ShuffleTest` also compares its
n-cut with shuffled copies of the network. ``fit`` accepts every form of a network that
:func:`nn_clustering.formats.as_weights` converts: the path of a model file (``.npz``, ``.keras``,
``.h5``, ``.onnx``, ``.safetensors``, ``.pt``), a Keras model, a list of kernel arrays in layer
order, or :class:`~nn_clustering.core.graph.NetworkWeights`.
Every parameter is checked against the one table of constraints
(:data:`nn_clustering.core.parameters.PARAMETERS`, the names the configs, the command line and
the result rows share) when ``fit`` starts, and a bad one raises
:class:`~nn_clustering.errors.ParameterError`, which is both the project's error and a
``ValueError``.
"""

from __future__ import annotations

import inspect
from dataclasses import fields
from typing import Any

import numpy as np

from .core.activation_shuffle import activation_shuffle_test
from .core.activations import ActivationGraph
from .core.dag import DagGraph
from .core.enums import GraphKind, Partitioner
from .core.graph import Graph, NetworkWeights, graph_inputs, group_names
from .core.modularity import modularity
from .core.parameters import validate
from .core.partition import Partition, partition_graph
from .core.shuffle import ShuffleConfig, ShuffleTestResult, observed_clustering, shuffle_test
from .core.spectral import Clustering, SpectralConfig
from .core.stats import ShuffleStats
from .errors import GraphError, NnClusteringError, ParameterError
from .formats.activations import build_activation_graph
from .formats.loader import as_weights

#: The estimator parameters a :class:`ShuffleConfig` takes (its fields).
SHUFFLE_PARAMETERS = tuple(field.name for field in fields(ShuffleConfig))


def _same(value: Any, default: Any) -> bool:
    """Whether a parameter holds its default (arrays, such as ``data``, never do)."""
    return value is default or (not isinstance(value, np.ndarray) and type(value) is type(default) and value == default)


def _short(value: Any) -> str:
    return f"<array {value.shape}>" if isinstance(value, np.ndarray) else repr(value)


class NotFittedError(NnClusteringError, AttributeError):
    """A fitted attribute was read before ``fit`` was called."""


class _Estimator:
    """``get_params``, ``set_params`` and a readable ``repr``, as scikit-learn's estimators have."""

    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return [p.name for p in signature.parameters.values() if p.kind == p.KEYWORD_ONLY]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The estimator's parameters as ``{name: value}``."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> _Estimator:
        """Set parameters by name (checked at the next ``fit``); returns the estimator."""
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise ParameterError(f"{type(self).__name__} has no parameter {name!r}; use one of {', '.join(valid)}")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = {p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()}
        changed = [f"{k}={_short(v)}" for k, v in self.get_params().items() if not _same(v, defaults.get(k))]
        return f"{type(self).__name__}({', '.join(changed)})"

    def _fitted(self, name: str) -> Any:
        try:
            return self.__dict__[name]
        except KeyError:
            raise NotFittedError(f"{type(self).__name__} is not fitted yet; call fit(network) before reading {name}") from None

    def _validated(self) -> dict[str, Any]:
        """Every parameter checked against :data:`~nn_clustering.core.parameters.PARAMETERS`."""
        return validate(self.get_params())

    def _prepare(self, network) -> tuple[dict[str, Any], list[np.ndarray], Any, SpectralConfig]:
        """What both estimators' ``fit`` start with: the checked parameters, the network read
        (``weights_``) and its graph built (``graph_``, which checks the kernels), the kernels
        and graph builder, and the spectral configuration."""
        params = self._validated()
        spectral = SpectralConfig(n_clusters=params["n_clusters"], n_init=params["n_init"]) if "n_clusters" in params else None
        if params.get("graph") == GraphKind.ACTIVATIONS:
            if params["data"] is None:
                raise ParameterError("graph='activations' needs data: an array of inputs or an .npz of them (a "
                                     "dataset's: nn_clustering.data.activation_inputs('mnist'))")
            self.weights_ = None
            self.graph_ = build_activation_graph(network, params["data"], params["measure"],
                                                 progress=params.get("progress", False))
            return params, [], None, spectral
        self.weights_: NetworkWeights = as_weights(network)
        kernels, builder = graph_inputs(self.weights_, params["norm"], params["drop_dead_ends"])
        try:
            self.graph_: Graph | DagGraph = builder(kernels)
        except GraphError as exc:  # name the file the kernels came from
            source = self.weights_.source
            raise GraphError(f"{source}: {exc}" if source and not str(exc).startswith(source) else str(exc)) from None
        return params, kernels, builder, spectral

    @property
    def labels_(self) -> np.ndarray:
        return self.clustering_.labels

    @property
    def ncut_(self) -> float:
        return self.clustering_.ncut

    @property
    def labels_by_layer_(self) -> list[np.ndarray]:
        return self._fitted("graph_").split_by_layer(self.labels_)

    @property
    def layer_names_(self) -> list[str]:
        graph = self._fitted("graph_")
        if isinstance(graph, ActivationGraph):
            return list(graph.names)
        return group_names(self._fitted("weights_"))

    @property
    def modularity_(self) -> float:
        graph = self._fitted("graph_")
        adjacency, _ = graph.without_isolated(dense=False)
        return modularity(adjacency, self.labels_[graph.active])

    @property
    def labels_by_name_(self) -> dict[str, np.ndarray]:
        return dict(zip(self.layer_names_, self.labels_by_layer_, strict=True))


class _ClusterMixin:
    """``fit_predict`` of the estimators that only partition (scikit-learn's ``ClusterMixin``)."""

    def fit_predict(self, network, y=None) -> np.ndarray:
        """:meth:`fit`, then return :attr:`labels_`."""
        return self.fit(network).labels_


class SpectralNCut(_ClusterMixin, _Estimator):
    """Spectral clustering of a network's weight graph, scored by normalised cut.

    The network becomes a graph with one node per neuron (a CNN: one per conv channel) and
    edges weighted by |w|; nodes without edges are left out (label -1). The graph is split
    into ``n_clusters`` clusters by spectral clustering with k-means++ restarts, and the
    partition is scored by its n-cut: 0 for disconnected modules, higher when more weight
    crosses between clusters (method.md §3-§4).

    Parameters
    ----------
    n_clusters : int, default=4
        Number of clusters k (at least 2, below the number of connected nodes).
    n_init : int, default=25
        k-means restarts; the partition of lowest inertia wins.
    norm : {"l1", "l2"}, default="l1"
        How a conv kernel slice K[:, :, i, j] becomes one edge weight (CNNs only).
    drop_dead_ends : bool, default=False
        First remove the units on no input-to-output path (method.md §8).
    graph : {"weights", "activations"}, default="weights"
        Which graph to cluster: the weight graph (|w| edges, method.md §3) or the activation graph
        of ``data`` (units joined by how alike their activations are, method.md §3.6).
    data : path or ndarray, default=None
        For ``graph="activations"``: the inputs, one example per row (images are flattened), or
        the path of an ``.npz`` holding them; a project dataset's test split is
        ``nn_clustering.data.activation_inputs("mnist")``.
    measure : {"spearman", "pearson", "coactivation"}, default="spearman"
        The activation graph's edge weight: r squared, or the share of examples on which both
        units are active. The graph joins every pair of hidden units; one graph per layer is
        :func:`nn_clustering.formats.activations.build_layer_graphs`, partitioned by
        :func:`nn_clustering.core.partition.layer_partitions`.
    random_state : int, default=42
        Root seed. The clustering is the one :class:`ShuffleTest` reports for the unshuffled
        network under the same root seed.

    Attributes
    ----------
    labels_ : ndarray of shape (n_nodes,)
        Cluster of every node, layer by layer (inputs first); -1 for nodes without edges.
    labels_by_layer_ : list of ndarray
        ``labels_`` split by layer (a CNN's layers are its conv layers).
    layer_names_ : list of str
        The name of each group of nodes: ``input``, then each weighted layer's name as the
        model file records it (Keras layer names, PyTorch module paths in ONNX and
        state_dict files); a CNN's groups are its conv layers.
    labels_by_name_ : dict of str to ndarray
        ``labels_by_layer_`` keyed by those names: unit i of layer ``name`` is in cluster
        ``labels_by_name_[name][i]``.
    ncut_ : float
        The partition's normalised cut, in [0, k].
    modularity_ : float
        Newman's modularity Q of the partition on the same graph (method.md §4.1).
    clustering_ : Clustering
        Labels, n-cut and k together.
    graph_ : Graph, DagGraph or ActivationGraph
        The graph that was clustered.
    weights_ : NetworkWeights or None
        The network's kernels as read (None for an activation graph).

    Examples
    --------
    Two modules of 3 inputs -> 2 hidden -> 1 output, joined by weak weights:

    >>> import numpy as np
    >>> from nn_clustering import SpectralNCut
    >>> hidden = np.kron(np.eye(2), np.ones((3, 2))) + 0.01
    >>> output = np.kron(np.eye(2), np.ones((2, 1))) + 0.01
    >>> model = SpectralNCut(n_clusters=2, random_state=0).fit([hidden, output])
    >>> [layer.tolist() for layer in model.labels_by_layer_]
    [[1, 1, 1, 0, 0, 0], [1, 1, 0, 0], [1, 0]]
    >>> round(model.ncut_, 3)
    0.02
    """

    def __init__(self, *, n_clusters: int = 4, n_init: int = 25, norm: str = "l1",
                 drop_dead_ends: bool = False, graph: str = "weights", data=None, measure: str = "spearman",
                 random_state: int = 42):
        self.n_clusters = n_clusters
        self.n_init = n_init
        self.norm = norm
        self.drop_dead_ends = drop_dead_ends
        self.graph = graph
        self.data = data
        self.measure = measure
        self.random_state = random_state

    def fit(self, network, y=None) -> SpectralNCut:
        """Cluster ``network`` (a path, a Keras model, a list of kernels or NetworkWeights).

        ``y`` is ignored (scikit-learn's signature). Returns the fitted estimator.
        """
        params, _, _, spectral = self._prepare(network)
        self._clustering = observed_clustering(self.graph_, spectral, params["random_state"])
        return self

    @property
    def clustering_(self) -> Clustering:
        return self._fitted("_clustering")


class ShuffleTest(_Estimator):
    """Is the network more clusterable than copies of it with each layer's weights shuffled?

    Clusters the network as :class:`SpectralNCut` does, then ``n_shuffles`` copies whose
    weight matrices (conv kernels: whole slices) are permuted within each layer, each
    re-clustered from scratch. The one-sided p-value is (#{shuffled <= observed} + 1) / (N + 1),
    and the network is significantly more clusterable than its shuffles when p <= ``level``; N
    shuffles cannot support a claim at a level below 1 / (N + 1), and then none is made
    (method.md §5). Shuffle i draws from its own child of the root seed, so the result does not
    depend on ``n_jobs`` or the scheduler.

    Parameters
    ----------
    n_clusters : int, default=4
        Number of clusters k.
    n_shuffles : int, default=320
        Number of shuffled networks N; the smallest p-value is 1 / (N + 1).
    method : {"layer", "layer_nonzero"}, default="layer"
        ``layer`` permutes every entry of each matrix, zeros included; ``layer_nonzero`` only
        the non-zero values among the non-zero positions (keeps a pruned net's sparsity).
    n_init : int, default=25
        k-means restarts per clustering.
    norm : {"l1", "l2"}, default="l1"
        Edge weight of a conv kernel slice (CNNs only).
    drop_dead_ends : bool, default=False
        Remove units on no input-to-output path first, in the network and every shuffle.
    graph : {"weights", "activations"}, default="weights"
        Which graph to cluster: the weight graph (|w| edges, method.md §3) or the activation graph
        of ``data`` (units joined by how alike their activations are, method.md §3.6).
    data : path or ndarray, default=None
        For ``graph="activations"``: the inputs, one example per row (images are flattened), or
        the path of an ``.npz`` holding them; a project dataset's test split is
        ``nn_clustering.data.activation_inputs("mnist")``.
    measure : {"spearman", "pearson", "coactivation"}, default="spearman"
        The activation graph's edge weight: r squared, or the share of examples on which both
        units are active. The graph joins every pair of hidden units; one graph per layer is
        :func:`nn_clustering.formats.activations.build_layer_graphs`, partitioned by
        :func:`nn_clustering.core.partition.layer_partitions`.
    null : {"layer_pairs", "edges"}, default="layer_pairs"
        Activation graphs only: permute the edge weights among the pairs of the same two layers,
        or among all pairs (the successor paper's); ``method`` is for weight graphs (method.md
        §5.1).
    n_jobs : int, default=1
        Local worker processes (-1: one per core).
    scheduler : str or None, default=None
        Run the shuffles on dask.distributed: ``"local"`` or a scheduler address.
    random_state : int, default=42
        Root seed of the observed clustering and of every shuffle.
    level : float, default=0.05
        Significance level: significant when p <= level. Needs at least 1 / level - 1
        shuffles (19 at 0.05) to be reachable.
    progress : bool, default=True
        Show a progress bar of the shuffles with a time estimate (on stderr; in Jupyter, a
        widget).

    Attributes
    ----------
    clustering_ : Clustering
        The unshuffled network's clustering (equal to ``SpectralNCut(random_state=...)``'s).
    labels_ : ndarray of shape (n_nodes,)
        Its labels, -1 for nodes without edges.
    labels_by_layer_ : list of ndarray
        ``labels_`` split by layer.
    layer_names_ : list of str
        The name of each group of nodes: ``input``, then each weighted layer's name as the
        model file records it (Keras layer names, PyTorch module paths in ONNX and
        state_dict files); a CNN's groups are its conv layers.
    labels_by_name_ : dict of str to ndarray
        ``labels_by_layer_`` keyed by those names: unit i of layer ``name`` is in cluster
        ``labels_by_name_[name][i]``.
    ncut_ : float
        Its n-cut.
    shuffled_ncuts_ : ndarray of shape (n_shuffles,)
        The shuffled networks' n-cuts, in shuffle order.
    stats_ : ShuffleStats
        observed, mean, sd, z, p_value, significant, below_all, level and n together;
        ``stats_.verdict()`` says it in words.
    p_value_, z_ : float
        One-sided empirical p-value and z-score of the observed n-cut (z is NaN, undefined,
        when the shuffled n-cuts' SD is 0).
    significant_ : bool
        Whether p <= ``level`` (False when ``n_shuffles`` is too small to reach the level).
    below_all_ : bool
        The paper's criterion: the observed n-cut lies strictly below every shuffled one
        (p = 1 / (N + 1)).
    graph_ : Graph or DagGraph
        The weight graph of the unshuffled network.
    weights_ : NetworkWeights
        The network's kernels as read.

    Examples
    --------
    >>> import numpy as np
    >>> from nn_clustering import ShuffleTest
    >>> hidden = np.kron(np.eye(2), np.ones((3, 2))) + 0.01
    >>> output = np.kron(np.eye(2), np.ones((2, 1))) + 0.01
    >>> test = ShuffleTest(n_clusters=2, n_shuffles=20, random_state=0).fit([hidden, output])
    >>> bool(test.significant_), round(test.p_value_, 4)
    (True, 0.0476)
    """

    def __init__(self, *, n_clusters: int = 4, n_shuffles: int = 320, method: str = "layer", n_init: int = 25,
                 norm: str = "l1", drop_dead_ends: bool = False, graph: str = "weights", data=None,
                 measure: str = "spearman", null: str = "layer_pairs", n_jobs: int = 1,
                 scheduler: str | None = None, random_state: int = 42, level: float = 0.05, progress: bool = True):
        self.n_clusters = n_clusters
        self.n_shuffles = n_shuffles
        self.method = method
        self.n_init = n_init
        self.norm = norm
        self.drop_dead_ends = drop_dead_ends
        self.graph = graph
        self.data = data
        self.measure = measure
        self.null = null
        self.n_jobs = n_jobs
        self.scheduler = scheduler
        self.random_state = random_state
        self.level = level
        self.progress = progress

    def fit(self, network, y=None) -> ShuffleTest:
        """Cluster ``network`` and ``n_shuffles`` shuffles of it; ``y`` is ignored."""
        params, kernels, builder, spectral = self._prepare(network)  # the kernels checked before any shuffle
        config = ShuffleConfig(**{name: params[name] for name in SHUFFLE_PARAMETERS})
        if isinstance(self.graph_, ActivationGraph):
            self.result_: ShuffleTestResult = activation_shuffle_test(self.graph_, spectral, config, params["null"],
                                                                      params["progress"])
            return self
        self.result_ = shuffle_test(kernels, spectral, config, builder, params["progress"], graph=self.graph_)
        return self

    @property
    def clustering_(self) -> Clustering:
        return self._fitted("result_").clustering

    @property
    def shuffled_ncuts_(self) -> np.ndarray:
        return self._fitted("result_").shuffled_ncuts

    @property
    def stats_(self) -> ShuffleStats:
        return self._fitted("result_").stats

    @property
    def p_value_(self) -> float:
        return self.stats_.p_value

    @property
    def z_(self) -> float:
        return self.stats_.z

    @property
    def significant_(self) -> bool:
        return self.stats_.significant

    @property
    def below_all_(self) -> bool:
        return self.stats_.below_all

    def to_dict(self) -> dict[str, Any]:
        """Everything as JSON-ready values: n-cut, labels (per node and per layer), the
        statistics, every shuffled n-cut, the parameters and the graph's layer sizes."""
        graph = self._fitted("graph_")
        return {
            **self._fitted("result_").as_dict(),
            "layer_sizes": list(graph.layer_sizes),
            "layers": [{"name": name, "size": int(len(labels)), "labels": labels.tolist()}
                       for name, labels in self.labels_by_name_.items()],
            "cluster_sizes_by_layer": self.clustering_.sizes_by_layer(graph),
            "random_state": self.random_state,
            "drop_dead_ends": self.drop_dead_ends,
        }


class CommunityPartition(_ClusterMixin, _Estimator):
    """Leiden or Louvain on a network's weight or activation graph: the partition of highest
    Newman modularity found at a resolution, with its n-cut beside it (method.md §4.1).

    The number of clusters follows from the graph and the resolution (higher: more, smaller
    clusters). Nodes are visited in an order drawn from ``random_state``, so the same seed gives
    the same partition.

    Parameters
    ----------
    partitioner : {"leiden", "louvain"}, default="leiden"
        The modularity maximiser.
    resolution : float, default=1.0
        Newman's resolution (above 0).
    norm : {"l1", "l2", "induced-l1"}, default="l1"
        Edge weight of a conv kernel slice (CNN weight graphs only).
    drop_dead_ends : bool, default=False
        First remove the units on no input-to-output path (weight graphs).
    graph : {"weights", "activations"}, default="weights"
        Which graph to cluster: the weight graph (|w| edges, method.md §3) or the activation graph
        of ``data`` (units joined by how alike their activations are, method.md §3.6).
    data : path or ndarray, default=None
        For ``graph="activations"``: the inputs, one example per row (images are flattened), or
        the path of an ``.npz`` holding them; a project dataset's test split is
        ``nn_clustering.data.activation_inputs("mnist")``.
    measure : {"spearman", "pearson", "coactivation"}, default="spearman"
        The activation graph's edge weight: r squared, or the share of examples on which both
        units are active. The graph joins every pair of hidden units; one graph per layer is
        :func:`nn_clustering.formats.activations.build_layer_graphs`, partitioned by
        :func:`nn_clustering.core.partition.layer_partitions`.
    random_state : int, default=42
        Seed of the node order.

    Attributes
    ----------
    labels_ : ndarray of shape (n_nodes,)
        Cluster of every node, -1 for isolated ones.
    labels_by_layer_, layer_names_, labels_by_name_
        As :class:`SpectralNCut`'s.
    n_clusters_ : int
        Number of clusters found.
    modularity_ : float
        Newman's Q of the partition.
    ncut_ : float
        Its n-cut.
    partition_ : Partition
        All of these together.
    graph_, weights_
        As :class:`SpectralNCut`'s.

    Examples
    --------
    >>> import numpy as np
    >>> from nn_clustering import CommunityPartition
    >>> hidden = np.kron(np.eye(2), np.ones((3, 2))) + 0.01
    >>> output = np.kron(np.eye(2), np.ones((2, 1))) + 0.01
    >>> model = CommunityPartition(random_state=0).fit([hidden, output])
    >>> model.n_clusters_, round(model.modularity_, 3)
    (2, 0.49)
    """

    def __init__(self, *, partitioner: str = "leiden", resolution: float = 1.0, norm: str = "l1",
                 drop_dead_ends: bool = False, graph: str = "weights", data=None, measure: str = "spearman",
                 random_state: int = 42):
        self.partitioner = partitioner
        self.resolution = resolution
        self.norm = norm
        self.drop_dead_ends = drop_dead_ends
        self.graph = graph
        self.data = data
        self.measure = measure
        self.random_state = random_state

    def fit(self, network, y=None) -> CommunityPartition:
        """Partition ``network``'s graph; ``y`` is ignored. Returns the fitted estimator."""
        params, _, _, _ = self._prepare(network)
        if params["partitioner"] not in (Partitioner.LEIDEN, Partitioner.LOUVAIN):
            raise ParameterError(f"partitioner must be 'leiden' or 'louvain', not {self.partitioner!r}; spectral "
                                 "clustering is SpectralNCut")
        self.partition_: Partition = partition_graph(self.graph_, params["partitioner"], params["resolution"],
                                                     params["random_state"])
        return self

    @property
    def labels_(self) -> np.ndarray:
        return self._fitted("partition_").labels

    @property
    def n_clusters_(self) -> int:
        return self._fitted("partition_").n_clusters

    @property
    def ncut_(self) -> float:
        return self._fitted("partition_").ncut

    @property
    def modularity_(self) -> float:
        return self._fitted("partition_").modularity
