"""Channel lesions of a Keras CNN (method.md §6 applied to the channel graph of §3.2).

The graph of a CNN has one node per output channel of each conv layer, so graph layer j is
conv layer j and its sub-modules are sets of channels. Lesioning channels zeroes their
incoming kernel slices K[:, :, :, c] and biases, so the channels' ReLU output is 0 for every
input (:func:`lesion_keras_model` does exactly that to a copy of the model: the reference).

:class:`CNNLesionEvaluator` gets the same accuracies without rebuilding models: per test batch
it runs the intact network up to the first lesioned conv layer once; when the next weighted
layer is a conv, the lesioned channels' contribution is subtracted from its intact
pre-activation (a convolution over |S| input channels instead of all), and the rest of the
network runs on all lesions of the call stacked together. It has the interface of
:class:`nn_clustering.core.lesion.LesionEvaluator`, so the single and double lesion tests work on it
unchanged. Keras lives only here, at the edge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..core.lesion import Lesion, accuracy_scores, first_lesioned_layers
from ..errors import ModelError
from ..formats.keras import flat_layers

#: Layers the evaluator can run between conv layers: they keep a zero channel at zero and never
#: mix channels (Flatten and Dense only come after the last conv layer).
CHANNELWISE = frozenset({"MaxPooling2D", "AveragePooling2D", "Dropout", "SpatialDropout2D", "Activation",
                         "ReLU"})
HEAD = frozenset({"Flatten", "Dense", "GlobalAveragePooling2D", "GlobalMaxPooling2D"})


@dataclass(frozen=True)
class ChannelNet:
    """The lesionable structure of a CNN: channels per conv layer (graph layers 0..n-1)."""

    layer_sizes: tuple[int, ...]

    @property
    def lesionable_layers(self) -> range:
        """Every conv layer's channels can be lesioned (all graph nodes are hidden units)."""
        return range(len(self.layer_sizes))


def _conv_layers(model) -> list:
    return [layer for layer in flat_layers(model) if type(layer).__name__ == "Conv2D"]


def _check_conv_indices(lesion: Lesion, n_conv: int) -> None:
    """A clear error for a lesion naming a conv layer the model does not have."""
    for j in lesion:
        if not 0 <= j < n_conv:
            raise ValueError(f"conv layer {j} does not exist (0..{n_conv - 1})")


def lesion_keras_model(model, lesion: Lesion):
    """A copy of ``model`` whose lesioned channels (conv layer j -> channel indices) have their
    kernel slices and biases zeroed."""
    import keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    convs = _conv_layers(copy)
    _check_conv_indices(lesion, len(convs))
    for j, channels in lesion.items():
        layer = convs[j]
        kernel = keras.ops.convert_to_numpy(layer.kernel).copy()
        kernel[..., channels] = 0
        layer.kernel.assign(kernel)
        if layer.use_bias:
            bias = keras.ops.convert_to_numpy(layer.bias).copy()
            bias[channels] = 0
            layer.bias.assign(bias)
    return copy


