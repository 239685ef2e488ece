"""Networks from ONNX files (what ``torch.onnx.export`` and TensorFlow converters write).

The graph's nodes are walked in order (ONNX stores them topologically sorted; a graph whose nodes
read a tensor before the node that computes it, unsorted or cyclic, is refused) and reported
to a :class:`~nn_clustering.formats.wiring.WiringRecorder`: ``Gemm``/``MatMul`` with a weight
initialiser are dense layers, ``Conv`` a conv layer (OIHW weights turned into Keras' HWIO, so
both frameworks give the same graph), ``BatchNormalization`` is folded into the layer it
directly follows, ``Add``/``Sum`` of two activations is a residual sum (an ``Add`` of a
constant is a bias), ``Concat`` along the channel axis a concatenation, and activations,
pooling, dropout, padding and ``Flatten`` pass units through. Any other operator is refused
with one line naming the node and the operator. Each operator has its handler in the table of
:mod:`~nn_clustering.formats.onnx_ops`. A graph with an attention (a ``MatMul`` after a
``Softmax``) is a transformer, read by :mod:`~nn_clustering.formats.onnx_transformer`. Reading
needs the ``onnx`` package.

The file is parsed without its external data; the data of every initialiser and Constant must
hold exactly what its dims declare, its size as float64 must fit the memory limit
(:mod:`~nn_clustering.formats.limits`) and external data must lie in a regular file inside the
model's folder, all checked before any external data is read or any tensor converted. Complex
tensors are refused.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from os import path as os_path
from pathlib import Path

from ..core.graph import NetworkWeights
from ..errors import ModelError, quoted
from .dtypes import complex_refusal
from .limits import ModelBudget, element_count, shape_text
from .onnx_ops import walk_node
from .onnx_transformer import is_attention_graph, transformer_of_onnx_graph
from .onnx_walk import REEXPORT, Walk, node_label, op_text
from .wiring import WiringRecorder


def _static_shape(value_info) -> tuple[int | None, ...]:
    dims = value_info.type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)


#: ONNX element types packed below one byte per element, with their bits per element.
SUB_BYTE_BITS = {"UINT4": 4, "INT4": 4, "FLOAT4E2M1": 4, "UINT2": 2, "INT2": 2, "FLOAT6E2M3": 6, "FLOAT6E3M2": 6}


def _tensor_bytes(tensor, label: str, source: str) -> tuple[int, int, str]:
    """(element count, bytes of its raw data, its typed field) of an ONNX ``TensorProto``;
    one line for a negative dim, complex weights or strings."""
    import onnx

    dims = list(tensor.dims)
    if any(d < 0 for d in dims):
        raise ModelError(f"{source}: tensor {quoted(label)} has dims {dims}; {REEXPORT}")
    kind = onnx.TensorProto.DataType.Name(tensor.data_type) if tensor.data_type in \
        onnx.TensorProto.DataType.values() else str(tensor.data_type)
    if kind.startswith("COMPLEX"):
        raise complex_refusal(source, label, kind.lower())
    if kind in ("STRING", "UNDEFINED") or not kind.isidentifier():
        raise ModelError(f"{source}: tensor {quoted(label)} holds {kind.lower()} values, not numbers; {REEXPORT}")
    count = element_count(dims)
    bits = SUB_BYTE_BITS.get(kind) or 8 * onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    return count, (count * bits + 7) // 8, onnx.helper.tensor_dtype_to_field(tensor.data_type)


def _external_file(tensor, label: str, base: Path, source: str) -> tuple[Path, int, int | None]:
    """(file, offset, declared length) of a tensor's external data, refused unless the file is a
    regular file inside the model's folder."""
    info = {e.key: e.value for e in tensor.external_data}
    location = info.get("location", "")
    outside = (f"{source}: tensor {quoted(label)} keeps its data in {quoted(location)}, outside the model's folder; it is "
               "not read: keep the data file next to the model (onnx.save(..., save_as_external_data=True))")
    if not location or Path(location).is_absolute():
        raise ModelError(outside)
    real_base = Path(os_path.realpath(base))
    target = Path(os_path.realpath(real_base / location))
    if target != real_base and real_base not in target.parents:
        raise ModelError(outside)
    if not target.is_file():
        raise ModelError(f"{source}: tensor {quoted(label)} keeps its data in {quoted(location)}, which is missing or not a "
                         "regular file; copy the data file next to the model")
    try:
        offset = int(info.get("offset", 0))
        length = int(info["length"]) if "length" in info else None
    except ValueError:
        raise ModelError(f"{source}: tensor {quoted(label)} has a malformed external data offset or length; "
                         f"{REEXPORT}") from None
    if offset < 0 or (length is not None and length < 0):
        raise ModelError(f"{source}: tensor {quoted(label)} has a negative external data offset or length; {REEXPORT}")
    return target, offset, length


