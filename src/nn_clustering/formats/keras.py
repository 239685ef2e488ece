"""The weights of a Keras model made of Dense and Conv2D layers, ready for the graph builder.

A model (``Sequential`` or functional, nested models included) is walked layer by layer. Its
Dense and Conv2D layers give the kernels, in order. Layers that do not mix units (ReLU and
other activations, pooling, flatten, dropout, the input) are passed over. A
``BatchNormalization`` directly after a Dense or Conv2D without activation is folded into that
layer: its kernel's output unit c is scaled by s_c = gamma_c / sqrt(var_c + eps) and its bias
becomes beta_c + (b_c - mean_c) s_c, which leaves the network's outputs unchanged. Anything
else gets a :class:`~nn_clustering.errors.ModelError` naming the layer.

Keras is imported lazily, inside the functions that need it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.graph import NetworkWeights, network_kind
from ..errors import ModelError
from .keras_file import check_keras_file
from .limits import one_line
from .wiring import WiringRecorder

#: Layer classes passed over: they neither mix units nor carry weights that belong in the graph.
PASS_THROUGH = frozenset({
    "InputLayer", "Activation", "ReLU", "LeakyReLU", "ELU", "Softmax", "Dropout", "SpatialDropout2D",
    "GaussianDropout", "GaussianNoise", "AlphaDropout", "Flatten", "MaxPooling2D", "AveragePooling2D",
    "GlobalAveragePooling2D", "GlobalMaxPooling2D",
})
WEIGHTED = frozenset({"Dense", "Conv2D"})
SUPPORTED = sorted(PASS_THROUGH | WEIGHTED | {"BatchNormalization"})


@dataclass
class FoldedLayer:
    """One Dense or Conv2D layer's kernel and bias, with any batch normalisation folded in."""

    name: str
    kind: str  # "Dense" or "Conv2D"
    kernel: np.ndarray
    bias: np.ndarray


def flat_layers(model) -> list:
    """The model's layers in order, nested models expanded; a clear error for branching models."""
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


def _is_linear(layer) -> bool:
    activation = getattr(layer, "activation", None)
    return activation is None or getattr(activation, "__name__", "") == "linear"


def _batchnorm_scale(layer, units: int) -> tuple[np.ndarray, np.ndarray]:
    """(scale, shift) of an inference-mode BatchNormalization over the last axis."""
    axis = layer.axis if isinstance(layer.axis, int) else (layer.axis[0] if len(layer.axis) == 1 else None)
    rank = len(layer.input.shape) if getattr(layer, "input", None) is not None else None
    if axis is None or (axis != -1 and (rank is None or axis != rank - 1)):
        raise ModelError(
            f"BatchNormalization {layer.name!r} normalises axis {layer.axis}; only the last (channel) "
            "axis can be folded into a kernel"
        )
    mean = np.asarray(layer.moving_mean, np.float64)
    var = np.asarray(layer.moving_variance, np.float64)
    gamma = np.asarray(layer.gamma, np.float64) if layer.scale else np.ones(units)
    beta = np.asarray(layer.beta, np.float64) if layer.center else np.zeros(units)
    scale = gamma / np.sqrt(var + layer.epsilon)
    return scale, beta - mean * scale


def _conv_check(layer) -> None:
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise ModelError(f"Conv2D {layer.name!r} uses {layer.data_format}; only channels_last is supported")
    if getattr(layer, "groups", 1) != 1:
        raise ModelError(f"Conv2D {layer.name!r} is grouped (groups={layer.groups}); only groups=1 is supported")


def folded_layers(model) -> list[FoldedLayer]:
    """The Dense/Conv2D layers of ``model`` in order, batch normalisation folded in.

    Raises :class:`ModelError` naming the first unsupported layer, a batch normalisation that
    cannot be folded, or a model without any Dense or Conv2D layer.
    """
    out: list[FoldedLayer] = []
    previous = None  # the layer just before the current one
    for layer in flat_layers(model):
        kind = type(layer).__name__
        if kind in WEIGHTED:
            if kind == "Conv2D":
                _conv_check(layer)
            kernel = np.asarray(layer.kernel, np.float64)
            bias = np.asarray(layer.bias, np.float64) if layer.use_bias else np.zeros(kernel.shape[-1])
            out.append(FoldedLayer(layer.name, kind, kernel, bias))
        elif kind == "BatchNormalization":
            if previous is None or type(previous).__name__ not in WEIGHTED or not _is_linear(previous):
                after = f"after {previous.name!r}" if previous is not None else "at the input"
                raise ModelError(
                    f"BatchNormalization {layer.name!r} sits {after}, not directly after a Dense/Conv2D "
                    "without activation, so it cannot be folded into a kernel; put it between the "
                    "layer and its activation"
                )
            target = out[-1]
            scale, shift = _batchnorm_scale(layer, target.kernel.shape[-1])
            target.kernel = target.kernel * scale
            target.bias = target.bias * scale + shift
        elif kind not in PASS_THROUGH:
            raise ModelError(
                f"layer {layer.name!r} ({kind}) is not supported by the graph builder; supported: "
                f"{', '.join(SUPPORTED)}"
            )
        previous = layer
    if not out:
        raise ModelError(f"model {model.name!r} has no Dense or Conv2D layers to cluster")
    kinds = [f.kind for f in out]
    if "Dense" in kinds and "Conv2D" in kinds[kinds.index("Dense"):]:
        raise ModelError(f"model {model.name!r} has a Conv2D after a Dense layer; only conv layers "
                         "followed by a dense head are supported")
    return out


