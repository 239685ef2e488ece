"""A numpy evaluator of the ONNX operators a transformer's export is made of, for one small
input (:mod:`.onnx_transformer` reads where each tensor's values come from by evaluating the
graph on it).

Every operator is one small function of numpy arrays. Operators that move values without
changing them (reshapes, transposes, splits, slices, gathers, concatenations, expansions) are
written so that they also work on integer arrays: evaluated on an array of positions, they tell
which position of their input each output value is a copy of. Before an operator allocates its
output, the output's size is checked against the model's memory budget, so a file cannot make
the evaluation take more memory than the limit for reading a model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import scipy.special

from ..errors import ModelError
from .limits import ModelBudget

#: Operators that copy values to new places without changing them.
LAYOUT = frozenset({"Reshape", "Transpose", "Split", "Slice", "Gather", "Concat", "Expand", "Unsqueeze",
                    "Squeeze", "Flatten", "Identity", "Dropout"})

Op = Callable[[list, dict], list]


def _axis(a: dict, name: str, default: int | None = 0) -> int | None:
    return int(a[name]) if name in a else default


def _reshape(x, a, shape):
    shape = [int(s) for s in shape]
    if not a.get("allowzero", 0):
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return [x.reshape(shape)]


def _split(x, a, split=None, *_):
    axis = _axis(a, "axis")
    sizes = [int(s) for s in (split if split is not None else a.get("split", []))]
    if not sizes:
        n = int(a.get("num_outputs", 0)) or 1
        step = -(-x.shape[axis] // n)
        sizes = [min(step, x.shape[axis] - i * step) for i in range(n)]
    return np.split(x, np.cumsum(sizes)[:-1], axis=axis)


def _slice(x, a, starts, ends, axes=None, steps=None):
    axes = range(len(starts)) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    index = [slice(None)] * x.ndim
    for s, e, ax, st in zip(starts, ends, axes, steps, strict=True):
        n = x.shape[int(ax)]
        s, e, st = int(s), int(e), int(st)
        s, e = max(min(s, n), -n - 1), max(min(e, n), -n - 1)  # int64 extremes clipped, as ONNX does
        index[int(ax)] = slice(s, e, st)
    return [x[tuple(index)]]


def _squeeze(x, a, axes=None):
    axes = a.get("axes") if axes is None else axes
    return [np.squeeze(x, axis=None if axes is None else tuple(int(i) for i in axes))]


def _unsqueeze(x, a, axes=None):
    axes = sorted(int(i) % (x.ndim + len(axes if axes is not None else a["axes"]))
                  for i in (axes if axes is not None else a["axes"]))
    for ax in axes:
        x = np.expand_dims(x, ax)
    return [x]


def _gemm(x, a, w, c=None):
    x = x.T if a.get("transA", 0) else x
    w = w.T if a.get("transB", 0) else w
    y = a.get("alpha", 1.0) * (x @ w)
    return [y if c is None else y + a.get("beta", 1.0) * c]


def _layer_norm(x, a, scale, bias=None):
    axis = _axis(a, "axis", -1) % x.ndim
    axes = tuple(range(axis, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(var + a.get("epsilon", 1e-5)) * scale
    return [y if bias is None else y + bias]


def _softmax(x, a):
    axis = _axis(a, "axis", -1)
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return [e / e.sum(axis=axis, keepdims=True)]


def _reduce(fn):
    def op(x, *rest):
        a = rest[-1]
        axes = rest[0] if len(rest) > 1 else a.get("axes")
        axes = None if axes is None or len(axes) == 0 else tuple(int(i) for i in axes)
        return [fn(x, axis=axes, keepdims=bool(a.get("keepdims", 1)))]
    return op


def _conv(x, a, w, b=None):
    """A 2-D convolution without groups or dilation (a vision transformer's patch embedding)."""
    if x.ndim != 4 or a.get("group", 1) != 1 or any(d != 1 for d in a.get("dilations", [1, 1])):
        raise ValueError("only 2-D convolutions without groups or dilation are evaluated")
    pads = a.get("pads", [0, 0, 0, 0])
    x = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    sh, sw = a.get("strides", [1, 1])
    windows = np.lib.stride_tricks.sliding_window_view(x, w.shape[2:], axis=(2, 3))[:, :, ::sh, ::sw]
    y = np.einsum("nchwij,ocij->nohw", windows, w)
    return [y if b is None else y + b[None, :, None, None]]


def _cast(x, a):
    import onnx

    return [x.astype(onnx.helper.tensor_dtype_to_np_dtype(a["to"]))]


def _constant_of_shape(shape, a):
    value = a.get("value")
    fill = np.zeros(1) if value is None else value
    return [np.full([int(s) for s in shape], fill.reshape(-1)[0], dtype=fill.dtype)]


def _gather_elements(x, a, index):
    return [np.take_along_axis(x, index.astype(np.int64) % x.shape[_axis(a, "axis")], axis=_axis(a, "axis"))]


def _trilu(x, a, k=None):
    k = 0 if k is None else int(k)
    return [np.triu(x, k) if a.get("upper", 1) else np.tril(x, k)]


def _unary(fn) -> Op:
    return lambda x, a: [fn(x)]


def _binary(fn) -> Op:
    return lambda x, y, a: [fn(x, y)]


OPS: dict[str, Op] = {
    "Identity": lambda x, a: [x],
    "Dropout": lambda x, *rest: [x, np.ones(x.shape, bool)],  # inference: the identity
    "Reshape": lambda x, shape, a: _reshape(x, a, shape),
    "Transpose": lambda x, a: [np.transpose(x, a.get("perm"))],
    "Split": lambda x, *rest: _split(x, rest[-1], *rest[:-1]),
    "Slice": lambda x, *rest: _slice(x, rest[-1], *rest[:-1]),
    "Gather": lambda x, i, a: [np.take(x, i.astype(np.int64), axis=_axis(a, "axis"))],
    "GatherElements": lambda x, i, a: _gather_elements(x, a, i),
    "Concat": lambda *rest: [np.concatenate(rest[:-1], axis=_axis(rest[-1], "axis"))],
    "Expand": lambda x, shape, a: [np.broadcast_to(x, np.broadcast_shapes(x.shape, tuple(int(s) for s in shape))).copy()],
    "Unsqueeze": lambda x, *rest: _unsqueeze(x, rest[-1], *rest[:-1]),
    "Squeeze": lambda x, *rest: _squeeze(x, rest[-1], *rest[:-1]),
    "Flatten": lambda x, a: [x.reshape(int(np.prod(x.shape[: _axis(a, "axis", 1)])), -1)],
    "Shape": lambda x, a: [np.array(x.shape[a.get("start", 0): a.get("end", None)], np.int64)],
    "Size": lambda x, a: [np.array(x.size, np.int64)],
    "ConstantOfShape": lambda shape, a: _constant_of_shape(shape, a),
    "Range": lambda s, e, d, a: [np.arange(s, e, d)],
    "Cast": _cast,
    "Add": _binary(np.add), "Sub": _binary(np.subtract), "Mul": _binary(np.multiply),
    "Div": _binary(lambda x, y: x // y if np.issubdtype(np.result_type(x, y), np.integer) else x / y),
    "Pow": _binary(np.power), "Max": _binary(np.maximum), "Min": _binary(np.minimum),
    "Equal": _binary(np.equal), "Less": _binary(np.less), "LessOrEqual": _binary(np.less_equal),
    "Greater": _binary(np.greater), "GreaterOrEqual": _binary(np.greater_equal),
    "And": _binary(np.logical_and), "Or": _binary(np.logical_or),
    "Not": _unary(np.logical_not), "IsNaN": _unary(np.isnan), "IsInf": _unary(np.isinf),
    "Where": lambda c, x, y, a: [np.where(c, x, y)],
    "Neg": _unary(np.negative), "Abs": _unary(np.abs), "Sqrt": _unary(np.sqrt), "Reciprocal": _unary(np.reciprocal),
    "Exp": _unary(np.exp), "Log": _unary(np.log), "Tanh": _unary(np.tanh), "Erf": _unary(scipy.special.erf),
    "Sigmoid": _unary(scipy.special.expit), "Relu": _unary(lambda x: np.maximum(x, 0)),
    "Cos": _unary(np.cos), "Sin": _unary(np.sin),
    "Gelu": lambda x, a: [0.5 * x * (1 + (np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3))
                                          if a.get("approximate", b"none") in (b"tanh", "tanh")
                                          else scipy.special.erf(x / np.sqrt(2))))],
    "MatMul": _binary(np.matmul),
    "Gemm": lambda x, w, *rest: _gemm(x, rest[-1], w, *rest[:-1]),
    "LayerNormalization": lambda x, s, *rest: _layer_norm(x, rest[-1], s, *rest[:-1]),
    "Softmax": _softmax,
    "ReduceMean": _reduce(np.mean), "ReduceSum": _reduce(np.sum), "ReduceMax": _reduce(np.max),
    "Trilu": lambda x, *rest: _trilu(x, rest[-1], *rest[:-1]),
    "Conv": lambda x, w, *rest: _conv(x, rest[-1], w, *rest[:-1]),
}


