"""ONNX handlers for layout: transposes, reshapes, flattening, and slices, splits and
permutations of the units (the table is :data:`~.onnx_ops.OPERATORS`). The units' axis is
tracked through every layout change (:attr:`~.onnx_walk.Walk.axes`), and an axis split into
factors (ShuffleNet's channel shuffle reshapes C into (groups, C / groups), transposes the two
and merges them back) through :attr:`~.onnx_walk.Walk.factors`."""

from __future__ import annotations

import numpy as np

from .onnx_walk import Node, Walk
from .wiring import Units


def flat_size(target: tuple | None, before: tuple | None) -> int | None:
    """Units after flattening a feature map: from the inferred output shape, else the input's
    static shape, else unknown (None)."""
    if target is not None and len(target) == 2 and target[1] is not None:
        return int(target[1])
    if before is not None and all(d is not None for d in before[1:]):
        return int(np.prod(before[1:]))
    return None


def transpose(walk: Walk, node: Node) -> tuple[Units, int]:
    """``Transpose``: the same units, their axis moved (to channels-last and back).

    Parameters
    ----------
    walk : Walk
        The walk's state; the output's unit axis is set here.
    node : Node
        The node.

    Returns
    -------
    tuple of (Units, int)
        The input's units (a fresh layer output stays fresh: the values are the same) and rank.
    """
    perm = [int(p) for p in node.attrs.get("perm", range(node.rank - 1, -1, -1))]
    walk.axes[node.output] = perm.index(node.axis)
    if node.live[0] in walk.factors:  # a split units axis: its factors move together
        first, sizes, order = walk.factors[node.live[0]]
        places = [perm.index(first + k) for k in range(len(sizes))]
        if max(places) - min(places) != len(sizes) - 1:
            raise walk.refuse(node, "moves the factors of a split units axis apart; not supported")
        current = sorted(range(len(sizes)), key=lambda k: places[k])
        walk.axes[node.output] = min(places)
        walk.factors[node.output] = (min(places), sizes, tuple(order[k] for k in current))
    return node.x, node.rank


def _unit_range(walk: Walk, node: Node, start: int, stop: int, step: int = 1) -> np.ndarray:
    """Unit indices ``start:stop:step`` along the units' axis, clamped as ONNX (and Python) do."""
    return np.arange(node.x.size)[slice(start, stop, step)]


