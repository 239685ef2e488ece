"""Run a network on data and hand its units' activations over batch by batch (method.md §3.6).

Three runners, picked from the network's form:

- a Keras model (an object, or a ``.keras``/``.h5`` file, read with Keras): the outputs of its
  Dense layers, activation included, from one model with those layers as outputs; of a CNN, its
  Conv2D layers' channels, each averaged over the image's positions;
- an ONNX file of a chain of dense layers (``Gemm``/``MatMul``): run by onnxruntime with the
  tensor each dense layer reads (the previous layer's units, activation included) added to the
  graph's outputs, so any activation function is run as the file defines it;
- any other MLP that nn-clustering reads (``.npz``, ``.safetensors``, ``.pt``, kernel arrays with
  their biases), whose files record no activation function: a numpy forward pass with ReLU hidden
  layers, as the lesion tests run them (method.md §6).

The units are the hidden layers' (the successor paper leaves the input pixels and the output
logits out); ``outputs=True`` adds the last layer's.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.activations import ActivationGraph, ActivationSums
from ..core.enums import Architecture, Measure
from ..core.graph import NetworkWeights
from ..core.progress import progress_bar
from ..errors import DatasetError, ModelError
from .loader import _is_keras_model, as_weights, check_model_path, load_keras_model, load_weights

#: Examples per forward pass.
BATCH_SIZE = 1000
KERAS_SUFFIXES = (".keras", ".h5")


@dataclass(frozen=True)
class UnitRunner:
    """A network ready to run: the names and sizes of the layers whose units it reports, and
    ``run(x)``, which returns their activations for a batch of inputs (one array per layer, one
    row per example: per token for a sequence model).

    ``n_inputs`` is the values per example; a sequence model (``tokens``) takes integer token ids
    (sequences, ``n_inputs`` tokens, None when any length runs) and ``batch`` sequences per run
    when its file fixes that (else any number)."""

    names: tuple[str, ...]
    sizes: tuple[int, ...]
    n_inputs: int | None
    run: Any
    source: str = ""
    tokens: bool = False
    batch: int | None = None



class _NumpyMLP:
    """ReLU MLP forward pass in numpy returning the chosen layers' activations (picklable)."""

    def __init__(self, kernels: Sequence[np.ndarray], biases: Sequence[np.ndarray], keep: Sequence[int]):
        self.kernels = [np.asarray(k, np.float32) for k in kernels]
        self.biases = [np.asarray(b, np.float32) for b in biases]
        self.keep = tuple(keep)

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        out, h = [], np.asarray(x, np.float32)
        last = len(self.kernels) - 1
        for i, (k, b) in enumerate(zip(self.kernels, self.biases, strict=True)):
            h = h @ k + b
            if i < last:
                h = np.maximum(h, 0)
            if i in self.keep:
                out.append(h)
        return out


def _numpy_runner(weights: NetworkWeights, outputs: bool) -> UnitRunner:
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
    return UnitRunner(names, sizes, int(weights.kernels[0].shape[0]),
                      _NumpyMLP(weights.kernels, weights.biases, keep), weights.source)


#: Keras layers an activation graph's network may hold besides Dense and Conv2D.
KERAS_PASS_THROUGH = ("Dropout", "Flatten", "InputLayer", "Activation", "MaxPooling2D", "AveragePooling2D",
                      "GlobalAveragePooling2D", "BatchNormalization")


def _keras_runner(model, outputs: bool, source: str) -> UnitRunner:
    """A Dense network's hidden layers, or a CNN's conv layers (each channel one unit: its mean
    over the image's positions), as the weight graph groups them."""
    import keras

    source = source or model.name
    unknown = [layer for layer in model.layers if not isinstance(layer, keras.layers.Dense | keras.layers.Conv2D)
               and type(layer).__name__ not in KERAS_PASS_THROUGH]
    if unknown:
        raise ModelError(f"{source}: activation graphs are built for chains of Dense and Conv2D layers; layer "
                         f"{unknown[0].name!r} is a {type(unknown[0]).__name__}")
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    chosen = convs or (dense if outputs else dense[:-1])
    if not chosen:
        raise ModelError(f"{source}: one Dense layer has no hidden units; pass outputs=True")
    probe = keras.Model(model.inputs[0] if len(model.inputs) == 1 else model.inputs, [layer.output for layer in chosen])
    n_inputs = int(np.prod(model.inputs[0].shape[1:]))
    shape = tuple(model.inputs[0].shape[1:])

    def run(x: np.ndarray) -> list[np.ndarray]:
        result = probe(np.asarray(x, np.float32).reshape((-1, *shape)), training=False)
        arrays = [keras.ops.convert_to_numpy(r) for r in (result if isinstance(result, list | tuple) else [result])]
        return [a.mean(axis=tuple(range(1, a.ndim - 1))) if a.ndim > 2 else a for a in arrays]  # channels last

    sizes = tuple(int(layer.filters if isinstance(layer, keras.layers.Conv2D) else layer.units) for layer in chosen)
    return UnitRunner(tuple(layer.name for layer in chosen), sizes, n_inputs, run, source)


