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

from dataclasses import dataclass, field, replace

import numpy as np

from ..core.dag import Feed, Piece, Wiring
from ..core.graph import NetworkWeights, network_kind
from ..errors import ModelError

#: The producer of units that come straight from the network input.
INPUT = -1


def _scaled_sources(x: Units) -> tuple[Source, ...]:
    """``x``'s sources with its pending scale moved onto each of them (their own factors)."""
    if x.scale is None:
        return x.sources
    out = []
    for s in x.sources:
        part = x.scale[s.offset:s.offset + s.length]
        out.append(replace(s, scale=part if s.scale is None else s.scale * part))
    return tuple(out)


def ungrouped(kernel: np.ndarray, groups: int, error) -> np.ndarray:
    """A grouped convolution's kernel (*spatial, in / groups, out) as the full kernel
    (*spatial, in, out) of the same layer: output channel o reads the inputs of its group
    o // (out / groups) and no other (zeros elsewhere, method.md §3.2). ``error(text)`` makes
    the exception for a kernel whose outputs do not split into ``groups``."""
    if groups == 1:
        return kernel
    per_in, n_out = kernel.shape[-2], kernel.shape[-1]
    if groups < 1 or n_out % groups:
        raise error(f"has {n_out} output channels, which do not split into {groups} groups")
    per_out = n_out // groups
    full = np.zeros((*kernel.shape[:-2], per_in * groups, n_out))
    for g in range(groups):
        full[..., g * per_in:(g + 1) * per_in, g * per_out:(g + 1) * per_out] = kernel[..., g * per_out:(g + 1) * per_out]
    return full


@dataclass(frozen=True)
class Source:
    """Units ``[start, start + length)`` of ``producer`` (a weighted layer's index, or
    :data:`INPUT`) at positions ``[offset, offset + length)`` of a tensor, multiplied by
    ``scale`` (one factor per unit, None: 1) where a sum joined it to differently scaled
    tensors."""

    producer: int
    start: int
    offset: int
    length: int
    scale: np.ndarray | None = field(default=None, compare=False)

    def piece(self, group: int) -> Piece:
        """This source as a piece of the graph's wiring, from ``group``."""
        scale = () if self.scale is None else tuple(float(v) for v in self.scale)
        return Piece(group, self.start, self.offset, self.length, scale)


