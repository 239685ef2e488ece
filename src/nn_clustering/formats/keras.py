"""The weights of a Keras model, read as a directed acyclic network (method.md §3.3-§3.4).

Every Keras model, ``Sequential``, functional or with models nested in it (a
``keras.applications`` base called inside a functional model, a ``Sequential`` stem), is read
by one walk: :func:`walk_calls` flattens the model's graph into the calls of its layers in
topological order, an inner model's inputs mapped to the outer tensors it is called on, and
:func:`weights_of_keras_model` hands each call to the handler of its layer class in
:data:`LAYERS`. A handler reads the layer's weights and reports what it does to a
:class:`~nn_clustering.formats.wiring.WiringRecorder`: a weighted layer (Dense, Conv1D/2D/3D,
depthwise and separable convolutions), a per-unit scale (batch, layer and group norms, ConvNeXt's
layer scale), a sum, gate or concatenation, a flatten, a global pooling, or units passed
through. Supporting a new layer class is one handler and one entry in :data:`LAYERS`; a layer
whose class is not there is refused with one line naming it (:data:`REFUSED` gives the reason
for recurrent and attention layers).

Keras is imported lazily, inside the functions that need it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.graph import NetworkWeights
from ..errors import ModelError, quoted
from .keras_file import check_keras_file
from .limits import one_line, shape_text
from .wiring import Units, WiringRecorder

#: Where a refusal points the reader: the list of layers the graph builder follows.
LISTED = "docs/method.md §3.4 lists the layers it follows"


def flat_layers(model) -> list:
    """The model's layers in order, nested models expanded; a clear error for branching models
    (the chain of layers that the channel lesion evaluator runs)."""
    import keras

    inputs = getattr(model, "inputs", None) or []
    outputs = getattr(model, "outputs", None) or []
    if len(inputs) > 1 or len(outputs) > 1:
        raise ModelError(
            f"model {model.name!r} has {len(inputs)} inputs and {len(outputs)} outputs; only a single "
            "chain of layers (one input, one output) can be turned into a graph"
        )
    out = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            out += flat_layers(layer)
        else:
            out.append(layer)
    return out


# --------------------------------------------------------------------------- the walk's state


@dataclass
class Call:
    """One call of a layer (or of a ``keras.ops`` operation): the layer, the tensors it reads
    and makes, the units of what it reads (``xs``, in the order of ``inputs``) and its
    positional arguments (``args``: tensors and, for an operation, constants)."""

    layer: Any
    inputs: list
    outputs: list
    xs: list[Units]
    args: tuple = ()
    is_layer: bool = True

    @property
    def kind(self) -> str:
        return type(self.layer).__name__

    @property
    def label(self) -> str:
        """How an error names the layer (its name can be anything a file holds)."""
        return quoted(self.layer.name)

    @property
    def x(self) -> Units:
        return self.xs[0]

    @property
    def rank(self) -> int:
        """The rank of the (first) input, batch axis included."""
        return len(self.inputs[0].shape)

    @property
    def shape(self) -> tuple:
        """The static shape of the (first) output, batch axis included."""
        return tuple(self.outputs[0].shape)


@dataclass
class Walk:
    """What the walk over a model's layer calls knows: the recorder, the units of every tensor
    computed so far, how many calls read each tensor (``readers``: a batch norm or layer scale
    alone reading a layer's output folds into it), the call that made each tensor
    (``made``: to see x * sigmoid(x)), and ``alias``: an inner model's input tensors mapped to
    the outer tensors it is called on, and the outer outputs to the inner ones. Tensors are
    keyed by :meth:`key`."""

    source: str
    rec: WiringRecorder
    units: dict[int, Units] = field(default_factory=dict)
    readers: Counter[int] = field(default_factory=Counter)
    made: dict[int, Call] = field(default_factory=dict)
    alias: dict[int, int] = field(default_factory=dict)
    seen: set[int] = field(default_factory=set)

    def key(self, tensor) -> int:
        """The tensor's key: its id, followed through :attr:`alias` to the tensor it stands for."""
        k = id(tensor)
        while k in self.alias:
            k = self.alias[k]
        return k

    def error(self, text: str) -> ModelError:
        """The one-line error ``{source}: {text}`` (just ``text`` without a source)."""
        return ModelError(f"{self.source}: {text}" if self.source else text)

    def refuse(self, call: Call, text: str) -> ModelError:
        """The one-line error ``{source}: layer {name} ({class}) {text}``."""
        return self.error(f"layer {call.label} ({call.kind}) {text}")

    def sole_reader(self, call: Call) -> bool:
        """Whether the call is the only reader of its (first) input tensor."""
        return self.readers[self.key(call.inputs[0])] == 1


#: A handler: the units of a layer call's output.
Handler = Callable[[Walk, Call], Units]


def _array(value) -> np.ndarray:
    return np.asarray(value, np.float64)


def _is_linear(layer) -> bool:
    activation = getattr(layer, "activation", None)
    return activation is None or getattr(activation, "__name__", "") == "linear"


def _bias(layer) -> np.ndarray | None:
    return _array(layer.bias) if getattr(layer, "use_bias", False) and layer.bias is not None else None


def _last_axis(walk: Walk, call: Call, axis, what: str) -> None:
    """Refuse a layer whose ``axis`` (an int or a list of one) is not the input's last axis."""
    axes = list(axis) if isinstance(axis, list | tuple) else [axis]
    if len(axes) != 1 or int(axes[0]) % call.rank != call.rank - 1:
        raise walk.refuse(call, f"{what} over axis {axis}; only the last (channel) axis is supported")


def _channels_last(walk: Walk, call: Call) -> None:
    fmt = getattr(call.layer, "data_format", "channels_last")
    if fmt != "channels_last":
        raise walk.refuse(call, f"uses {fmt}; only channels_last layers are supported")


# --------------------------------------------------------------------------- weighted layers


def _input(walk: Walk, call: Call) -> Units:
    """``InputLayer``: the network input, its units on the last axis.

    Parameters
    ----------
    walk : Walk
        The walk's state.
    call : Call
        The input layer's call (it reads nothing; an inner model's input layers are not
        walked: their tensors stand for the outer ones).

    Returns
    -------
    Units
        The input's units; a second input, or one of unknown width, is refused.
    """
    if call.shape[-1] is None:
        raise walk.refuse(call, f"has the shape {call.shape[1:]}, whose last (units) axis is not known; give the "
                                "model's input a fixed number of features or channels")
    return walk.rec.input(int(call.shape[-1]))


def _dense(walk: Walk, call: Call) -> Units:
    """``Dense``: a dense layer on a (batch, units) input; on a feature map (rank 3 to 5, as in
    ConvNeXt's pointwise layers) it acts on the last axis at every position, a 1 x 1
    convolution, so its kernel gets unit spatial axes.

    Parameters
    ----------
    walk : Walk
        The walk's state.
    call : Call
        The Dense layer's call.

    Returns
    -------
    Units
        The layer's output units.
    """
    kernel = _array(call.layer.kernel)
    if not 2 <= call.rank <= 5:
        raise walk.refuse(call, f"reads a tensor of rank {call.rank}; expected 2 to 5")
    kernel = kernel.reshape((1,) * (call.rank - 2) + kernel.shape)
    return walk.rec.weighted(call.layer.name, kernel, _bias(call.layer), call.x, _is_linear(call.layer))


def _conv(walk: Walk, call: Call) -> Units:
    """``Conv1D``/``Conv2D``/``Conv3D``: a convolution, grouped or not (its kernel (*spatial,
    in / groups, out) expanded to the block-diagonal full kernel by the recorder).

    Parameters
    ----------
    walk : Walk
        The walk's state.
    call : Call
        The convolution's call; channels_first is refused.

    Returns
    -------
    Units
        The layer's output channels.
    """
    _channels_last(walk, call)
    layer = call.layer
    return walk.rec.weighted(layer.name, _array(layer.kernel), _bias(layer), call.x, _is_linear(layer),
                             groups=int(getattr(layer, "groups", 1)))


def _depthwise_kernel(kernel: np.ndarray) -> tuple[np.ndarray, int]:
    """A depthwise kernel (*spatial, C, m) as the grouped kernel (*spatial, 1, C m) with C
    groups: output channel c m + j reads input channel c alone."""
    *spatial, channels, multiplier = kernel.shape
    return kernel.reshape(*spatial, 1, channels * multiplier), channels


def _depthwise(walk: Walk, call: Call) -> Units:
    """``DepthwiseConv1D``/``DepthwiseConv2D``: one group per input channel, each with
    ``depth_multiplier`` outputs (:func:`_depthwise_kernel`).

    Parameters
    ----------
    walk : Walk
        The walk's state.
    call : Call
        The depthwise convolution's call; channels_first is refused.

    Returns
    -------
    Units
        The layer's output channels.
    """
    _channels_last(walk, call)
    kernel, groups = _depthwise_kernel(_array(call.layer.kernel))
    return walk.rec.weighted(call.layer.name, kernel, _bias(call.layer), call.x, _is_linear(call.layer),
                             groups=groups)


def _separable(walk: Walk, call: Call) -> Units:
    """``SeparableConv1D``/``SeparableConv2D``: two weighted layers, ``<name>/depthwise``
    (linear, without bias) and then ``<name>/pointwise`` (a 1 x 1 convolution with the
    layer's bias and activation).

    Parameters
    ----------
    walk : Walk
        The walk's state.
    call : Call
        The separable convolution's call; channels_first is refused.

    Returns
    -------
    Units
        The pointwise layer's output channels.
    """
    _channels_last(walk, call)
    layer, rec = call.layer, walk.rec
    kernel, groups = _depthwise_kernel(_array(layer.depthwise_kernel))
    depthwise = rec.weighted(f"{layer.name}/depthwise", kernel, None, call.x, linear=True, groups=groups)
    return rec.weighted(f"{layer.name}/pointwise", _array(layer.pointwise_kernel), _bias(layer), depthwise,
                        _is_linear(layer))


# --------------------------------------------------------------------------- per-unit scales


def _batchnorm(walk: Walk, call: Call) -> Units:
    """``BatchNormalization`` over the last axis, in inference mode: y = s x + t with
    s = gamma / sqrt(var + eps), t = beta - mean s; folded into the layer whose linear output it
    alone reads, else s waits for the next layer's rows (method.md §3.3).

    Parameters
    ----------
    walk : Walk
        The walk's state.
    call : Call
        The batch norm's call; another axis is refused.

    Returns
    -------
    Units
        The units (unchanged, or carrying the pending scale).
    """
    layer = call.layer
    _last_axis(walk, call, layer.axis, "normalises")
    units = int(call.shape[-1])
    gamma = _array(layer.gamma) if layer.scale else np.ones(units)
    beta = _array(layer.beta) if layer.center else np.zeros(units)
    scale = gamma / np.sqrt(_array(layer.moving_variance) + layer.epsilon)
    shift = beta - _array(layer.moving_mean) * scale
    return walk.rec.rescale(call.x, scale, shift, walk.sole_reader(call))


def _layernorm(walk: Walk, call: Call) -> Units:
    """``LayerNormalization`` and ``RMSNormalization`` over the last axis: the units pass
    through and the per-unit gamma waits for the next layer's rows.

    Parameters
    ----------
    walk : Walk
        The walk's state.
    call : Call
        The normalisation's call; one over other or several axes is refused.

    Returns
    -------
    Units
        The units carrying the pending gamma (none without ``scale``).
    """
    layer = call.layer
    _last_axis(walk, call, layer.axis, "normalises")
    if call.kind == "RMSNormalization":
        gamma = layer.scale
    else:
        gamma = layer.gamma if layer.scale or getattr(layer, "rms_scaling", False) else None
    return walk.rec.normalise(call.x, None if gamma is None else _array(gamma).reshape(-1))


def _groupnorm(walk: Walk, call: Call) -> Units:
    """``GroupNormalization`` of the last (channel) axis: the channels pass through and the
    per-channel gamma (Keras keeps one per channel, not per group) waits for the next layer's
    rows.

    Parameters
    ----------
    walk : Walk
        The walk's state.
    call : Call
        The group norm's call; another axis is refused.

    Returns
    -------
    Units
        The units carrying the pending gamma (none without ``scale``).
    """
    layer = call.layer
    _last_axis(walk, call, layer.axis, "normalises")
    return walk.rec.normalise(call.x, _array(layer.gamma).reshape(-1) if layer.scale else None)


def _layer_scale(walk: Walk, call: Call) -> Units:
    """ConvNeXt's ``LayerScale``: x times a constant per-channel gamma, folded into the layer
    whose linear output it alone reads, else waiting for the next layer's rows.

    Parameters
    ----------
    walk : Walk
        The walk's state.
    call : Call
        The layer scale's call.

    Returns
    -------
    Units
        The units (unchanged, or carrying the pending scale).
    """
    return walk.rec.rescale(call.x, _array(call.layer.gamma), None, walk.sole_reader(call))


# --------------------------------------------------------------------------- joins


def _sum(walk: Walk, call: Call) -> Units:
    """``Add``, ``Subtract`` and ``Average``: every summand's unit i reaches unit i (a
    difference's sign and an average's 1 / n change no edge).

    Parameters
    ----------
    walk : Walk
        The walk's state.
    call : Call
        The merge layer's call.

    Returns
    -------
    Units
        The joined units.
    """
    return walk.rec.add(call.layer.name, call.xs)


#: Activations whose output, multiplied by their input, is an activation: x * sigmoid(x) is SiLU.
GATING_ACTIVATIONS = frozenset({"sigmoid", "hard_sigmoid", "tanh"})
#: The same activations as ``keras.ops`` operations on a model's tensors.
GATING_OPERATIONS = frozenset({"Sigmoid", "HardSigmoid", "Tanh"})


def _gating(call: Call | None) -> bool:
    """Whether ``call`` is a sigmoid-like activation: an ``Activation`` layer or an operation."""
    if call is None:
        return False
    if call.kind == "Activation":
        return getattr(call.layer.activation, "__name__", "") in GATING_ACTIVATIONS
    return call.kind in GATING_OPERATIONS and not call.is_layer


def _self_gated(walk: Walk, call: Call) -> Units | None:
    """The units of x when the call multiplies x by a sigmoid of x (SiLU, Swish written out as an
    activation and a product): an activation, not a gate; else None."""
    if len(call.inputs) != 2:
        return None
    a, b = (walk.key(t) for t in call.inputs)
    for x, y, units in ((a, b, call.xs[0]), (b, a, call.xs[1])):
        maker = walk.made.get(y)
        if _gating(maker) and walk.key(maker.inputs[0]) == x:
            return units
    return None


def _multiply(walk: Walk, call: Call) -> Units:
    """``Multiply``: x * sigmoid(x) written as an ``Activation`` and a product is an activation;
    any other product of computed tensors is a gate (squeeze-and-excitation), which joins unit
    i of each factor to unit i of the product, as a sum does (method.md §3.3).

    Parameters
    ----------
    walk : Walk
        The walk's state.
    call : Call
        The product's call.

    Returns
    -------
    Units
        The product's units.
    """
    gated = _self_gated(walk, call)
    if gated is not None:
        return walk.rec.passthrough(gated)
    return walk.rec.multiply(call.layer.name, call.xs)


def _concat(walk: Walk, call: Call) -> Units:
    """``Concatenate`` along the last (channel) axis: each input keeps its own slice.

    Parameters
    ----------
    walk : Walk
        The walk's state.
    call : Call
        The concatenation's call; another axis is refused.

    Returns
    -------
    Units
        The joined units.
    """
    axis = call.layer.axis
    if int(axis) % call.rank != call.rank - 1:
        raise walk.refuse(call, f"joins along axis {axis}; only the last (channel) axis is supported")
    return walk.rec.concat(call.layer.name, call.xs)


# --------------------------------------------------------------------------- keras.ops operations


def _constant_factor(walk: Walk, call: Call) -> np.ndarray:
    """The constant operand of an operation on one tensor, as one factor per unit: a scalar,
    or a constant whose only axis longer than 1 is the last (units) axis."""
    value = next(_array(a) for a in call.args if not any(a is t for t in call.inputs))
    size = call.x.size
    if value.size == 1:
        return np.full(max(size, 1), float(value.reshape(-1)[0]))
    if value.ndim > call.rank or value.size != size or value.shape[-1] != size:
        raise walk.refuse(call, f"multiplies by a constant of shape {shape_text(value.shape)}, which is not one "
                                "factor per unit")
    return value.reshape(-1)


def _op_sum(walk: Walk, call: Call) -> Units:
    """``keras.ops`` ``add``/``subtract`` (``x + y`` on a model's tensors): of two tensors a sum
    (ConvNeXt's residual ``inputs + x``); of a tensor and a constant a shift, which passes units
    through.

    Parameters
    ----------
    walk : Walk
        The walk's state.
    call : Call
        The operation's call.

    Returns
    -------
    Units
        The joined or passed-through units.
    """
    if len(call.xs) > 1:
        return walk.rec.add(call.layer.name, call.xs)
    return walk.rec.passthrough(call.x)


def _op_product(walk: Walk, call: Call) -> Units:
    """``keras.ops`` ``multiply``/``divide`` (``x * y``, ``x / c``): of two tensors a product
    as for :func:`_multiply`; by a constant (a scalar, or one per unit) a per-unit factor,
    folded into the layer whose linear output it alone reads, else waiting for the next
    layer's rows.

    Parameters
    ----------
    walk : Walk
        The walk's state.
    call : Call
        The operation's call; a tensor divided by a tensor, or a constant by a tensor, is
        refused.

    Returns
    -------
    Units
        The product's units.
    """
    divide = call.kind in ("Divide", "TrueDivide")
    if len(call.xs) > 1 and not divide:
        return _multiply(walk, call)
    if len(call.xs) > 1 or (divide and call.args[0] is not call.inputs[0]):
        raise walk.refuse(call, "divides by a computed tensor; only division by a constant can be followed")
    factor = _constant_factor(walk, call)
    return walk.rec.rescale(call.x, 1.0 / factor if divide else factor, None, walk.sole_reader(call))


# --------------------------------------------------------------------------- shapes and pooling


def _flat_size(shape: tuple) -> int:
    """Units of a shape flattened past the batch axis; -1 where a dimension is not known."""
    return -1 if any(d is None for d in shape[1:]) else int(np.prod(shape[1:]))


def _flatten(walk: Walk, call: Call) -> Units:
    """``Flatten``: a (batch, units) input passes through; the input image flattened is the
    network's input features (an MLP on images); a conv feature map flattened feeds a dense
    head, which is not part of a CNN's channel graph.

    Parameters
    ----------
    walk : Walk
        The walk's state.
    call : Call
        The flatten's call.

    Returns
    -------
    Units
        The flattened units.
    """
    size = _flat_size(call.shape)
    if size < 0 and all(s.producer < 0 for s in call.x.sources):
        raise walk.refuse(call, "flattens an input of unknown shape; give the model's input a fixed size")
    return walk.rec.flatten(call.x, size, call.rank > 2)


def _reshape(walk: Walk, call: Call) -> Units:
    """``Reshape`` that keeps the units on the last axis (EfficientNet's (1, 1, C) after a global
    pooling) passes them through; one to (batch, features) is a flatten.

    Parameters
    ----------
    walk : Walk
        The walk's state.
    call : Call
        The reshape's call; any other reshape is refused.

    Returns
    -------
    Units
        The units passed through, or flattened.
    """
    before, after = tuple(call.inputs[0].shape), call.shape
    if len(after) == 2:
        return _flatten(walk, call)
    if before[-1] == after[-1] is not None and _flat_size(before[:-1]) == _flat_size(after[:-1]) >= 0:
        return walk.rec.passthrough(call.x)
    raise walk.refuse(call, f"reshapes {shape_text(before[1:])} to {shape_text(after[1:])}; only reshapes that "
                            "keep the units on the last axis, or flatten, can be followed")


def _permute(walk: Walk, call: Call) -> Units:
    """``Permute`` that leaves the last (units) axis last: the units pass through.

    Parameters
    ----------
    walk : Walk
        The walk's state.
    call : Call
        The permutation's call; one that moves the last axis is refused.

    Returns
    -------
    Units
        The units passed through.
    """
    dims = tuple(call.layer.dims)
    if dims[-1] != len(dims):
        raise walk.refuse(call, f"permutes the axes to {dims}, moving the units' (last) axis; only "
                                "permutations that keep it last can be followed")
    return walk.rec.passthrough(call.x)


def _global_pool(walk: Walk, call: Call) -> Units:
    """``GlobalAveragePooling1D/2D/3D`` and ``GlobalMaxPooling1D/2D/3D`` (``keepdims`` or not):
    one unit per channel, still those channels.

    Parameters
    ----------
    walk : Walk
        The walk's state.
    call : Call
        The pooling's call; channels_first is refused.

    Returns
    -------
    Units
        The pooled channels.
    """
    _channels_last(walk, call)
    return walk.rec.pool(call.x)


def _pass_through(walk: Walk, call: Call) -> Units:
    """A layer that neither mixes units nor carries graph weights (:data:`PASS_THROUGH`).

    Parameters
    ----------
    walk : Walk
        The walk's state.
    call : Call
        The layer's call.

    Returns
    -------
    Units
        The input's units, no longer a weighted layer's linear output.
    """
    return walk.rec.passthrough(call.x)


def _refused(walk: Walk, call: Call) -> Units:
    """A layer class the graph builder refuses for a stated reason (:data:`REFUSED`).

    Parameters
    ----------
    walk : Walk
        The walk's state.
    call : Call
        The layer's call.

    Returns
    -------
    Units
        Never: it raises :class:`~nn_clustering.errors.ModelError` naming the layer and reason.
    """
    raise walk.refuse(call, f"{REFUSED[call.kind]} ({LISTED})")


# --------------------------------------------------------------------------- the tables

#: Layer classes that neither mix units nor carry graph weights: activations, dropout and
#: noise, pooling, padding, cropping, upsampling, input preprocessing and ConvNeXt's
#: StochasticDepth (identity at inference).
PASS_THROUGH = frozenset({
    "Activation", "ReLU", "LeakyReLU", "ELU", "PReLU", "Softmax", "Dropout", "SpatialDropout1D",
    "SpatialDropout2D", "SpatialDropout3D", "GaussianDropout", "GaussianNoise", "AlphaDropout",
    "ActivityRegularization", "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D",
    "AveragePooling2D", "AveragePooling3D", "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D",
    "Cropping2D", "Cropping3D", "UpSampling1D", "UpSampling2D", "UpSampling3D", "Identity", "Rescaling",
    "Normalization", "Resizing", "CenterCrop", "StochasticDepth",
})
GLOBAL_POOLS = frozenset({
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D", "GlobalMaxPooling1D",
    "GlobalMaxPooling2D", "GlobalMaxPooling3D",
})
RECURRENT = "is recurrent: the graph builder reads feed-forward networks"
ATTENTION = "is attention: its units mix through weights computed from the data, not through the layer's weights"
#: Layer classes refused with their reason.
REFUSED: dict[str, str] = {
    **dict.fromkeys(("LSTM", "GRU", "SimpleRNN", "RNN", "Bidirectional", "ConvLSTM1D", "ConvLSTM2D",
                     "ConvLSTM3D"), RECURRENT),
    **dict.fromkeys(("MultiHeadAttention", "GroupedQueryAttention", "Attention", "AdditiveAttention"), ATTENTION),
    "Lambda": "runs arbitrary code: the graph builder cannot see which units it mixes",
    "Embedding": "is an embedding: it reads token ids, not units",
}
#: The handler of each layer class, by class name.
LAYERS: dict[str, Handler] = {
    "InputLayer": _input, "Dense": _dense, "Conv1D": _conv, "Conv2D": _conv, "Conv3D": _conv,
    "DepthwiseConv1D": _depthwise, "DepthwiseConv2D": _depthwise, "SeparableConv1D": _separable,
    "SeparableConv2D": _separable, "BatchNormalization": _batchnorm, "LayerNormalization": _layernorm,
    "RMSNormalization": _layernorm, "GroupNormalization": _groupnorm, "LayerScale": _layer_scale,
    "Add": _sum, "Subtract": _sum, "Average": _sum, "Multiply": _multiply, "Concatenate": _concat,
    "Flatten": _flatten, "Reshape": _reshape, "Permute": _permute,
    **dict.fromkeys(GLOBAL_POOLS, _global_pool), **dict.fromkeys(PASS_THROUGH, _pass_through),
    **dict.fromkeys(REFUSED, _refused),
}
#: Activations as ``keras.ops`` operations on a model's tensors: they pass units through.
OPERATION_PASS_THROUGH = frozenset({
    "Relu", "Relu6", "Sigmoid", "HardSigmoid", "Silu", "HardSilu", "Gelu", "Tanh", "Elu", "Selu",
    "LeakyRelu", "Softplus", "Softsign", "Softmax", "Cast",
})
#: The handler of each ``keras.ops`` operation written on a model's tensors, by class name
#: (``x + y`` is ``Add``, the same name as the layer, hence a table of its own).
OPERATIONS: dict[str, Handler] = {
    "Add": _op_sum, "Subtract": _op_sum, "Multiply": _op_product, "Divide": _op_product,
    "TrueDivide": _op_product, **dict.fromkeys(OPERATION_PASS_THROUGH, _pass_through),
}


# --------------------------------------------------------------------------- the walk


def _graph(walk: Walk, model):
    """The graph of layer calls of ``model``: the model itself when functional, a Sequential's
    functional twin; refused for a Sequential never built and for a subclassed model."""
    import keras

    if isinstance(model, keras.Sequential):
        graph = getattr(model, "_functional", None)
        if graph is None:
            raise walk.error(f"model {quoted(model.name)} is not built (its input shape is unknown); give it an "
                             "Input layer or call it on data once, then save it")
        return graph
    if not hasattr(model, "_nodes_by_depth"):
        raise walk.error(f"model {quoted(model.name)} ({type(model).__name__}) is a subclassed model, whose "
                         "wiring Keras does not record; write it as a functional or Sequential model")
    return model


def _nodes_by_layer(walk: Walk, graph) -> dict[int, Any]:
    """The one node (call) of each layer of ``graph``; a layer called twice is refused."""
    nodes: dict[int, list] = {}
    for depth_nodes in graph._nodes_by_depth.values():
        for node in depth_nodes:
            nodes.setdefault(id(node.operation), []).append(node)
    for op in graph.operations:
        count = len(nodes.get(id(op), ())) + (id(op) in walk.seen)
        if count != 1:
            raise walk.error(f"layer {quoted(op.name)} ({type(op).__name__}) is called {count} times; shared "
                             "layers are not supported (each weighted layer must be one group of units)")
        walk.seen.add(id(op))
    return {k: v[0] for k, v in nodes.items()}


def walk_calls(walk: Walk, model, outer: list | None = None) -> list[tuple[Any, Any, bool]]:
    """The (layer, node, is_layer) calls of ``model`` in topological order, nested models
    expanded in place: their inputs stand for the ``outer`` tensors they are called on
    (``walk.alias``), and the tensors they return for their inner outputs. ``is_layer`` is
    False for a ``keras.ops`` operation written on the model's tensors (``x + y``)."""
    import keras

    graph = _graph(walk, model)
    nodes = _nodes_by_layer(walk, graph)
    if outer is not None:
        if len(outer) != len(graph.inputs):
            raise walk.error(f"model {quoted(model.name)} is called on {len(outer)} tensors but has "
                             f"{len(graph.inputs)} inputs")
        walk.alias.update({id(inner): walk.key(t) for inner, t in zip(graph.inputs, outer, strict=True)})
    calls = []
    for op in graph.operations:
        node = nodes[id(op)]
        if isinstance(op, keras.Model):
            calls += walk_calls(walk, op, list(node.input_tensors))
            inner = _graph(walk, op).outputs
            walk.alias.update({id(t): walk.key(i) for t, i in zip(node.output_tensors, inner, strict=True)})
        elif not (outer is not None and type(op).__name__ == "InputLayer"):
            calls.append((op, node, isinstance(op, keras.layers.Layer)))
    return calls


def _call(walk: Walk, layer, node, is_layer: bool) -> Call:
    """The call of ``layer`` at ``node``, with the units of the tensors it reads."""
    inputs = list(node.input_tensors)
    missing = [t for t in inputs if walk.key(t) not in walk.units]
    if missing:
        raise walk.error(f"layer {quoted(layer.name)} ({type(layer).__name__}) reads a tensor that is not "
                         "computed from the model's input; only models built from their own inputs are supported")
    return Call(layer, inputs, list(node.output_tensors), [walk.units[walk.key(t)] for t in inputs],
                tuple(node.arguments.args), is_layer)


def _handler(walk: Walk, call: Call) -> Handler:
    """The handler of a call: its layer class's in :data:`LAYERS`, or its operation's in
    :data:`OPERATIONS`; one line naming the layer or operation when there is none."""
    handler = (LAYERS if call.is_layer else OPERATIONS).get(call.kind)
    if handler is not None:
        return handler
    if call.is_layer:
        raise walk.refuse(call, f"is not supported by the graph builder ({LISTED})")
    raise walk.error(f"operation {call.label} ({call.kind}) on the model's tensors (a keras.ops call) is not "
                     f"followed by the graph builder; write it as a layer ({LISTED})")


def weights_of_keras_model(model, source: str = "") -> NetworkWeights:
    """Kernels, biases, layer names and wiring of a Keras model (``Sequential``, functional or
    nested), read by one walk over its layer calls (see the module docstring); one line naming
    the layer for anything the graph builder does not follow."""
    walk = Walk(source, WiringRecorder(source))
    calls = walk_calls(walk, model)
    for _, node, _ in calls:
        walk.readers.update(walk.key(t) for t in node.input_tensors)
    for layer, node, is_layer in calls:
        call = _call(walk, layer, node, is_layer)
        out = _handler(walk, call)(walk, call)
        for t in call.outputs:
            walk.units[walk.key(t)], walk.made[walk.key(t)] = out, call
    return walk.rec.finish()


def read_keras_model(path: Path):
    """The saved Keras model at ``path`` (a readable regular file: see
    :func:`~nn_clustering.formats.loader.check_model_path`), not compiled; a clear error for a
    file whose declared weights and layers would pass the memory limit
    (:func:`~nn_clustering.formats.keras_file.check_keras_file`, run before Keras is imported) or
    that Keras cannot load."""
    check_keras_file(path)
    try:
        import keras
    except ImportError as exc:  # pragma: no cover - keras is in the locked environment
        raise ModelError(f"{path}: reading Keras models needs keras; run `make env`") from exc
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as exc:  # keras raises many types for unreadable files
        raise ModelError(f"{path}: cannot be loaded as a Keras model ({one_line(exc, 300)}); re-save it with "
                         "model.save()") from exc


def load_keras_weights(path: Path) -> NetworkWeights:
    """The weights of the saved Keras model at ``path`` (:func:`weights_of_keras_model`)."""
    return weights_of_keras_model(read_keras_model(path), str(path))