class _OnnxRun:
    """An onnxruntime session of a model with its unit tensors as outputs (built on first use,
    so the runner pickles as the model's bytes)."""

    def __init__(self, model_bytes: bytes, input_name: str, outputs: Sequence[str], dtype=np.float32,
                 source: str = ""):
        self.model_bytes, self.input_name, self.outputs = model_bytes, input_name, list(outputs)
        self.dtype, self.source = dtype, source
        self._session = None

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        if self._session is None:
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.log_severity_level = 3
            self._session = onnxruntime.InferenceSession(self.model_bytes, options,
                                                         providers=["CPUExecutionProvider"])
        try:
            values = self._session.run(self.outputs, {self.input_name: np.asarray(x, self.dtype)})
        except Exception as exc:  # onnxruntime raises its own error types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{self.source}: onnxruntime cannot run the model on these inputs ({first}); give inputs "
                             "of the shape and type the model was exported for") from None
        return [v.reshape(-1, v.shape[-1]) for v in values]  # (batch, tokens, units): every token an example

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_session": None}


def _onnx_transformer_runner(model, source: str) -> UnitRunner:
    """Every MLP's hidden units of a transformer in an ONNX file, token by token."""
    from onnx import TensorProto, helper, numpy_helper

    from .onnx_transformer import mlp_unit_tensors

    graph = model.graph
    units = mlp_unit_tensors(graph, source, numpy_helper.to_array)
    constants = {t.name for t in graph.initializer}
    inp = next(i for i in graph.input if i.name not in constants)
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
    if len(dims) != 2:
        raise ModelError(f"{source}: input {inp.name!r} has shape {dims}; activation graphs of transformers read token "
                         "ids of shape (sequences, tokens)")
    known = {o.name for o in graph.output}
    graph.output.extend(helper.make_tensor_value_info(t, TensorProto.FLOAT, None) for t, _, _ in units
                        if t not in known)
    dtype = helper.tensor_dtype_to_np_dtype(inp.type.tensor_type.elem_type)
    run = _OnnxRun(model.SerializeToString(), inp.name, [t for t, _, _ in units], dtype, source)
    return UnitRunner(tuple(n for _, n, _ in units), tuple(s for _, _, s in units), dims[1], run, source,
                      tokens=True, batch=dims[0])


def _onnx_runner(path: Path, outputs: bool) -> UnitRunner:
    import onnx
    from onnx import TensorProto, helper

    from .onnx_transformer import is_attention_graph

    weights = load_weights(path)  # every tensor checked (sizes, external data) before onnx reads the file
    source = weights.source or str(path)
    model = onnx.load(str(path))
    if is_attention_graph(model.graph):
        return _onnx_transformer_runner(model, source)
    if weights.kind != Architecture.MLP or weights.wiring is not None:
        raise ModelError(f"{source}: activation graphs of ONNX files are built for chains of dense layers (Gemm or "
                         f"MatMul); this is a {weights.kind}{' with skip connections' if weights.wiring else ''}")
    graph = model.graph
    constants = {t.name for t in graph.initializer} | {n.output[0] for n in graph.node if n.op_type == "Constant"}
    dense = [n for n in graph.node if n.op_type in ("Gemm", "MatMul") and len(n.input) > 1 and n.input[1] in constants]
    if len(dense) != len(weights.kernels):
        raise ModelError(f"{source}: {len(dense)} Gemm/MatMul nodes with weights for {len(weights.kernels)} dense layers; "
                         "activation graphs of ONNX files are built for chains of dense layers")
    tensors = [n.input[0] for n in dense[1:]] + ([graph.output[0].name] if outputs else [])
    if not tensors:
        raise ModelError(f"{source}: one dense layer has no hidden units; pass outputs=True")
    known = {o.name for o in graph.output}
    graph.output.extend(helper.make_tensor_value_info(t, TensorProto.FLOAT, None) for t in tensors if t not in known)
    inputs = [i for i in graph.input if i.name not in constants]
    dims = inputs[0].type.tensor_type.shape.dim
    if dims:
        dims[0].dim_param = "batch"  # a batch of any size (exporters often fix it at 1)
    keep = range(len(tensors))
    return UnitRunner(tuple(weights.layer_name(i) for i in keep),
                      tuple(int(weights.kernels[i].shape[1]) for i in keep), int(weights.kernels[0].shape[0]),
                      _OnnxRun(model.SerializeToString(), inputs[0].name, tensors), source)