def check_onnx_tensor(tensor, label: str, base: Path, source: str, budget: ModelBudget) -> tuple | None:
    """Check an initialiser or Constant tensor before it is converted: its data (raw bytes,
    typed values or the external file's range) holds exactly what its dims declare, and its
    elements as float64 fit ``budget``. Returns (file, offset, size) of external data to read."""
    import onnx

    count, nbytes, field = _tensor_bytes(tensor, label, source)
    shape = tuple(tensor.dims)
    declares = f"declares shape {shape_text(shape)} ({nbytes} bytes)"
    external = None
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        target, offset, length = _external_file(tensor, label, base, source)
        held = target.stat().st_size - offset
        if (length is not None and length != nbytes) or held < nbytes:
            raise ModelError(f"{source}: tensor {quoted(label)} {declares} but its external data holds "
                             f"{length if length is not None else max(held, 0)} bytes; the files are damaged; "
                             f"{REEXPORT}")
        external = (target, offset, nbytes)
    elif tensor.HasField("raw_data"):
        if len(tensor.raw_data) != nbytes:
            raise ModelError(f"{source}: tensor {quoted(label)} {declares} but holds {len(tensor.raw_data)} bytes; the "
                             f"file is damaged; {REEXPORT}")
    else:
        held = len(getattr(tensor, field))
        if (held != count) if onnx.TensorProto.DataType.Name(tensor.data_type) not in SUB_BYTE_BITS \
                else held > count:
            raise ModelError(f"{source}: tensor {quoted(label)} declares shape {shape_text(shape)} ({count} values) but "
                             f"holds {held}; the file is damaged; {REEXPORT}")
    budget.tensor(label, shape)
    return external


def _read_external(tensor, target: Path, offset: int, nbytes: int) -> None:
    """Read a checked tensor's external bytes into its ``raw_data``."""
    import onnx

    with open(target, "rb") as f:
        f.seek(offset)
        tensor.raw_data = f.read(nbytes)
    tensor.data_location = onnx.TensorProto.DEFAULT
    del tensor.external_data[:]


