"""Run a network on data and hand its units' activations over batch by batch (method.md §3.6).

Three runners (:class:`~nn_clustering.formats.units.UnitRunner`), picked from the network's form:

- a Keras model (an object, or a ``.keras``/``.h5`` file, read with Keras; :mod:`.keras_run`): the
  outputs of its Dense layers, activation included, from one model with those layers as outputs;
  of a CNN, its Conv2D layers' channels, each averaged over the image's positions;
- an ONNX file (:mod:`.onnx_run`), run by onnxruntime with the unit tensors added to the graph's
  outputs, so any activation function is run as the file defines it: in a chain of dense layers
  (``Gemm``/``MatMul``) the tensor each dense layer reads, in a chain of convolutions each conv
  layer's activated output (channel means), in a transformer every MLP's units;
- any other MLP that nn-clustering reads (``.npz``, ``.safetensors``, ``.pt``, kernel arrays with
  their biases), whose files record no activation function: a numpy forward pass with ReLU hidden
  layers, as the lesion tests run them (method.md §6).

The units are the hidden layers' (the successor paper leaves the input pixels and the output
logits out); ``outputs=True`` adds the last layer's.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import numpy as np

from ..core.activations import ActivationGraph, ActivationSums
from ..core.enums import Architecture, Measure
from ..core.graph import NetworkWeights
from ..core.lesion import MLP, forward
from ..core.parameters import checked
from ..core.progress import progress_bar
from ..errors import DatasetError, ModelError
from .loader import _is_keras_model, as_weights, check_model_path, load_keras_model
from .npz import read_npz_arrays
from .units import UnitRunner

#: Examples per forward pass.
BATCH_SIZE = 1000
KERAS_SUFFIXES = (".keras", ".h5")


def _mlp_layers(net: MLP, keep: tuple[int, ...], x: np.ndarray) -> list[np.ndarray]:
    """The activations of the weighted layers ``keep`` (0 = the first) for inputs ``x``."""
    acts = forward(net, x)  # input, ReLU hidden layers, output
    return [acts[i + 1] for i in keep]


def _numpy_runner(weights: NetworkWeights, outputs: bool) -> UnitRunner:
    """A ReLU MLP's hidden layers (``outputs``: the last layer's too), run in numpy."""
    if weights.kind != Architecture.MLP or weights.wiring is not None:
        fix = "; run a CNN from its Keras file (.keras)" if weights.kind == Architecture.CNN else ""
        raise ModelError(f"{weights.source or 'the network'}: activation graphs are built for MLPs (a chain of Dense "
                         f"layers) from this format; this is a {weights.kind}"
                         f"{' with skip connections' if weights.wiring else ''}{fix}")
    if len(weights.biases) != len(weights.kernels):
        raise ModelError(f"{weights.source or 'the network'}: running the network needs a bias per layer; save the "
                         "model with its biases (kernel_i and bias_i arrays)")
    n = len(weights.kernels)
    if n < 2 and not outputs:
        raise ModelError(f"{weights.source or 'the network'}: one Dense layer has no hidden units; pass outputs=True")
    keep = list(range(n if outputs else n - 1))
    names = tuple(weights.layer_name(i) for i in keep)
    sizes = tuple(int(weights.kernels[i].shape[1]) for i in keep)
    net = MLP(tuple(np.asarray(k, np.float32) for k in weights.kernels),
              tuple(np.asarray(b, np.float32) for b in weights.biases))
    return UnitRunner(names, sizes, int(weights.kernels[0].shape[0]), partial(_mlp_layers, net, tuple(keep)),
                      weights.source)


def unit_runner(network, outputs: bool = False) -> UnitRunner:
    """A :class:`UnitRunner` for ``network`` (a path, a Keras model, kernel arrays or
    :class:`NetworkWeights` with biases)."""
    if _is_keras_model(network):
        from .keras_run import keras_unit_runner

        return keras_unit_runner(network, outputs, getattr(network, "name", ""))
    if isinstance(network, str | os.PathLike):
        suffix = Path(network).suffix.lower()
        if suffix in KERAS_SUFFIXES:
            from .keras_run import keras_unit_runner

            return keras_unit_runner(load_keras_model(network), outputs, str(network))
        if suffix == ".onnx":
            from .onnx_run import onnx_unit_runner

            return onnx_unit_runner(check_model_path(network), outputs)
    return _numpy_runner(as_weights(network), outputs)


def _input_member(path: Path):
    """Which member of an input ``.npz`` holds the inputs: ``x``, else ``x_test``, else the only one."""
    def pick(names: list[str]) -> list[str]:
        key = next((k for k in ("x", "x_test") if k in names), names[0] if len(names) == 1 else None)
        if key is None:
            raise DatasetError(f"{path}: holds {names}; save the inputs as the array 'x' (np.savez(path, x=inputs))")
        return [key]
    return pick


def read_inputs(data, n_inputs: int | None, tokens: bool = False) -> np.ndarray:
    """The inputs to run a network on, as (examples, n_inputs) float32: the path of an ``.npz``
    (its ``x`` array, else its ``x_test`` array, else its only one; each member's size checked
    from its header before it is read, as a model file's) or an array (a project dataset's name
    is read by :func:`nn_clustering.data.activation_inputs`). Images are flattened; a shape
    that does not fit the network's inputs is one error. A sequence model (``tokens``) reads
    integer token ids, (sequences, tokens)."""
    name = "the inputs"
    if isinstance(data, str | os.PathLike):
        path = Path(data)
        name = str(path)
        if not path.is_file():
            raise DatasetError(f"{path}: no such file; give a dataset name (e.g. mnist) or an .npz of inputs")
        (x,) = read_npz_arrays(name, path, _input_member(path)).values()
    else:
        x = np.asarray(data)
    if x.ndim < 2 or not np.issubdtype(x.dtype, np.number):
        raise DatasetError(f"{name}: inputs of shape {x.shape} and type {x.dtype}; give numbers, one row per example")
    if tokens:
        return _token_ids(x, n_inputs, name)
    x = x.reshape(len(x), -1).astype(np.float32)
    if x.shape[1] != n_inputs:
        raise DatasetError(f"{name}: {x.shape[1]} values per example, but the network takes {n_inputs}; "
                           "give inputs of the network's shape")
    if len(x) < 2:
        raise DatasetError(f"{name}: {len(x)} example; correlations need at least 2")
    if not np.isfinite(x).all():
        raise DatasetError(f"{name}: the inputs hold NaN or infinite values")
    return x


def activation_sums(
    network,
    data,
    measure: Measure | str = Measure.SPEARMAN,
    layerwise: bool = False,
    outputs: bool = False,
    batch_size: int = BATCH_SIZE,
    progress: bool = False,
) -> tuple[UnitRunner, list[ActivationSums]]:
    """Run ``network`` over ``data`` (:func:`read_inputs`) once, batch by batch, into the sums of
    one group of every reported unit, or (``layerwise``) of one group per layer."""
    measure = checked("measure", measure)
    runner = unit_runner(network, outputs)
    x = read_inputs(data, runner.n_inputs, tokens=runner.tokens)
    sizes = runner.sizes if layerwise else (sum(runner.sizes),)
    groups = [ActivationSums(size, measure) for size in sizes]
    step = runner.batch or batch_size
    with progress_bar(total=len(x), desc="activations", unit="sequence" if runner.tokens else "example",
                      enabled=progress) as bar:
        for start in range(0, len(x), step):
            acts = [np.asarray(a) for a in runner.run(x[start : start + step])]
            for group, a in zip(groups, acts if layerwise else [np.concatenate(acts, axis=1)], strict=True):
                group.update(a)
            bar.update(min(step, len(x) - start))
    return runner, groups


def _live(graph: ActivationGraph, source: str) -> ActivationGraph:
    if not graph.active.any():
        raise DatasetError(f"{source or 'the network'}: every unit's activation is constant over these inputs, so "
                           "no two units can be compared; give varied inputs")
    return graph


def _token_ids(x: np.ndarray, length: int | None, name: str) -> np.ndarray:
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.integer) or (x < 0).any():
        raise DatasetError(f"{name}: token ids of shape {x.shape} and type {x.dtype}; give non-negative integers of shape "
                           "(sequences, tokens)")
    if length is not None and x.shape[1] != length:
        raise DatasetError(f"{name}: sequences of {x.shape[1]} tokens, but the model was exported for {length}; cut "
                           f"the token ids into rows of {length}")
    return x.astype(np.int64)


def build_activation_graph(network, data, measure: Measure | str = Measure.SPEARMAN, **kwargs) -> ActivationGraph:
    """The activation graph of every reported unit of ``network`` over ``data``, in one pass over
    batches (keyword arguments: :func:`activation_sums`'). Every unit constant over the data is
    one error."""
    runner, (group,) = activation_sums(network, data, measure, layerwise=False, **kwargs)
    return _live(ActivationGraph(group.weights(), runner.sizes, runner.names, group.measure), runner.source)


def build_layer_graphs(network, data, measure: Measure | str = Measure.SPEARMAN, **kwargs) -> list[ActivationGraph]:
    """One activation graph per layer (its units joined among themselves), from one pass over
    ``data`` (keyword arguments: :func:`activation_sums`')."""
    runner, groups = activation_sums(network, data, measure, layerwise=True, **kwargs)
    return [_live(ActivationGraph(g.weights(), (size,), (name,), g.measure), f"{runner.source}: layer {name}")
            for g, size, name in zip(groups, runner.sizes, runner.names, strict=True)]
