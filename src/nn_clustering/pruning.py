"""Magnitude pruning as a Keras 3 callback (SPEC section 2), backend-agnostic.

Target sparsity at step t of T pruning steps: s(t) = 0.9 + (0.5 - 0.9) (1 - min(1, t/T))^3.
At t = 0, every 10 steps and at the last step each kernel (biases never) keeps its
round(n (1 - s)) entries of largest |w|. Masked weights stay exactly zero through every
optimizer update:

* TensorFlow: the mask lives in a variable and a kernel constraint multiplies it in after
  every update, inside the compiled train step (no per-batch Python cost).
* JAX: the jitted train step only sees the model's own state, so after every batch the
  callback syncs the state back (``model.jax_state_sync()``) and re-applies the masks.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from .models import prunable_layers


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

    def update_due(self, previous: int, step: int) -> bool:
        """Whether a mask update falls in the steps (previous, step]: a multiple of
        ``frequency`` or the last step, while pruning is not over at ``previous``."""
        if previous >= self.total_steps:
            return False
        return step // self.frequency > previous // self.frequency or step >= self.total_steps

    def updates_at(self, step: int) -> bool:
        """Whether the masks are recomputed at ``step`` (0, every ``frequency``, and the last)."""
        return step == 0 or self.update_due(step - 1, step)


def magnitude_mask(weights: np.ndarray, sparsity: float) -> np.ndarray:
    """Mask keeping exactly round(n (1 - sparsity)) entries of largest |w|."""
    flat = np.abs(np.asarray(weights)).ravel()
    keep = int(round(flat.size * (1.0 - sparsity)))
    mask = np.zeros(flat.size, dtype=np.float32)
    if keep >= flat.size:
        mask[:] = 1.0
    elif keep > 0:
        mask[np.argpartition(flat, flat.size - keep)[flat.size - keep :]] = 1.0
    return mask.reshape(np.shape(weights))


@keras.saving.register_keras_serializable(package="nn_clustering")
class MaskConstraint(keras.constraints.Constraint):
    """Multiplies a kernel by its pruning mask after every optimizer update."""

    def __init__(self, mask: keras.Variable | None = None):
        self.mask = mask

    def __call__(self, w):
        return w if self.mask is None else w * keras.ops.cast(self.mask.value, w.dtype)

    def get_config(self) -> dict:
        return {}  # the mask is training state, not part of the saved architecture


class MagnitudePruning(keras.callbacks.Callback):
    """Prunes every Dense/Conv2D kernel of the model to the schedule's sparsity."""

    def __init__(self, schedule: PruningSchedule):
        super().__init__()
        self.schedule = schedule
        self.step = 0
        self.masks: list[keras.Variable] = []

    def attach(self, model: keras.Model) -> None:
        """Give each prunable kernel a mask (and on TensorFlow the constraint that applies it).

        Call before ``compile`` so the compiled train step includes the constraint.
        """
        self.masks = []
        self.step = 0
        for layer in prunable_layers(model):
            mask = keras.Variable(
                np.ones(layer.kernel.shape, np.float32), trainable=False, name=f"{layer.name}_mask"
            )
            if not _is_jax():
                layer.kernel.constraint = MaskConstraint(mask)
            self.masks.append(mask)

    def _apply_masks(self, recompute: bool) -> None:
        sparsity = self.schedule.sparsity(self.step)
        for layer, mask in zip(prunable_layers(self.model), self.masks, strict=True):
            kernel = keras.ops.convert_to_numpy(layer.kernel)
            if recompute:
                mask.assign(magnitude_mask(kernel, sparsity))
            layer.kernel.assign(kernel * keras.ops.convert_to_numpy(mask))

    def on_train_begin(self, logs=None) -> None:
        """Start the schedule (step 0) or, on a later ``fit``, continue it where it stopped."""
        if not self.masks:
            raise RuntimeError("MagnitudePruning.attach(model) must be called before compile()")
        self._apply_masks(recompute=self.step == 0)

    def on_train_batch_end(self, batch, logs=None) -> None:
        """Called after every step, or every ``steps_per_execution`` steps (TensorFlow)."""
        if _is_jax():
            self.model.jax_state_sync()
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        update = self.schedule.update_due(self.step, step)
        self.step = step
        if update:
            self._apply_masks(recompute=True)
        elif _is_jax():
            self._apply_masks(recompute=False)

    def detach(self, model: keras.Model) -> None:
        """Remove the constraints (the saved model then needs no custom objects)."""
        for layer in prunable_layers(model):
            layer.kernel.constraint = None


def _is_jax() -> bool:
    return keras.backend.backend() == "jax"