def load_onnx_weights(path: str | Path) -> NetworkWeights:
    """The weights and wiring of an ONNX model file; a :class:`ModelError` for an unreadable
    file, a tensor whose data does not match its dims or that would pass the memory limit,
    external data outside the model's folder, or an operator the graph builder cannot follow.

    The file is parsed without its external data; every initialiser's and Constant's size is
    checked (:func:`check_onnx_tensor`) before any external data is read or any tensor
    converted."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as exc:  # pragma: no cover - onnx is in the locked environment
        raise ModelError(f"{path}: reading ONNX files needs the onnx package (pip install onnx)") from exc
    path, source = Path(path), str(path)
    budget = ModelBudget(source)
    budget.bytes("parsing the file", 3 * path.stat().st_size)  # its bytes, the parsed model, shape inference
    try:
        model = onnx.load(source, load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError and others for bad files
        raise ModelError(f"{source}: not a readable ONNX file ({type(exc).__name__}); {REEXPORT}") from None
    external = [check_onnx_tensor(t, label, path.parent, source, budget) for label, t in _data_tensors(model.graph)]
    with contextlib.suppress(Exception):  # shapes only help with Flatten/Reshape sizes
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
        if len(_data_tensors(inferred.graph)) == len(external):
            model = inferred
    for (_, tensor), place in zip(_data_tensors(model.graph), external, strict=True):
        if place is not None:
            _read_external(tensor, *place)
    return weights_of_onnx_graph(model.graph, source, numpy_helper.to_array)


def _data_tensors(graph) -> list[tuple[str, object]]:
    """(name, ``TensorProto``) of every tensor the graph builder converts: the initialisers and
    the values of Constant nodes (named by their output)."""
    tensors = [(t.name, t) for t in graph.initializer]
    return tensors + [(node.output[0] if node.output else node.name, a.t) for node in graph.node
                      if node.op_type == "Constant" for a in node.attribute if a.name == "value"]


def weights_of_onnx_graph(graph, source: str, to_array) -> NetworkWeights:
    """Walk an ONNX ``GraphProto`` (see the module docstring), after checking that its nodes
    are topologically sorted (:func:`check_sorted`): each node goes to its operator's handler
    (:func:`~nn_clustering.formats.onnx_ops.walk_node`)."""
    check_sorted(graph, source)
    if is_attention_graph(graph):
        return transformer_of_onnx_graph(graph, source, to_array)
    shapes = {v.name: _static_shape(v) for v in [*graph.input, *graph.value_info, *graph.output]}
    initialised = {t.name for t in graph.initializer}
    inputs = [v for v in graph.input if v.name not in initialised]
    rec = WiringRecorder(source)
    if len(inputs) != 1:
        raise ModelError(f"{source}: the model has {len(inputs)} inputs; only single-input networks form a graph")
    shape = shapes[inputs[0].name]
    if len(shape) < 2 or shape[1] is None:
        raise ModelError(f"{source}: input {inputs[0].name!r} has shape {shape}; expected (batch, features) "
                         "or (batch, channels, height, width) with a fixed feature or channel count")
    readers = Counter(name for node in graph.node for name in node.input)
    walk = Walk(source, rec, to_array, {}, shapes, readers)
    for t in graph.initializer:
        walk.constant(t.name, to_array(t))
    walk.units[inputs[0].name], walk.ranks[inputs[0].name] = rec.input(shape[1]), len(shape)
    for node in graph.node:
        walk_node(walk, node)
    return rec.finish()


def check_sorted(graph, source: str) -> None:
    """Every node's inputs must be graph inputs, initialisers or outputs of an earlier node (an
    empty name is an omitted optional input); else one line naming the node: a graph that is not
    topologically sorted, or has a cycle, is not the network ``onnx.checker`` accepts."""
    known = {""} | {v.name for v in graph.input} | {t.name for t in graph.initializer}
    known |= {t.values.name for t in graph.sparse_initializer}
    computed = {name for node in graph.node for name in node.output}
    for node in graph.node:
        if not node.output or not node.output[0]:
            raise ModelError(f"{source}: node {node_label(node)} ({op_text(node.op_type)}) has no output; {REEXPORT}")
        for name in node.input:
            if name in known:
                continue
            if name in computed:
                raise ModelError(f"{source}: node {node_label(node)} ({op_text(node.op_type)}) reads {quoted(name)} before the node "
                                 "that computes it: the graph is not topologically sorted or has a cycle; re-export "
                                 "it, or sort its nodes topologically with onnx tools (onnx.checker.check_model "
                                 "names the problem)")
            raise ModelError(f"{source}: node {node_label(node)} ({op_text(node.op_type)}) reads {quoted(name)}, which no graph input, "
                             "initialiser or node provides; re-export it")
        known.update(node.output)
