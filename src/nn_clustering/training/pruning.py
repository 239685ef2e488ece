"""Magnitude pruning inside the compiled train step (method.md §2.2), backend-agnostic Keras 3.

Target sparsity at step t of T pruning steps: s(t) = 0.9 + (0.5 - 0.9) (1 - min(1, t/T))^3.
At t = 0, every 10 steps and at the last step each kernel (biases never) keeps its
round(n (1 - s)) entries of largest |w|. Masked weights stay exactly zero through every
optimizer update.

How it stays fast: each mask is an *optimizer* variable, and a kernel constraint (which Keras
runs inside the optimizer's update, in the compiled step on TensorFlow and in the jitted
stateless step on JAX) multiplies the kernel by its mask after every update and, on the steps
the schedule names, then drops entries from kernel and mask. Since sparsity only grows and
masked weights are zero, an update keeps the mask's largest entries and drops its
d = kept - round(n (1 - s)) smallest |w|, an exact count: a ``cond`` selects the candidates
(a two-stage ``top_k`` over blocks, whose size is bounded in advance from the schedule) and
two small scatters drop the first d of them.
Nothing runs in Python between steps: the callback only sets the step-0 mask (50%) when
training starts.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from .architectures import prunable_layers


@dataclass(frozen=True)
class PruningSchedule:
    """Polynomial (cubic) sparsity schedule from ``initial`` to ``final`` over ``total_steps``."""

    total_steps: int
    initial: float = 0.5
    final: float = 0.9
    frequency: int = 10

    def sparsity(self, step: int) -> float:
        """Target sparsity after ``step`` pruning steps."""
        progress = min(1.0, step / self.total_steps)
        return self.final + (self.initial - self.final) * (1.0 - progress) ** 3

    def updates_at(self, step):
        """Whether the masks are recomputed at ``step`` (0, every ``frequency``, and the last).

        Written with ``&``/``|`` so that ``step`` may be an int or a traced integer tensor.
        """
        return (step <= self.total_steps) & ((step % self.frequency == 0) | (step == self.total_steps))

    def update_steps(self) -> list[int]:
        """Every step at which the masks are recomputed, in order."""
        steps = list(range(0, self.total_steps + 1, self.frequency))
        return steps if steps[-1] == self.total_steps else [*steps, self.total_steps]

    def slot(self, step):
        """Index of an update step in :meth:`update_steps` (ceil(step / frequency)); ``step``
        may be an int or an integer tensor."""
        return (step + self.frequency - 1) // self.frequency

    def keep_counts(self, size: int) -> np.ndarray:
        """Entries kept of a kernel of ``size`` entries at each update step."""
        return np.array([keep_count(size, self.sparsity(t)) for t in self.update_steps()], np.int32)


def keep_count(size: int, sparsity: float) -> int:
    """round(n (1 - s)): how many entries a mask keeps."""
    return int(round(size * (1.0 - sparsity)))


def magnitude_mask(weights: np.ndarray, sparsity: float) -> np.ndarray:
    """Mask keeping exactly round(n (1 - sparsity)) entries of largest |w|."""
    flat = np.abs(np.asarray(weights)).ravel()
    keep = keep_count(flat.size, sparsity)
    mask = np.zeros(flat.size, dtype=np.float32)
    if keep >= flat.size:
        mask[:] = 1.0
    elif keep > 0:
        mask[np.argpartition(flat, flat.size - keep)[flat.size - keep :]] = 1.0
    return mask.reshape(np.shape(weights))


MIN_BLOCKED_SIZE = 4096


def selection_block(size: int, bound: int) -> int:
    """Block length for :func:`smallest_indices` on ``size`` entries, 1 for a plain ``top_k``.

    The largest power of two, at least 4, that divides ``size``, is at most sqrt(size / bound)
    (which balances the two ``top_k``s: size / block minima, then bound x block candidates) and
    leaves at least ``bound`` blocks. Below :data:`MIN_BLOCKED_SIZE` entries one ``top_k`` is
    as fast (`benchmarks/bench_mask_update.py`: the 256 x 10 kernel is slower in two stages
    on TensorFlow).
    """
    if size < MIN_BLOCKED_SIZE:
        return 1
    block = 1
    while (block * 2) ** 2 * bound <= size and size % (block * 2) == 0 and size // (block * 2) >= bound:
        block *= 2
    return block if block >= 4 else 1


def smallest_indices(magnitude, bound: int):
    """Indices of the ``bound`` smallest entries of the 1-D ``magnitude``, smallest first, ties
    by lower index: exactly ``ops.top_k(-magnitude, bound)[1]``, in about a third of its time
    on XLA's CPU backend, whose ``top_k`` costs ~1.3 ns per input entry whatever ``bound`` is.

    Two stages over blocks of ``b`` consecutive entries: the ``bound`` blocks of smallest
    minimum (ties: lower block) hold the ``bound`` smallest entries (any entry outside them
    has ``bound`` smaller-or-earlier entries before it, one per chosen block's minimum); a
    second ``top_k`` over those blocks' entries, taken in block order, finds them, with the
    same tie order as one ``top_k`` over everything.
    """
    size = int(magnitude.shape[0])
    block = selection_block(size, bound)
    if block == 1:
        return ops.top_k(-magnitude, k=bound)[1]
    blocks = ops.reshape(magnitude, (size // block, block))
    _, chosen = ops.top_k(-ops.min(blocks, axis=1), k=bound)
    chosen = ops.sort(chosen)  # block order, so that the candidates are in index order
    candidates = ops.reshape(ops.take(blocks, chosen, axis=0), (-1,))
    _, within = ops.top_k(-candidates, k=bound)
    return ops.take(chosen, within // block) * block + within % block


def smallest_kept(kept, mask, bound: int):
    """Flat indices of the ``bound`` (at most the kernel's size) kept entries (``mask`` > 0)
    of smallest |``kept``|, smallest first (masked entries count as infinite). Keras ops,
    traceable."""
    magnitude = ops.where(ops.reshape(mask, (-1,)) > 0, ops.abs(ops.reshape(kept, (-1,))), np.inf)
    return smallest_indices(magnitude, bound)


def drop_at(kept, mask, positions):
    """``kept`` and ``mask`` with the entries at the flat ``positions`` set to 0.

    One in-place scatter each, of ``len(positions)`` entries. A step that drops fewer entries
    than there are positions fills the rest with the *spare*, an entry masked since step 0 (so
    writing 0 there changes nothing), which keeps every index in range on every backend.
    """
    where = ops.expand_dims(positions, 1)
    zeros = ops.zeros(ops.shape(positions), kept.dtype)

    def scatter(x):
        return ops.reshape(ops.scatter_update(ops.reshape(x, (-1,)), where, zeros), ops.shape(x))

    return scatter(kept), scatter(mask)


def first_masked(mask: np.ndarray) -> int:
    """Flat index of the first masked entry (the constraint's ``spare``)."""
    masked = np.flatnonzero(np.asarray(mask).ravel() == 0)
    if masked.size == 0:
        raise ValueError("the mask has no masked entry to serve as the spare")
    return int(masked[0])


@keras.saving.register_keras_serializable(package="nn_clustering")
class MaskConstraint(keras.constraints.Constraint):
    """After every optimizer update: apply the mask and, when the schedule says so, drop the
    smallest kept weights from kernel and mask.

    ``iterations`` is the optimizer's step counter, read before it counts the current step;
    ``spare`` holds the flat index of an entry masked since step 0 (see :func:`drop_at`).
    """

    def __init__(self, mask=None, iterations=None, schedule: PruningSchedule | None = None, spare=None):
        self.mask, self.iterations, self.schedule, self.spare = mask, iterations, schedule, spare
        if schedule is not None:
            keeps = schedule.keep_counts(int(np.prod(mask.shape)))
            self.drops = keeps[:-1] - keeps[1:]  # entries dropped by each update after step 0
            self.bound = min(max(1, int(np.max(self.drops, initial=0))), int(np.prod(mask.shape)))

    def __call__(self, w):
        if self.mask is None:
            return w
        mask = ops.cast(self.mask.value, w.dtype)
        kept = w * mask  # fused into the optimizer's update
        step = ops.cast(self.iterations.value, "int32") + 1  # the step just taken
        due = self.schedule.updates_at(step)
        spare = ops.cast(self.spare.value, "int32")
        # The cond returns only the ``bound`` positions to zero: a cond returning the whole
        # mask, or a mask recomputed outside it from the updated kernel, costs XLA its fused
        # update loop (README, *Training speed*).
        positions = ops.cond(due, lambda: self._positions(kept, mask, step, spare),
                             lambda: ops.broadcast_to(spare, (self.bound,)))
        kept, mask = drop_at(kept, mask, positions)
        self.mask.assign(mask)
        return kept

    def _positions(self, kept, mask, step, spare):
        """The d kept entries of smallest |w| that this step's update drops, then the spare."""
        # this step's update is the schedule's number ``slot`` (step 0's is number 0); it
        # drops drops[slot - 1] entries
        slot = ops.clip(self.schedule.slot(step), 1, len(self.drops))
        count = ops.take(ops.convert_to_tensor(self.drops), slot - 1)
        return ops.where(ops.arange(self.bound) < count, smallest_kept(kept, mask, self.bound), spare)

    def get_config(self) -> dict:
        return {}  # the mask is training state, not part of the saved architecture


class MagnitudePruning(keras.callbacks.Callback):
    """Prunes every Dense/Conv2D kernel of the model to the schedule's sparsity."""

    def __init__(self, schedule: PruningSchedule):
        super().__init__()
        self.schedule = schedule
        self.masks: list[keras.Variable] = []
        self.spares: list[keras.Variable] = []
        self.optimizer: keras.optimizers.Optimizer | None = None

    def attach(self, model: keras.Model, optimizer: keras.optimizers.Optimizer) -> None:
        """Give each prunable kernel a mask and a spare index (optimizer variables) and the
        constraint using them.

        Call before ``model.compile(optimizer=optimizer, ...)``; the optimizer is built here.
        """
        if not optimizer.built:
            optimizer.build(model.trainable_variables)
        self.optimizer = optimizer
        self.masks, self.spares = [], []
        for layer in prunable_layers(model):
            size = int(np.prod(layer.kernel.shape))
            if keep_count(size, self.schedule.sparsity(0)) >= size:
                raise ValueError(
                    f"initial sparsity {self.schedule.initial} masks no entry of {layer.name}'s kernel "
                    f"({size} entries); use an initial sparsity that masks at least one (method.md's is 0.5)"
                )
            mask = optimizer.add_variable(
                tuple(layer.kernel.shape), initializer="ones", dtype="float32", name=f"{layer.name}_mask"
            )
            spare = optimizer.add_variable((), initializer="zeros", dtype="int32", name=f"{layer.name}_spare")
            layer.kernel.constraint = MaskConstraint(mask, optimizer.iterations, self.schedule, spare)
            self.masks.append(mask)
            self.spares.append(spare)

    def on_train_begin(self, logs=None) -> None:
        """At step 0 set the first masks (the schedule's initial sparsity), apply them and
        record each mask's first masked entry as its spare."""
        if not self.masks:
            raise RuntimeError("MagnitudePruning.attach(model, optimizer) must be called before compile()")
        if int(keras.ops.convert_to_numpy(self.optimizer.iterations)) > 0:
            return  # a later fit: the masks are optimizer state and carry on
        sparsity = self.schedule.sparsity(0)
        for layer, mask, spare in zip(prunable_layers(self.model), self.masks, self.spares, strict=True):
            kernel = keras.ops.convert_to_numpy(layer.kernel)
            first = magnitude_mask(kernel, sparsity)
            mask.assign(first)
            spare.assign(first_masked(first))
            layer.kernel.assign(kernel * first)

    def detach(self, model: keras.Model) -> None:
        """Remove the constraints, the masks and the spares from the optimizer (the saved model
        then needs no custom objects and its optimizer state is a plain one)."""
        for layer in prunable_layers(model):
            layer.kernel.constraint = None
        if self.optimizer is not None:
            masks = {id(variable) for variable in (*self.masks, *self.spares)}
            # Keras has no public way to untrack an optimizer variable; its list is the record
            # (on TensorFlow a tracking wrapper, so delete in place, last first).
            tracked = self.optimizer._variables
            for index in reversed(range(len(tracked))):
                if id(tracked[index]) in masks:
                    del tracked[index]
