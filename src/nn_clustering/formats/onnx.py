"""Networks from ONNX files (what ``torch.onnx.export`` and TensorFlow converters write).

The graph's nodes are walked in order (ONNX stores them topologically sorted; a graph whose nodes
read a tensor before the node that computes it, unsorted or cyclic, is refused) and reported
to a :class:`~nn_clustering.formats.wiring.WiringRecorder`: ``Gemm``/``MatMul`` with a weight
initialiser are dense layers, ``Conv`` a conv layer (OIHW weights turned into Keras' HWIO, so
both frameworks give the same graph), ``BatchNormalization`` is folded into the layer it
directly follows, ``Add``/``Sum`` of two activations is a residual sum (an ``Add`` of a
constant is a bias), ``Concat`` along the channel axis a concatenation, and activations,
pooling, dropout, padding and ``Flatten`` pass units through. Any other operator is refused
with one line naming the node and the operator. Reading needs the ``onnx`` package.

The file is parsed without its external data; the data of every initialiser and Constant must
hold exactly what its dims declare, its size as float64 must fit the memory limit
(:mod:`~nn_clustering.formats.limits`) and external data must lie in a regular file inside the
model's folder, all checked before any external data is read or any tensor converted. Complex
tensors are refused.
"""

from __future__ import annotations

import contextlib
from os import path as os_path
from pathlib import Path

import numpy as np

from ..core.weights import NetworkWeights
from ..errors import ModelError
from .limits import ModelBudget, brief, element_count, shape_text
from .wiring import Units, WiringRecorder

#: Operators that neither mix units nor carry graph weights.
PASS_THROUGH = frozenset({
    "Relu", "LeakyRelu", "PRelu", "Sigmoid", "Tanh", "Elu", "Selu", "Celu", "Gelu", "Softplus", "Softsign",
    "HardSigmoid", "HardSwish", "Mish", "Clip", "Softmax", "LogSoftmax", "Dropout", "Identity", "MaxPool",
    "AveragePool", "Pad", "Cast",
})
GLOBAL_POOLS = frozenset({"GlobalAveragePool", "GlobalMaxPool"})
#: Reductions that pool over spatial axes when the channel axis is kept (PyTorch's exporter
#: writes adaptive average pooling to 1 x 1 as ReduceMean over axes 2 and 3).
REDUCTIONS = frozenset({"ReduceMean", "ReduceMax", "ReduceSum"})
SUPPORTED = sorted(PASS_THROUGH | GLOBAL_POOLS | REDUCTIONS | {
    "Gemm", "MatMul", "Conv", "BatchNormalization", "Add", "Sum", "Concat", "Flatten", "Reshape", "Constant",
})


def _attributes(node) -> dict:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _static_shape(value_info) -> tuple[int | None, ...]:
    dims = value_info.type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)


#: ONNX element types packed below one byte per element, with their bits per element.
SUB_BYTE_BITS = {"UINT4": 4, "INT4": 4, "FLOAT4E2M1": 4, "UINT2": 2, "INT2": 2, "FLOAT6E2M3": 6, "FLOAT6E3M2": 6}
REEXPORT = "re-export it with torch.onnx.export"


def _tensor_bytes(tensor, label: str, source: str) -> tuple[int, int, str]:
    """(element count, bytes of its raw data, its typed field) of an ONNX ``TensorProto``;
    one line for a negative dim, complex weights or strings."""
    import onnx

    dims = list(tensor.dims)
    if any(d < 0 for d in dims):
        raise ModelError(f"{source}: tensor {brief(label)} has dims {dims}; {REEXPORT}")
    kind = onnx.TensorProto.DataType.Name(tensor.data_type) if tensor.data_type in \
        onnx.TensorProto.DataType.values() else str(tensor.data_type)
    if kind.startswith("COMPLEX"):
        from .state_dict import complex_refusal

        raise complex_refusal(source, label, kind.lower())
    if kind in ("STRING", "UNDEFINED") or not kind.isidentifier():
        raise ModelError(f"{source}: tensor {brief(label)} holds {kind.lower()} values, not numbers; {REEXPORT}")
    count = element_count(dims)
    bits = SUB_BYTE_BITS.get(kind) or 8 * onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    return count, (count * bits + 7) // 8, onnx.helper.tensor_dtype_to_field(tensor.data_type)