def split(walk: Walk, node: Node) -> tuple[Units, int]:
    """``Split``: along the units' axis, each output holds its own slice of the units (the
    others are recorded here); along another axis every output keeps all units.

    Parameters
    ----------
    walk : Walk
        The walk's state; the second output onwards are recorded here.
    node : Node
        The node; its sizes come from its second input, its ``split`` attribute, or an even
        split into as many parts as outputs.

    Returns
    -------
    tuple of (Units, int)
        The first output's units and the input's rank.
    """
    axis = node.attrs.get("axis", 0) % node.rank
    n = len(node.proto.output)
    if node.has_input(1):
        sizes = [int(v) for v in walk.weight(node, 1).reshape(-1)]
    else:
        sizes = list(node.attrs.get("split", [])) or [node.x.size // n] * n
    outs, start = [], 0
    for size in sizes:
        outs.append(walk.rec.select(node.x, np.arange(start, start + size)) if axis == node.axis else node.x)
        start += size
    for name, out in zip(node.proto.output[1:], outs[1:], strict=True):
        walk.units[name], walk.ranks[name], walk.axes[name] = out, node.rank, node.axis
        walk.producers[name], walk.protos[name] = node.proto.name or name, node.proto
    return outs[0], node.rank


def slice_units(walk: Walk, node: Node) -> tuple[Units, int]:
    """``Slice``: along the units' axis, the units in the slice; along spatial axes (a crop)
    all units.

    Parameters
    ----------
    walk : Walk
        The walk's state.
    node : Node
        The node; starts, ends, axes and steps must be constants.

    Returns
    -------
    tuple of (Units, int)
        The sliced units and the input's rank.
    """
    starts, ends = (walk.weight(node, i).astype(np.int64).reshape(-1) for i in (1, 2))
    axes = walk.weight(node, 3).astype(np.int64).reshape(-1) if node.has_input(3) else np.arange(starts.size)
    steps = walk.weight(node, 4).astype(np.int64).reshape(-1) if node.has_input(4) else np.ones(starts.size, np.int64)
    for start, end, axis, step in zip(starts, ends, axes % node.rank, steps, strict=True):
        if axis == node.axis:
            limit = np.iinfo(np.int64).max // 2
            stop = None if end >= limit else int(end)
            return walk.rec.select(node.x, _unit_range(walk, node, int(start), stop, int(step))), node.rank
    return walk.rec.passthrough(node.x), node.rank


def flattened(walk: Walk, node: Node) -> tuple[Units, int]:
    """The units of a tensor flattened to (batch, features) (shared by Flatten and Reshape);
    a feature map's size comes from the inferred shapes (:func:`flat_size`)."""
    x, rank = node.x, node.rank
    size = flat_size(walk.shapes.get(node.output), walk.shapes.get(node.live[0])) if rank > 2 else x.size
    if size is None and x.sources and all(src.producer < 0 for src in x.sources):
        raise walk.refuse(node, "flattens the input of unknown shape; export with a fixed input size")
    return walk.rec.flatten(x, -1 if size is None else size, rank > 2), 2


def flatten(walk: Walk, node: Node) -> tuple[Units, int]:
    """``Flatten`` at axis 1.

    Parameters
    ----------
    walk : Walk
        The walk's state.
    node : Node
        The Flatten node; another axis is refused.

    Returns
    -------
    tuple of (Units, int)
        The flattened units and rank 2.
    """
    if node.attrs.get("axis", 1) != 1:
        raise walk.refuse(node, f"uses axis {node.attrs['axis']}; only axis 1 is supported")
    return flattened(walk, node)


def _lead(dims: tuple) -> tuple[int, int]:
    """The elements of the leading ``dims`` of a tensor, its batch axis left out (reshapes do not
    move samples), as (product of the known sizes, number of unknown ones)."""
    known = [d for d in dims[1:] if d is not None]
    return int(np.prod(known)) if known else 1, len(dims[1:]) - len(known)


def kept_axis(before: tuple, axis: int, after: tuple) -> int | None:
    """The axis of ``after`` that holds the units of ``before``'s ``axis`` unchanged (the same
    size, and the same number of elements before it, so unit c stays unit c in memory order),
    else None. Unknown sizes (None) must match one for one."""
    size = before[axis]
    if size is None:
        return None
    for j, d in enumerate(after):
        if d == size and _lead(before[:axis]) == _lead(after[:j]):
            return j
    return None


def reshape(walk: Walk, node: Node) -> tuple[Units, int]:
    """``Reshape``: one that keeps the units on one axis (a pooled map to (batch, channels) and
    back, (N, C, H, W) to (N, C, H * W)) passes them through; else a flatten to (batch,
    features).

    Parameters
    ----------
    walk : Walk
        The walk's state; the inferred shapes of the input and output decide.
    node : Node
        The Reshape node.

    Returns
    -------
    tuple of (Units, int)
        The units (passed through, or flattened) and the output's rank.
    """
    target, before = walk.shapes.get(node.output), walk.shapes.get(node.live[0])
    if before is not None and before[node.axis] is None:  # the walk knows how many units there are
        before = (*before[:node.axis], node.x.size, *before[node.axis + 1:])
    if target is not None and before is not None:
        if node.live[0] in walk.factors:
            merged = _merged(walk, node, before, target)
            if merged is not None:
                return merged
        kept = kept_axis(before, node.axis, target)
        if kept is not None:
            walk.axes[node.output] = kept
            return walk.rec.passthrough(node.x), len(target)
        split = split_axis(before, node.axis, target)
        if split is not None:  # the units' axis as factors, to be permuted and merged back
            walk.axes[node.output] = split[0]
            walk.factors[node.output] = (split[0], split[1], tuple(range(len(split[1]))))
            return walk.rec.passthrough(node.x), len(target)
    if target is None or len(target) != 2:
        raise walk.refuse(node, "neither keeps the units on one axis nor flattens to (batch, features)")
    return flattened(walk, node)


def split_axis(before: tuple, axis: int, after: tuple) -> tuple[int, tuple[int, ...]] | None:
    """Where ``after`` splits ``before``'s units axis into two or more consecutive axes (the
    same elements before them): (first axis, their sizes), else None."""
    size = before[axis]
    for j in range(len(after)):
        if size is None or _lead(after[:j]) != _lead(before[:axis]):
            continue
        product = 1
        for k in range(j, len(after)):
            if after[k] is None or product * after[k] > size:
                break
            product *= after[k]
            if product == size and k > j:
                return j, tuple(after[j:k + 1])
    return None


def _merged(walk: Walk, node: Node, before: tuple, target: tuple) -> tuple[Units, int] | None:
    """A reshape that merges a split units axis back into one: the units permuted by the
    order their factors were transposed to (a channel shuffle), else None."""
    first, sizes, order = walk.factors[node.live[0]]
    size = int(np.prod(sizes))
    for j, d in enumerate(target):
        if d == size and _lead(target[:j]) == _lead(before[:first]):
            walk.axes[node.output] = j
            permutation = np.arange(size).reshape(sizes).transpose(order).reshape(-1)
            return walk.rec.select(node.x, permutation), len(target)
    return None


def gather(walk: Walk, node: Node) -> tuple[Units, int]:
    """``Gather`` of a vector of units by a constant arange (the dynamo exporter's
    ``as_strided`` after a pooling): the same units, reshaped.

    Parameters
    ----------
    walk : Walk
        The walk's state.
    node : Node
        The node; any other gather (an embedding, a selection of units) is refused.

    Returns
    -------
    tuple of (Units, int)
        The units and the rank of the indices.
    """
    indices = walk.constants.get(node.inputs[1]) if len(node.inputs) > 1 else None
    size = node.x.size
    if node.rank != 1 or indices is None or indices.size != size or not np.array_equal(indices.reshape(-1), np.arange(size)):
        raise walk.refuse(node, "selects or embeds units by index; only a gather that keeps every unit in order is followed")
    walk.axes[node.output] = int(np.argmax(np.asarray(indices.shape) == size))
    return walk.rec.passthrough(node.x), indices.ndim