#: Layer classes of a functional model that neither mix units nor carry graph weights.
DAG_PASS_THROUGH = PASS_THROUGH | {"ZeroPadding2D", "Cropping2D", "Identity"}
DAG_SUPPORTED = sorted(DAG_PASS_THROUGH | WEIGHTED | {"BatchNormalization", "Add", "Concatenate"})


def _node(layer, model):
    """The one call of ``layer`` inside ``model`` (a layer called twice is refused)."""
    nodes = layer._inbound_nodes
    if len(nodes) != 1:
        raise ModelError(f"layer {layer.name!r} is called {len(nodes)} times; shared layers are not "
                         "supported (each weighted layer must be one group of units)")
    return nodes[0]


def functional_weights(model, source: str = "") -> NetworkWeights:
    """A functional Keras model read as a directed acyclic network (method.md §3): its layers
    in topological order reported to a :class:`~nn_clustering.formats.wiring.WiringRecorder`."""
    if len(model.inputs) != 1:
        raise ModelError(f"{source}: model {model.name!r} has {len(model.inputs)} inputs; only "
                         "single-input networks form a graph")
    rec = WiringRecorder(source)
    units: dict[int, object] = {}  # id of a KerasTensor -> Units
    readers: dict[int, int] = {}  # id of a KerasTensor -> how many layers read it
    for layer in model.layers:
        for t in _node(layer, model).input_tensors:
            readers[id(t)] = readers.get(id(t), 0) + 1
    try:
        for layer in model.layers:
            kind = type(layer).__name__
            node = _node(layer, model)
            inputs = [units[id(t)] for t in node.input_tensors]
            shape = tuple(node.output_tensors[0].shape)
            if kind == "InputLayer":
                out = rec.input(int(shape[-1]))
            elif kind in WEIGHTED:
                if kind == "Conv2D":
                    _conv_check(layer)
                bias = np.asarray(layer.bias, np.float64) if layer.use_bias else None
                out = rec.weighted(layer.name, np.asarray(layer.kernel, np.float64), bias, inputs[0],
                                   _is_linear(layer))
            elif kind == "BatchNormalization":
                scale, shift = _batchnorm_scale(layer, int(shape[-1]))
                source_tensor = node.input_tensors[0]
                out = rec.batchnorm(layer.name, inputs[0], scale, shift, readers.get(id(source_tensor), 0) == 1,
                                    after=source_tensor._keras_history[0].name)
            elif kind == "Add":
                out = rec.add(layer.name, inputs)
            elif kind == "Concatenate":
                rank = len(shape)
                if layer.axis not in (-1, rank - 1):
                    raise ModelError(f"Concatenate {layer.name!r} joins along axis {layer.axis}; only the "
                                     "channel (last) axis is supported")
                out = rec.concat(layer.name, inputs)
            elif kind == "Flatten":
                in_shape = tuple(node.input_tensors[0].shape)
                out = rec.flatten(inputs[0], int(np.prod(shape[1:])), len(in_shape) > 2)
            elif kind in DAG_PASS_THROUGH:
                out = rec.passthrough(inputs[0])
                if kind.startswith("Global") and len(node.input_tensors[0].shape) > 2:
                    out = rec.flatten(out, int(shape[-1]), True)
            else:
                raise ModelError(f"layer {layer.name!r} ({kind}) is not supported by the graph builder; "
                                 f"supported: {', '.join(DAG_SUPPORTED)}")
            for t in node.output_tensors:
                units[id(t)] = out
    except ModelError as exc:
        text = str(exc)
        raise ModelError(text if text.startswith(f"{source}:") or not source else f"{source}: {text}") from None
    return rec.finish()


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
    """Dense and Conv2D kernels and biases of the saved Keras model at ``path``, in layer order."""
    return weights_of_keras_model(read_keras_model(path), str(path))


def weights_of_keras_model(model, source: str = "") -> NetworkWeights:
    """Kernels and biases of a Keras model's Dense and Conv2D layers in order, batch
    normalisation folded in; a clear error naming any unsupported layer.

    A functional model whose layers are not models themselves is read as a directed acyclic
    network (:func:`functional_weights`: residual ``Add`` and ``Concatenate`` included); a
    ``Sequential`` model, or one with nested models, as a chain of layers (:func:`folded_layers`).
    """
    import keras

    nested = any(isinstance(layer, keras.Model) for layer in model.layers)
    if not isinstance(model, keras.Sequential) and not nested and getattr(model, "inputs", None):
        return functional_weights(model, source)
    try:
        layers = folded_layers(model)
    except ModelError as exc:
        raise ModelError(f"{source}: {exc}" if source else str(exc)) from None
    kernels = [layer.kernel for layer in layers]
    biases = [layer.bias for layer in layers]
    return NetworkWeights(kernels, biases, network_kind(kernels, source), source)