def _external_file(tensor, label: str, base: Path, source: str) -> tuple[Path, int, int | None]:
    """(file, offset, declared length) of a tensor's external data, refused unless the file is a
    regular file inside the model's folder."""
    info = {e.key: e.value for e in tensor.external_data}
    location = info.get("location", "")
    outside = (f"{source}: tensor {brief(label)} keeps its data in {brief(location)}, outside the model's folder; it is "
               "not read: keep the data file next to the model (onnx.save(..., save_as_external_data=True))")
    if not location or Path(location).is_absolute():
        raise ModelError(outside)
    real_base = Path(os_path.realpath(base))
    target = Path(os_path.realpath(real_base / location))
    if target != real_base and real_base not in target.parents:
        raise ModelError(outside)
    if not target.is_file():
        raise ModelError(f"{source}: tensor {brief(label)} keeps its data in {brief(location)}, which is missing or not a "
                         "regular file; copy the data file next to the model")
    try:
        offset = int(info.get("offset", 0))
        length = int(info["length"]) if "length" in info else None
    except ValueError:
        raise ModelError(f"{source}: tensor {brief(label)} has a malformed external data offset or length; "
                         f"{REEXPORT}") from None
    if offset < 0 or (length is not None and length < 0):
        raise ModelError(f"{source}: tensor {brief(label)} has a negative external data offset or length; {REEXPORT}")
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
            raise ModelError(f"{source}: tensor {brief(label)} {declares} but its external data holds "
                             f"{length if length is not None else max(held, 0)} bytes; the files are damaged; "
                             f"{REEXPORT}")
        external = (target, offset, nbytes)
    elif tensor.HasField("raw_data"):
        if len(tensor.raw_data) != nbytes:
            raise ModelError(f"{source}: tensor {brief(label)} {declares} but holds {len(tensor.raw_data)} bytes; the "
                             f"file is damaged; {REEXPORT}")
    else:
        held = len(getattr(tensor, field))
        if (held != count) if onnx.TensorProto.DataType.Name(tensor.data_type) not in SUB_BYTE_BITS \
                else held > count:
            raise ModelError(f"{source}: tensor {brief(label)} declares shape {shape_text(shape)} ({count} values) but "
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
        inferred = onnx.shape_inference.infer_shapes(model)
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
    are topologically sorted (:func:`check_sorted`)."""
    check_sorted(graph, source)
    constants = {t.name: to_array(t).astype(np.float64) for t in graph.initializer}
    shapes = {v.name: _static_shape(v) for v in [*graph.input, *graph.value_info, *graph.output]}
    inputs = [v for v in graph.input if v.name not in constants]
    rec = WiringRecorder(source)
    if len(inputs) != 1:
        raise ModelError(f"{source}: the model has {len(inputs)} inputs; only single-input networks form a graph")
    shape = shapes[inputs[0].name]
    if len(shape) < 2 or shape[1] is None:
        raise ModelError(f"{source}: input {inputs[0].name!r} has shape {shape}; expected (batch, features) "
                         "or (batch, channels, height, width) with a fixed feature or channel count")
    units: dict[str, Units] = {inputs[0].name: rec.input(shape[1])}
    ranks: dict[str, int] = {inputs[0].name: len(shape)}
    readers: dict[str, int] = {}
    producers: dict[str, str] = {}  # tensor -> the node that computed it (for errors)
    for node in graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1

    def weight(node, i: int) -> np.ndarray:
        if len(node.input) <= i or node.input[i] not in constants:
            raise ModelError(f"{source}: node {_label(node)} ({node.op_type}) takes its weights from a "
                             "computed tensor, not an initialiser; export with constant weights")
        return constants[node.input[i]]

    for node in graph.node:
        op, attrs = node.op_type, _attributes(node)
        out_name = node.output[0]
        if op == "Constant":
            if "value" in attrs:
                constants[out_name] = to_array(attrs["value"]).astype(np.float64)
                continue
            raise ModelError(f"{source}: node {_label(node)} (Constant) holds no tensor value")
        live = [n for n in node.input if n in units]
        if not live and op in ("Identity", "Cast") and node.input[0] in constants:
            constants[out_name] = constants[node.input[0]]  # the legacy exporter's shared weights
            continue
        if not live:
            raise ModelError(f"{source}: node {_label(node)} ({op}) reads no tensor computed from the input; "
                             "fold constant subgraphs before exporting (do_constant_folding=True)")
        x, rank = units[live[0]], ranks[live[0]]
        name = _layer_name(node, constants)
        if op == "Gemm":
            if attrs.get("transA", 0):
                raise ModelError(f"{source}: node {_label(node)} (Gemm) transposes its input (transA=1); "
                                 "only activations times weights are supported")
            w = _matrix(node, weight(node, 1), source)
            kernel = (w.T if attrs.get("transB", 0) else w) * attrs.get("alpha", 1.0)
            bias = weight(node, 2) * attrs.get("beta", 1.0) if len(node.input) > 2 and node.input[2] else None
            out, out_rank = rec.weighted(name, kernel, bias, x, linear=True), 2
        elif op == "MatMul":
            if node.input[0] != live[0] or node.input[1] not in constants:
                raise ModelError(f"{source}: node {_label(node)} (MatMul) must multiply an activation by a "
                                 "weight initialiser")
            out, out_rank = rec.weighted(name, _matrix(node, weight(node, 1), source), None, x, linear=True), rank
        elif op == "Conv":
            w = weight(node, 1)
            if w.ndim != 4:
                raise ModelError(f"{source}: node {_label(node)} (Conv) has a {w.ndim - 2}-D kernel; only 2-D "
                                 "convolutions are supported")
            if attrs.get("group", 1) != 1:
                raise ModelError(f"{source}: node {_label(node)} (Conv) is grouped (group={attrs['group']}); "
                                 "only group=1 is supported")
            bias = weight(node, 2) if len(node.input) > 2 and node.input[2] else None
            out, out_rank = rec.weighted(name, w.transpose(2, 3, 1, 0), bias, x, linear=True), 4
        elif op == "BatchNormalization":
            if attrs.get("training_mode", 0):
                raise ModelError(f"{source}: node {_label(node)} (BatchNormalization) is in training mode; "
                                 "export the model in eval mode (model.eval())")
            gamma, beta, mean, var = (weight(node, i) for i in range(1, 5))
            scale = gamma / np.sqrt(var + attrs.get("epsilon", 1e-5))
            out = rec.batchnorm(_label(node)[1:-1], x, scale, beta - mean * scale, readers.get(live[0], 0) == 1,
                                after=producers.get(live[0], live[0]))
            out_rank = rank
        elif op in ("Add", "Sum"):
            if len(live) == 1:  # activation + constant: a bias
                others = [n for n in node.input if n != live[0]]
                if op == "Add" and others and others[0] in constants:
                    out = rec.add_bias(x, constants[others[0]])
                else:
                    out = rec.add(name, [x] * len(node.input))
            else:
                out = rec.add(_label(node), [units[n] for n in node.input])
            out_rank = rank
        elif op == "Concat":
            axis = attrs.get("axis", 1)
            if axis not in (1, 1 - rank):
                raise ModelError(f"{source}: node {_label(node)} (Concat) joins along axis {axis}; only the "
                                 "channel axis (1) is supported")
            if len(live) != len(node.input):
                raise ModelError(f"{source}: node {_label(node)} (Concat) joins a constant to activations; "
                                 "not supported")
            out, out_rank = rec.concat(_label(node), [units[n] for n in node.input]), rank
        elif op in ("Flatten", "Reshape"):
            target = shapes.get(out_name)
            if op == "Reshape" and (target is None or len(target) != 2):
                raise ModelError(f"{source}: node {_label(node)} (Reshape) does not flatten to (batch, "
                                 "features); only flattening reshapes are supported")
            if op == "Flatten" and attrs.get("axis", 1) != 1:
                raise ModelError(f"{source}: node {_label(node)} (Flatten) uses axis {attrs['axis']}; only "
                                 "axis 1 is supported")
            size = _flat_size(target, shapes.get(live[0])) if rank > 2 else x.size
            if size is None and x.sources and all(src.producer < 0 for src in x.sources):
                raise ModelError(f"{source}: node {_label(node)} ({op}) flattens the input of unknown shape; "
                                 "export with a fixed input size")
            out, out_rank = rec.flatten(x, -1 if size is None else size, rank > 2), 2
        elif op in REDUCTIONS:
            axes = attrs.get("axes")
            if axes is None and len(node.input) > 1 and node.input[1]:
                axes = weight(node, 1).astype(int).tolist()
            axes = sorted({int(a) % rank for a in (axes if axes is not None else range(rank))})
            if 0 in axes or 1 in axes:
                raise ModelError(f"{source}: node {_label(node)} ({op}) reduces over axes {axes}, which mixes "
                                 "units or samples; only reductions over spatial axes (pooling) are supported")
            out = rec.flatten(rec.passthrough(x), x.size, True) if rank > 2 else rec.passthrough(x)
            out_rank = rank if attrs.get("keepdims", 1) else rank - len(axes)
        elif op in GLOBAL_POOLS:
            out, out_rank = rec.flatten(rec.passthrough(x), x.size, True), rank
        elif op in PASS_THROUGH:
            out, out_rank = rec.passthrough(x), rank
        else:
            raise ModelError(f"{source}: node {_label(node)} uses operator {_op_text(op)}, which the graph builder does "
                             f"not support; supported: {', '.join(SUPPORTED)}")
        units[out_name], ranks[out_name] = out, out_rank
        producers[out_name] = node.name or out_name
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
            raise ModelError(f"{source}: node {_label(node)} ({_op_text(node.op_type)}) has no output; {REEXPORT}")
        for name in node.input:
            if name in known:
                continue
            if name in computed:
                raise ModelError(f"{source}: node {_label(node)} ({_op_text(node.op_type)}) reads {brief(name)} before the node "
                                 "that computes it: the graph is not topologically sorted or has a cycle; re-export "
                                 "it, or sort its nodes topologically with onnx tools (onnx.checker.check_model "
                                 "names the problem)")
            raise ModelError(f"{source}: node {_label(node)} ({_op_text(node.op_type)}) reads {brief(name)}, which no graph input, "
                             "initialiser or node provides; re-export it")
        known.update(node.output)


def _matrix(node, w: np.ndarray, source: str) -> np.ndarray:
    """A dense layer's weight, which must be a matrix."""
    if w.ndim != 2:
        raise ModelError(f"{source}: node {_label(node)} ({node.op_type}) has a {w.ndim}-D weight of shape "
                         f"{shape_text(w.shape)}; a dense layer's weight is a matrix; {REEXPORT}")
    return w


def _flat_size(target, before) -> int | None:
    """Units after flattening a feature map: from the inferred output shape, else the input's
    static shape, else unknown (None)."""
    if target is not None and len(target) == 2 and target[1] is not None:
        return int(target[1])
    if before is not None and all(d is not None for d in before[1:]):
        return int(np.prod(before[1:]))
    return None


def _label(node) -> str:
    """How an error names a node: its name, else its first output (``repr``, cut short)."""
    return brief(node.name or (node.output[0] if node.output else ""))


def _op_text(op) -> str:
    """An operator's name for a message: as is when it looks like one, else quoted and cut short."""
    return op if isinstance(op, str) and op.isidentifier() and len(op) <= 60 else brief(op)


def _layer_name(node, constants: dict) -> str:
    """A weighted node's layer name: its weight's initialiser name without ``.weight`` (PyTorch's
    module path, e.g. ``layer1.0.conv1``), else the node's name."""
    if len(node.input) > 1 and node.input[1] in constants:
        name = node.input[1]
        return name[: -len(".weight")] if name.endswith(".weight") else name
    return node.name or node.output[0]