class CNNLesionEvaluator:
    """Accuracy (overall and per class) of many channel-lesioned copies of one Keras CNN."""

    def __init__(self, model, x: np.ndarray, y: np.ndarray, n_classes: int | None = None,
                 max_batch: int = 2048):
        self.layers = [layer for layer in flat_layers(model) if type(layer).__name__ != "InputLayer"]
        seen_head = False
        for layer in self.layers:
            kind = type(layer).__name__
            if kind in HEAD:
                seen_head = True
            elif kind == "Conv2D":
                if seen_head:
                    raise ModelError(f"conv layer {layer.name!r} follows the dense head; not supported for lesions")
            elif kind not in CHANNELWISE:
                raise ModelError(
                    f"layer {layer.name!r} ({kind}) cannot be run by the channel lesion evaluator; "
                    f"supported: Conv2D, {', '.join(sorted(CHANNELWISE | HEAD))}"
                )
        self.conv_positions = [i for i, layer in enumerate(self.layers) if type(layer).__name__ == "Conv2D"]
        if not self.conv_positions:
            raise ModelError(f"model {model.name!r} has no Conv2D layer to lesion")
        self.net = ChannelNet(tuple(int(self.layers[i].filters) for i in self.conv_positions))
        self.y = np.asarray(y, np.int64)
        self.n_classes = int(n_classes or self.y.max() + 1)
        self.x = np.asarray(x, np.float32).reshape((len(self.y), *model.input_shape[1:]))
        self.max_batch = max_batch
        self._intact = self._predict([{}])

    # -- running the network -------------------------------------------------------------
    def _conv_pre(self, layer, h, kernel=None, bias: bool = True):
        """The conv's pre-activation (``kernel`` defaults to the layer's; no bias if not ``bias``)."""
        import keras

        z = keras.ops.conv(h, layer.kernel if kernel is None else kernel, strides=layer.strides,
                           padding=layer.padding, dilation_rate=layer.dilation_rate, data_format="channels_last")
        return z + layer.bias if bias and layer.use_bias else z

    def _zero(self, h, lesions: Sequence[Lesion], conv: int, batch: int):
        """Zero each lesion's channels of conv layer ``conv`` in the stacked activations ``h``."""
        import keras

        if not any(len(lesion.get(conv, ())) for lesion in lesions):
            return h
        mask = np.ones((len(lesions), h.shape[-1]), np.float32)
        for i, lesion in enumerate(lesions):
            mask[i, lesion.get(conv, [])] = 0
        mask = np.repeat(mask, batch, axis=0).reshape((len(lesions) * batch,) + (1,) * (len(h.shape) - 2) + (-1,))
        return h * keras.ops.convert_to_tensor(mask)

    def _run_batch(self, xb: np.ndarray, lesions: Sequence[Lesion], first: int) -> np.ndarray:
        """Predicted labels (m, batch) of ``lesions`` whose first lesioned conv layer is ``first``."""
        import keras

        m, b = len(lesions), len(xb)
        h = keras.ops.convert_to_tensor(xb)
        start = self.conv_positions[first] if first < len(self.conv_positions) else len(self.layers)
        for layer in self.layers[:start + 1]:  # intact prefix, up to and including conv `first`
            h = layer(h, training=False)
        if start >= len(self.layers):
            return np.repeat(keras.ops.convert_to_numpy(h).argmax(-1)[None], m, axis=0)
        position = start + 1
        while position < len(self.layers) and type(self.layers[position]).__name__ in CHANNELWISE:
            h = self.layers[position](h, training=False)  # channelwise: lesioned channels stay zero
            position += 1
        conv_index = first + 1
        nxt = self.layers[position] if position < len(self.layers) else None
        if nxt is not None and type(nxt).__name__ == "Conv2D":
            # delta trick: next pre-activation = intact one - the lesioned channels' contribution
            z = self._conv_pre(nxt, h)
            stacked = []
            for lesion in lesions:
                channels = np.asarray(lesion.get(first, []), np.int64)
                if channels.size:
                    kernel = keras.ops.take(nxt.kernel, channels, axis=2)
                    stacked.append(z - self._conv_pre(nxt, keras.ops.take(h, channels, axis=3), kernel, bias=False))
                else:
                    stacked.append(z)
            h = nxt.activation(keras.ops.concatenate(stacked, axis=0))
            h = self._zero(h, lesions, conv_index, b)
            conv_index, position = conv_index + 1, position + 1
        else:
            h = self._zero(keras.ops.concatenate([h] * m, axis=0), lesions, first, b)
        for layer in self.layers[position:]:
            h = layer(h, training=False)
            if type(layer).__name__ == "Conv2D":
                h = self._zero(h, lesions, conv_index, b)
                conv_index += 1
        return keras.ops.convert_to_numpy(h).argmax(-1).reshape(m, b)

    def _predict(self, lesions: Sequence[Lesion]) -> np.ndarray:
        """Predicted labels (m, n) of every lesion on the whole test set."""
        n_conv = len(self.conv_positions)
        for lesion in lesions:
            _check_conv_indices(lesion, n_conv)
        firsts = first_lesioned_layers(lesions, n_conv)
        out = np.empty((len(lesions), self.y.size), np.int64)
        for first in sorted(set(firsts)):
            members = [i for i, f in enumerate(firsts) if f == first]
            batch = max(16, self.max_batch // len(members))
            for s in range(0, self.y.size, batch):
                out[members, s:s + batch] = self._run_batch(self.x[s:s + batch], [lesions[i] for i in members], first)
        return out

    # -- the LesionEvaluator interface ---------------------------------------------------
    def intact(self) -> tuple[float, np.ndarray]:
        """Accuracy and per-class accuracy of the intact network."""
        acc, per_class = accuracy_scores(self._intact, self.y, self.n_classes)
        return float(acc[0]), per_class[0]

    def evaluate(self, lesions: Sequence[Lesion]) -> tuple[np.ndarray, np.ndarray]:
        """Accuracy (m,) and per-class accuracy (m, classes) of each lesion, in order."""
        return accuracy_scores(self._predict(lesions), self.y, self.n_classes)