def unit_runner(network, outputs: bool = False) -> UnitRunner:
    """A :class:`UnitRunner` for ``network`` (a path, a Keras model, kernel arrays or
    :class:`NetworkWeights` with biases)."""
    if _is_keras_model(network):
        return _keras_runner(network, outputs, getattr(network, "name", ""))
    if isinstance(network, str | os.PathLike):
        suffix = Path(network).suffix.lower()
        if suffix in KERAS_SUFFIXES:
            return _keras_runner(load_keras_model(network), outputs, str(network))
        if suffix == ".onnx":
            return _onnx_runner(check_model_path(network), outputs)
    return _numpy_runner(as_weights(network), outputs)


def read_inputs(data, n_inputs: int | None, data_dir: str | os.PathLike | None = None, limit: int | None = None,
                tokens: bool = False) -> np.ndarray:
    """The inputs to run a network on, as (examples, n_inputs) float32: a project dataset's
    name (its test split), the path of an ``.npz`` (its ``x`` array, else its ``x_test`` array,
    else its only one) or an array. Images are flattened; a shape that does not fit the
    network's inputs is one error. A sequence model (``tokens``) reads integer token ids,
    (sequences, tokens), from an ``.npz`` or an array."""
    name = "the inputs"
    if tokens and isinstance(data, str) and not data.endswith(".npz"):
        raise DatasetError(f"this model reads token ids, not the image dataset {data!r}; give an .npz of token ids "
                           "(np.savez(path, x=ids), ids of shape (sequences, tokens))")
    if isinstance(data, str) and not data.endswith(".npz"):
        from ..data import load_dataset

        name = f"dataset {data!r}"
        x = load_dataset(data, data_dir).x_test
    elif isinstance(data, str | os.PathLike):
        path = Path(data)
        name = str(path)
        if not path.is_file():
            raise DatasetError(f"{path}: no such file; give a dataset name (e.g. mnist) or an .npz of inputs")
        with np.load(path, allow_pickle=False) as arrays:
            keys = list(arrays.keys())
            key = next((k for k in ("x", "x_test") if k in keys), keys[0] if len(keys) == 1 else None)
            if key is None:
                raise DatasetError(f"{path}: holds {keys}; save the inputs as the array 'x' (np.savez(path, x=inputs))")
            x = arrays[key]
    else:
        x = np.asarray(data)
    if x.ndim < 2 or not np.issubdtype(x.dtype, np.number):
        raise DatasetError(f"{name}: inputs of shape {x.shape} and type {x.dtype}; give numbers, one row per example")
    if tokens:
        return _token_ids(x, n_inputs, name)[:limit] if limit else _token_ids(x, n_inputs, name)
    x = x.reshape(len(x), -1).astype(np.float32)
    if x.shape[1] != n_inputs:
        raise DatasetError(f"{name}: {x.shape[1]} values per example, but the network takes {n_inputs}; "
                           "give inputs of the network's shape")
    if len(x) < 2:
        raise DatasetError(f"{name}: {len(x)} example; correlations need at least 2")
    if not np.isfinite(x).all():
        raise DatasetError(f"{name}: the inputs hold NaN or infinite values")
    return x[:limit] if limit else x


def activation_sums(
    network,
    data,
    measure: Measure | str = Measure.SPEARMAN,
    layerwise: bool = False,
    outputs: bool = False,
    batch_size: int = BATCH_SIZE,
    data_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> tuple[UnitRunner, list[ActivationSums]]:
    """Run ``network`` over ``data`` (:func:`read_inputs`) once, batch by batch, into the sums of
    one group of every reported unit, or (``layerwise``) of one group per layer."""
    measure = Measure.parse(measure, "measure") if isinstance(measure, str) else measure
    runner = unit_runner(network, outputs)
    x = read_inputs(data, runner.n_inputs, data_dir, tokens=runner.tokens)
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