@dataclass(frozen=True)
class Units:
    """What the units (features or channels) of one tensor are made of.

    ``fresh`` is the weighted layer whose linear output this tensor is (a batch normalisation
    can be folded into it), else None. ``head`` marks a flattened conv feature map: the dense
    layers reading it form a CNN's head, which is not part of its channel graph. ``scale`` is a
    per-unit factor not yet folded into a kernel (a layer norm's gamma, a batch norm that does
    not directly follow a weighted layer): the next weighted layer multiplies its rows by it
    (method.md §3.3). ``pooled`` marks channels pooled over their spatial positions (a global
    pooling), which a convolution may read (squeeze-and-excitation) and a flatten makes a head.
    """

    sources: tuple[Source, ...]
    size: int
    fresh: int | None = None
    head: bool = False
    scale: np.ndarray | None = None
    pooled: bool = False

    def but(self, **changes) -> Units:
        """A copy with ``changes``; ``fresh`` is dropped unless given (the tensor is no longer
        a weighted layer's linear output)."""
        return replace(self, **{"fresh": None, **changes})


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

    def weighted(self, name: str, kernel: np.ndarray, bias: np.ndarray | None, x: Units, linear: bool,
                 groups: int = 1) -> Units:
        """A Dense layer (kernel (in, out)) or a convolution (kernel (*spatial, in / groups, out),
        1 to 3 spatial axes) reading ``x``; ``linear``: its output is not passed through an
        activation inside the layer. A convolution is kept as (h, w, in, out), its spatial axes
        merged (a slice's norm is over all its entries, method.md §3.2); a grouped one
        (``groups`` > 1; depthwise: one group per input channel) becomes its block-diagonal
        full kernel (:func:`ungrouped`)."""
        kernel = np.asarray(kernel, np.float64)
        if kernel.ndim not in (2, 3, 4, 5):
            raise self._error(f"layer {name!r} has a kernel of shape {kernel.shape}; expected a dense (in, out) "
                              "or a 1-D to 3-D convolution's kernel")
        if kernel.ndim > 2:
            kernel = ungrouped(kernel, groups, lambda text: self._error(f"layer {name!r} {text}"))
            kernel = kernel.reshape(1, -1, *kernel.shape[-2:]) if kernel.ndim != 4 else kernel
        n_in, n_out = kernel.shape[-2], kernel.shape[-1]
        if x.size >= 0 and n_in != x.size:  # a flattened feature map of unknown shape has size -1
            raise self._error(f"layer {name!r} has {n_in} inputs but reads a tensor of {x.size} units")
        if x.scale is not None:  # a normalisation's per-unit scale, folded into this layer's rows
            kernel = kernel * x.scale[:, None]
        self.layers.append(_Layer(name, kernel, self._bias(name, bias, n_out), x.sources, x.head))
        index = len(self.layers) - 1
        return Units((Source(index, 0, 0, n_out),), n_out, fresh=index if linear else None)

    def _bias(self, name: str, bias: np.ndarray | None, n_out: int) -> np.ndarray:
        """A layer's bias as ``n_out`` values: one per output, or one value for all."""
        if bias is None:
            return np.zeros(n_out)
        bias = np.asarray(bias, np.float64)
        if bias.size not in (1, n_out):
            raise self._error(f"layer {name!r} has {n_out} outputs but a bias of shape {bias.shape}; the file's "
                              "kernel and bias do not belong together (a transposed or corrupt layer)")
        return np.broadcast_to(bias.reshape(-1), (n_out,)).copy()

    def add_bias(self, x: Units, bias: np.ndarray) -> Units:
        """A constant added to a weighted layer's output joins its bias (an MLP exported as
        MatMul + Add); added anywhere else it changes no weight of the graph."""
        if x.fresh is not None:
            layer = self.layers[x.fresh]
            layer.bias = layer.bias + np.broadcast_to(np.asarray(bias, np.float64), layer.bias.shape)
        return x

    def rescale(self, x: Units, scale: np.ndarray, shift: np.ndarray | None = None, sole_reader: bool = False) -> Units:
        """A per-unit affine map y = scale * x + shift (an inference-mode batch norm, a layer
        scale, a constant factor): folded into the weighted layer whose linear output it reads
        when it is that output's only reader (output unit c's kernel column times scale_c, its
        bias b_c scale_c + shift_c: exact); otherwise kept as the tensor's pending ``scale``,
        which the next weighted layer multiplies into its rows (method.md §3.3)."""
        scale = np.broadcast_to(np.asarray(scale, np.float64).reshape(-1), (max(x.size, 1),))
        if x.fresh is not None and sole_reader:
            layer = self.layers[x.fresh]
            layer.kernel = layer.kernel * scale
            shift = 0.0 if shift is None else np.broadcast_to(np.asarray(shift, np.float64).reshape(-1), scale.shape)
            layer.bias = layer.bias * scale + shift
            return x
        return x.but(scale=scale.copy() if x.scale is None else x.scale * scale)

    def normalise(self, x: Units, gamma: np.ndarray | None) -> Units:
        """A normalisation over the units (layer norm, group norm, RMS norm): it passes units
        through, and its per-unit ``gamma`` (None: 1) waits for the next weighted layer's rows."""
        return x.but() if gamma is None else self.rescale(x.but(), gamma)

    def passthrough(self, x: Units) -> Units:
        """An operation that does not mix units (activation, pooling, dropout, padding)."""
        return x.but()

    def pool(self, x: Units) -> Units:
        """A global pooling: one unit per channel, still those channels (method.md §3.3)."""
        return x.but(pooled=True)

    def select(self, x: Units, indices: np.ndarray) -> Units:
        """The units of ``x`` at ``indices``, in that order: a slice or split along the units'
        axis, or a permutation of them (ShuffleNet's channel shuffle)."""
        idx = np.asarray(indices, np.int64).reshape(-1)
        sources = []
        for s in x.sources:
            new = np.nonzero((idx >= s.offset) & (idx < s.offset + s.length))[0]
            units = idx[new] - s.offset + s.start
            breaks = np.nonzero((np.diff(new) != 1) | (np.diff(units) != 1))[0] + 1
            for at, run in zip(np.split(new, breaks), np.split(units, breaks), strict=True):
                if at.size:
                    scale = None if s.scale is None else s.scale[run - s.start]
                    sources.append(Source(s.producer, int(run[0]), int(at[0]), int(at.size), scale))
        return Units(tuple(sources), int(idx.size), None, x.head, None if x.scale is None else x.scale[idx], x.pooled)

    def multiply(self, name: str, xs: list[Units]) -> Units:
        """An element-wise product of activations (a gate: squeeze-and-excitation, a gated
        linear unit): unit i of each factor reaches unit i of the product, as in a sum."""
        return self.add(name, xs, "product")

    def add(self, name: str, xs: list[Units], what: str = "sum") -> Units:
        """An element-wise sum: every summand's units reach the same positions."""
        sizes = {x.size for x in xs}
        if len(sizes) != 1:
            raise self._error(f"{what} {name!r} joins tensors of {sorted(sizes)} units; it needs equal widths")
        if any(x.head for x in xs):
            raise self._error(f"{what} {name!r} joins flattened feature maps; only units or channels can be joined")
        scales = [x.scale for x in xs]
        if all(s is None for s in scales) or all(s is not None and np.array_equal(s, scales[0]) for s in scales):
            sources = tuple(dict.fromkeys(s for x in xs for s in x.sources))
            return Units(sources, xs[0].size, scale=scales[0], pooled=all(x.pooled for x in xs))
        # summands scaled differently: each keeps its own scale on its sources
        sources = tuple(s for x in xs for s in _scaled_sources(x))
        return Units(sources, xs[0].size, pooled=all(x.pooled for x in xs))

    def concat(self, name: str, xs: list[Units]) -> Units:
        """A concatenation along the units (channel) axis: each part keeps its own slice."""
        if any(x.head for x in xs):
            raise self._error(f"concatenation {name!r} joins flattened feature maps; only concatenations "
                              "along the channel axis are supported")
        sources, offset = [], 0
        for x in xs:
            sources += [replace(s, offset=s.offset + offset) for s in x.sources]
            offset += x.size
        scale = None
        if any(x.scale is not None for x in xs):
            scale = np.concatenate([np.ones(x.size) if x.scale is None else x.scale for x in xs])
        return Units(tuple(sources), offset, scale=scale)

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
            Feed(i + 1, tuple(s.piece(group[s.producer]) for s in layer.sources))
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
            if any(from_input) and not all(from_input):
                raise self._error(f"conv layer {layer.name!r} reads the network input together with "
                                  "conv channels; the input is not part of a CNN's channel graph")
            # units of dense layers inside a CNN (a squeeze-and-excitation written with Linear
            # layers) are not channels: only conv-to-conv kernels form the graph
            pieces = tuple(s.piece(group[s.producer]) for s in layer.sources if s.producer in group)
            if pieces:
                feeds.append(Feed(group[i], pieces))
                used.append(i)
        if not feeds:
            raise self._error(f"a CNN needs at least two conv layers for a channel graph (found {len(conv)}); "
                              "only conv-to-conv kernels form it")
        return Wiring(tuple(self.layers[i].name for i in conv),
                      tuple(self.layers[i].kernel.shape[-1] for i in conv), tuple(feeds), tuple(used))