def _broadcast(shapes: Sequence[tuple]) -> tuple:
    try:
        return np.broadcast_shapes(*shapes)
    except ValueError:
        return ()


def output_size(op: str, inputs: Sequence[np.ndarray | None], attrs: dict) -> int:
    """The elements of an operator's output (an upper bound), known before it runs: the
    operators that make shapes from values (ConstantOfShape, Expand, Range), products and
    convolutions, and broadcasts."""
    given = [x for x in inputs if x is not None]
    if op == "ConstantOfShape":
        return math.prod(max(int(s), 0) for s in given[0].reshape(-1))
    if op == "Expand":
        target = tuple(max(int(s), 0) for s in given[1].reshape(-1))
        return math.prod(_broadcast([given[0].shape, target]) or target)
    if op == "Range":
        return int(abs((float(given[1]) - float(given[0])) / (float(given[2]) or 1.0))) + 1
    if op in ("MatMul", "Gemm") and len(given) >= 2 and given[0].ndim and given[1].ndim:
        a, b = given[0].shape, given[1].shape
        return math.prod(_broadcast([a[:-2], b[:-2]])) * (a[-2] if len(a) > 1 else 1) * b[-1] + math.prod(a) + math.prod(b)
    if op == "Conv" and len(given) >= 2 and given[0].ndim == 4:
        return given[0].shape[0] * given[1].shape[0] * math.prod(given[0].shape[2:])
    return math.prod(_broadcast([x.shape for x in given])) if given else 0


def evaluate(op: str, inputs: list[np.ndarray | None], attrs: dict, label: str, budget: ModelBudget) -> list[np.ndarray]:
    """The outputs of one node, after its output size is checked against ``budget``; one line
    for an operator the evaluator does not have or inputs it cannot take."""
    if op not in OPS:
        raise ModelError(f"{budget.source}: node {label} ({op}) is not an operator of the transformers this "
                         "reader follows")
    size = output_size(op, inputs, attrs)
    budget.bytes(f"the output of node {label} ({op}), {size:,} values as float64,", 8 * size)
    args = list(inputs)
    while args and args[-1] is None:
        args.pop()
    try:
        with np.errstate(all="ignore"):
            return OPS[op](*args, attrs)
    except (ValueError, TypeError, IndexError, np.exceptions.AxisError) as exc:
        raise ModelError(f"{budget.source}: node {label} ({op}) cannot be evaluated on its inputs "
                         f"({type(exc).__name__}); re-export it with torch.onnx.export") from None
