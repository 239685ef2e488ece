"""Reading a directed acyclic network into :class:`~nn_clustering.core.graph.NetworkWeights`,
the same way for every framework (method.md §3).

A model reader (Keras, ONNX) walks its model's operations in topological order and reports
each one to a :class:`WiringRecorder`: the input, each weighted layer (Dense/Gemm/MatMul,
Conv2D/Conv) with the tensor it reads, batch normalisations (folded into the layer before
them), sums, concatenations, flattening, and operations that do not mix units (activations,
pooling, dropout, padding). The recorder tracks what every tensor's units are made of (which
group's units, at which position) and finally builds the kernels, biases and the
:class:`~nn_clustering.core.dag.Wiring` of the graph. Pure numpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..core.dag import Feed, Piece, Wiring
from ..core.graph import NetworkWeights, network_kind
from ..errors import ModelError

#: The producer of units that come straight from the network input.
INPUT = -1


@dataclass(frozen=True)
class Source:
    """Units ``[start, start + length)`` of ``producer`` (a weighted layer's index, or
    :data:`INPUT`) at positions ``[offset, offset + length)`` of a tensor."""

    producer: int
    start: int
    offset: int
    length: int


@dataclass(frozen=True)
class Units:
    """What the units (features or channels) of one tensor are made of.

    ``fresh`` is the weighted layer whose linear output this tensor is (a batch normalisation
    can be folded into it), else None. ``head`` marks a flattened conv feature map: the dense
    layers reading it form a CNN's head, which is not part of its channel graph.
    """

    sources: tuple[Source, ...]
    size: int
    fresh: int | None = None
    head: bool = False


@dataclass
class _Layer:
    name: str
    kernel: np.ndarray
    bias: np.ndarray
    sources: tuple[Source, ...]
    head: bool


@dataclass
class WiringRecorder:
    """Collects a network's operations in topological order (see the module docstring)."""

    source: str = ""
    layers: list[_Layer] = field(default_factory=list)
    input_size: int = 0

    def _error(self, message: str) -> ModelError:
        return ModelError(f"{self.source}: {message}" if self.source else message)

    def input(self, size: int) -> Units:
        """The network input, with ``size`` features (or channels of an image)."""
        if self.input_size:
            raise self._error("the model has more than one input; only single-input networks form a graph")
        self.input_size = int(size)
        return Units((Source(INPUT, 0, 0, int(size)),), int(size))

    def weighted(self, name: str, kernel: np.ndarray, bias: np.ndarray | None, x: Units, linear: bool) -> Units:
        """A Dense (kernel (in, out)) or Conv2D (kernel (h, w, in, out)) layer reading ``x``;
        ``linear``: its output is not passed through an activation inside the layer."""
        kernel = np.asarray(kernel, np.float64)
        n_in, n_out = kernel.shape[-2], kernel.shape[-1]
        if x.size >= 0 and n_in != x.size:  # a flattened feature map of unknown shape has size -1
            raise self._error(f"layer {name!r} has {n_in} inputs but reads a tensor of {x.size} units")
        bias = np.zeros(n_out) if bias is None else np.broadcast_to(np.asarray(bias, np.float64), (n_out,)).copy()
        self.layers.append(_Layer(name, kernel, bias, x.sources, x.head))
        index = len(self.layers) - 1
        return Units((Source(index, 0, 0, n_out),), n_out, fresh=index if linear else None)

    def add_bias(self, x: Units, bias: np.ndarray) -> Units:
        """A constant added to a weighted layer's output joins its bias (an MLP exported as
        MatMul + Add); added anywhere else it changes no weight of the graph."""
        if x.fresh is not None:
            layer = self.layers[x.fresh]
            layer.bias = layer.bias + np.broadcast_to(np.asarray(bias, np.float64), layer.bias.shape)
        return x

    def batchnorm(self, name: str, x: Units, scale: np.ndarray, shift: np.ndarray, sole_reader: bool,
                  after: str = "") -> Units:
        """An inference-mode batch normalisation y = scale * x + shift, folded into the weighted
        layer whose output it reads directly (output unit c's kernel column times scale_c);
        ``after`` names the operation that produced its input (for the error)."""
        if x.fresh is None or not sole_reader:
            where = (f"sits after {after!r}, not directly after a Dense/Conv layer without activation"
                     if x.fresh is None else f"shares its input (the output of {after!r}) with other operations")
            raise self._error(
                f"batch normalisation {name!r} {where}, so it cannot be folded into a kernel (a "
                "pre-activation or post-sum batch norm, as in DenseNet); only batch norms directly after "
                "a weighted layer can be read: put it between the layer and its activation"
            )
        layer = self.layers[x.fresh]
        layer.kernel = layer.kernel * scale
        layer.bias = layer.bias * scale + shift
        return x

    def passthrough(self, x: Units) -> Units:
        """An operation that does not mix units (activation, pooling, dropout, padding)."""
        return Units(x.sources, x.size, None, x.head)

    def add(self, name: str, xs: list[Units]) -> Units:
        """An element-wise sum: every summand's units reach the same positions."""
        sizes = {x.size for x in xs}
        if len(sizes) != 1:
            raise self._error(f"sum {name!r} adds tensors of {sorted(sizes)} units; a residual sum needs equal widths")
        if any(x.head for x in xs):
            raise self._error(f"sum {name!r} adds flattened feature maps; only sums of units or channels are supported")
        return Units(tuple(s for x in xs for s in x.sources), xs[0].size)

    def concat(self, name: str, xs: list[Units]) -> Units:
        """A concatenation along the units (channel) axis: each part keeps its own slice."""
        if any(x.head for x in xs):
            raise self._error(f"concatenation {name!r} joins flattened feature maps; only concatenations "
                              "along the channel axis are supported")
        sources, offset = [], 0
        for x in xs:
            sources += [Source(s.producer, s.start, s.offset + offset, s.length) for s in x.sources]
            offset += x.size
        return Units(tuple(sources), offset)

    def flatten(self, x: Units, size: int, spatial: bool) -> Units:
        """Flattening to ``size`` units. The input image flattened gives ``size`` input features
        (an MLP on images); a conv feature map flattened feeds a CNN's dense head."""
        if not spatial:
            return self.passthrough(x)
        if all(s.producer == INPUT for s in x.sources):
            if self.input_size and len(self.layers) == 0:
                self.input_size = int(size)
            return Units((Source(INPUT, 0, 0, int(size)),), int(size))
        return Units((), int(size), None, True)

    # ------------------------------------------------------------------ the result

    def finish(self) -> NetworkWeights:
        """Kernels and biases in topological order, layer names, and the wiring of the graph
        (None when it is a plain chain, which needs none)."""
        if not self.layers:
            raise self._error("the model has no Dense or Conv layers to cluster")
        kernels = [layer.kernel for layer in self.layers]
        kind = network_kind(kernels, self.source)
        names = [layer.name for layer in self.layers]
        wiring = self._cnn_wiring() if kind == "cnn" else self._mlp_wiring()
        weights = NetworkWeights(kernels, [layer.bias for layer in self.layers], kind, self.source, names)
        if not wiring.is_chain():  # a chain's graph kernels are all kernels (MLP) or conv[1:] (CNN)
            weights.wiring = wiring
        return weights

    def _mlp_wiring(self) -> Wiring:
        """Groups: the input, then every dense layer's outputs."""
        group = {INPUT: 0} | {i: i + 1 for i in range(len(self.layers))}
        feeds = tuple(
            Feed(i + 1, tuple(Piece(group[s.producer], s.start, s.offset, s.length) for s in layer.sources))
            for i, layer in enumerate(self.layers)
        )
        return Wiring(
            ("input", *(layer.name for layer in self.layers)),
            (self.input_size, *(layer.kernel.shape[-1] for layer in self.layers)),
            feeds, tuple(range(len(self.layers))),
        )

    def _cnn_wiring(self) -> Wiring:
        """Groups: every conv layer's output channels; feeds: the conv layers that read conv
        channels (conv-to-conv kernels, method.md §3). A conv layer reading the input is a
        group without a feed; the dense head is not part of the graph."""
        conv = [i for i, layer in enumerate(self.layers) if layer.kernel.ndim == 4]
        group = {i: g for g, i in enumerate(conv)}
        feeds, used = [], []
        for i in conv:
            layer = self.layers[i]
            from_input = [s.producer == INPUT for s in layer.sources]
            if all(from_input):
                continue
            if any(from_input):
                raise self._error(f"conv layer {layer.name!r} reads the network input together with "
                                  "conv channels; the input is not part of a CNN's channel graph")
            feeds.append(Feed(group[i], tuple(Piece(group[s.producer], s.start, s.offset, s.length)
                                              for s in layer.sources)))
            used.append(i)
        if not feeds:
            raise self._error(f"a CNN needs at least two conv layers for a channel graph (found {len(conv)}); "
                              "only conv-to-conv kernels form it")
        return Wiring(tuple(self.layers[i].name for i in conv),
                      tuple(self.layers[i].kernel.shape[-1] for i in conv), tuple(feeds), tuple(used))
