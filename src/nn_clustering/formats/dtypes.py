"""What a weight tensor may hold, in every format: real numbers only (a complex tensor is one
line naming it), and bfloat16 read exactly by upcasting to float32 (method.md §3.4)."""

from __future__ import annotations

import numpy as np

from ..errors import ModelError, quoted

#: The advice for a PyTorch network that a state_dict cannot describe.
EXPORT_HINT = ("export the model to ONNX instead: torch.onnx.export(model, example_input, 'model.onnx'), "
               "then pass model.onnx")


def complex_refusal(source: str, name: str, dtype) -> ModelError:
    """The one line for a tensor of complex weights."""
    return ModelError(f"{source}: tensor {quoted(name)} holds complex weights ({dtype}); a graph needs real "
                      "weights, so save the real weights instead (e.g. tensor.real)")


def bfloat16_to_float32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 values (their raw 16 bits as unsigned integers) as float32, exactly: a bfloat16
    is the top half of a float32."""
    return (bits.astype(np.uint32) << 16).view(np.float32)
