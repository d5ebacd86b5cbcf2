"""Keras models: ``--model model.keras`` or ``model.h5`` (the optional extra ``featreport[keras]``).

Keras 3 runs on the PyTorch backend (``KERAS_BACKEND=torch``, set here before keras is
first imported): a Keras model is then an ``nn.Module``, its layers are modules whose
forward hooks fire, but they are not the model's torch children and its convs are
functional calls, not ``nn.Conv2d``. :class:`KerasModel` lists every layer (nested models
flattened) under its Keras name, feeds NCHW batches as NHWC, and each conv layer gets a
:class:`reportgen.models.conv_kinds.ConvView`: its settings, its kernel in torch's layout
(``(kh, kw, in, out)`` → ``[out, in, kh, kw]``; depthwise ``(kh, kw, in, mult)``; a
transposed conv's ``(kh, kw, out, in)``; a separable conv's depthwise and pointwise
kernels composed into the one kernel they apply), and an NCHW view of its output for taps.
Batch norm and activation layers get a ``NormView`` or ``ActivationView``, so that a
conv's block is matched as a torch model's is.

Loaded with ``compile=False`` (Keras 2 ``.h5`` files carry optimizer settings Keras 3
rejects) and ``safe_mode`` on unless ``--allow-pickle`` (Lambda layers run pickled code).
Preprocessing is not stored in the file: a model that starts with ``Rescaling`` or
``Normalization`` takes 0..255 pixels; a ``keras.applications`` model is recognised by
its name (tf: ±1, caffe: BGR minus the ImageNet mean, torch: ImageNet mean and std);
otherwise ``--mean`` and ``--std`` are required.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import ModelSpec
from ..errors import ModelError, WeightsError, short_error
from .conv_kinds import ActivationView, ConvView, NormView, register_role, register_view
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from .source import Built

__all__ = ["SUFFIXES", "KerasModel", "keras_model"]

SUFFIXES = (".keras", ".h5")
CAFFE_MEAN = (103.939 / 255, 116.779 / 255, 123.68 / 255)  # BGR, subtracted from 0..255 pixels
# keras.applications families by the start of the model's name, and their preprocess_input mode.
FAMILIES = (
    ("vgg", "caffe"),
    ("resnet50v2", "tf"),
    ("resnet101v2", "tf"),
    ("resnet152v2", "tf"),
    ("resnet", "caffe"),
    ("mobilenet", "tf"),
    ("inception", "tf"),
    ("xception", "tf"),
    ("nasnet", "tf"),
    ("densenet", "torch"),
)


def _keras() -> Any:
    """Import keras on the PyTorch backend, or say why it cannot be."""
    loaded = sys.modules.get("keras")
    if loaded is None:
        os.environ["KERAS_BACKEND"] = "torch"
    try:
        import keras
    except ImportError:
        raise ModelError("--model *.keras needs keras: pip install 'featreport[keras]'") from None
    backend = keras.backend.backend()
    if backend != "torch":
        raise ModelError(
            f"keras was already imported with the {backend} backend; featreport runs Keras "
            "models on PyTorch: set KERAS_BACKEND=torch before keras is first imported"
        )
    return keras


def _flatten(keras: Any, model: Any) -> list[Any]:
    """Return every layer of a model, nested models' layers in their place, in order."""
    found: list[Any] = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found.extend(_flatten(keras, layer))
        else:
            found.append(layer)
    return found


# Keras activation names, as torch names the same function (so the analysis knows gating ones).
TORCH_NAMES = {
    "relu": "ReLU",
    "relu6": "ReLU6",
    "leaky_relu": "LeakyReLU",
    "elu": "ELU",
    "selu": "SELU",
    "gelu": "GELU",
    "silu": "SiLU",
    "swish": "SiLU",
    "mish": "Mish",
    "hard_swish": "Hardswish",
    "hard_silu": "Hardswish",
    "hard_sigmoid": "Hardsigmoid",
    "sigmoid": "Sigmoid",
    "tanh": "Tanh",
    "softplus": "Softplus",
}


def _role(keras: Any, layer: Any) -> NormView | ActivationView | None:
    """Describe a Keras batch norm or activation layer, for matching conv blocks."""
    kinds = keras.layers
    if isinstance(layer, kinds.BatchNormalization):
        axis = layer.axis if isinstance(layer.axis, int) else layer.axis[0]

        def stats() -> tuple[torch.Tensor | None, ...]:
            found = (layer.moving_mean, layer.moving_variance, layer.gamma, layer.beta)
            return tuple(None if v is None else _tensor(v) for v in found)

        return NormView("BatchNormalization", float(layer.epsilon), stats, axis in (-1, 3))
    name: str | None = None
    if isinstance(layer, kinds.ReLU):
        slope = float(getattr(layer, "negative_slope", 0.0) or 0.0)
        top = getattr(layer, "max_value", None)
        name = (
            "LeakyReLU" if slope else ("ReLU6" if top is not None and float(top) == 6 else "ReLU")
        )
    elif isinstance(layer, kinds.Activation):
        name = TORCH_NAMES.get(getattr(layer.activation, "__name__", ""))
    elif isinstance(layer, (kinds.LeakyReLU, kinds.ELU, kinds.PReLU)):
        name = {"LeakyReLU": "LeakyReLU", "ELU": "ELU", "PReLU": "PReLU"}[type(layer).__name__]
    return None if name is None else ActivationView(name, True)


def _pair(value: Any) -> tuple[int, int]:
    items = tuple(int(v) for v in (value if isinstance(value, (tuple, list)) else (value, value)))
    return items[0], items[1]


def _tensor(variable: Any) -> torch.Tensor:
    value = getattr(variable, "value", variable)
    return torch.as_tensor(value).detach()


def _view(keras: Any, layer: Any) -> ConvView | None:
    """Describe a Keras conv layer in torch's terms, or None for any other layer."""
    kinds = keras.layers
    convs = (kinds.Conv2D, kinds.DepthwiseConv2D, kinds.SeparableConv2D, kinds.Conv2DTranspose)
    if not isinstance(layer, convs):
        return None
    channels_last = getattr(layer, "data_format", "channels_last") == "channels_last"
    activation = getattr(getattr(layer, "activation", None), "__name__", "linear")
    note = (
        f"applies its built-in {activation} activation: its output is after it"
        if activation != "linear"
        else None
    )
    common: dict[str, Any] = {
        "kernel_size": _pair(layer.kernel_size),
        "stride": _pair(layer.strides),
        "padding": str(layer.padding),
        "dilation": _pair(layer.dilation_rate),
        "channels_last": channels_last,
    }
    if isinstance(layer, kinds.SeparableConv2D):
        depth, point = layer.depthwise_kernel, layer.pointwise_kernel
        kh, kw, cin, mult = tuple(depth.shape)

        def separable() -> torch.Tensor:
            d = _tensor(depth).permute(2, 3, 0, 1)  # [in, mult, kh, kw]
            p = _tensor(point)[0, 0].reshape(cin, mult, -1)  # [in, mult, out]
            return torch.einsum("imhw,imo->oihw", d, p)

        joined = "depthwise then pointwise; its filters are shown as their composition"
        return ConvView(
            type="SeparableConv2D",
            in_channels=int(cin),
            out_channels=int(layer.filters),
            groups=1,
            transposed=False,
            filters=separable,
            note=f"{joined}; {note}" if note else joined,
            **common,
        )
    if isinstance(layer, kinds.DepthwiseConv2D):
        kernel = layer.kernel
        kh, kw, cin, mult = tuple(kernel.shape)
        return ConvView(
            type="DepthwiseConv2D",
            in_channels=int(cin),
            out_channels=int(cin * mult),
            groups=int(cin),
            transposed=False,
            filters=lambda: _tensor(kernel).permute(2, 3, 0, 1).reshape(cin * mult, 1, kh, kw),
            note=note,
            **common,
        )
    if isinstance(layer, kinds.Conv2DTranspose):
        kernel = layer.kernel
        kh, kw, cout, cin = tuple(kernel.shape)
        return ConvView(
            type="Conv2DTranspose",
            in_channels=int(cin),
            out_channels=int(cout),
            groups=1,
            transposed=True,
            filters=lambda: _tensor(kernel).permute(2, 3, 0, 1),
            note=note,
            **common,
        )
    if isinstance(layer, kinds.Conv2D):
        kernel = layer.kernel
        kh, kw, cin_g, cout = tuple(kernel.shape)
        groups = int(getattr(layer, "groups", 1) or 1)
        return ConvView(
            type="Conv2D",
            in_channels=int(cin_g * groups),
            out_channels=int(cout),
            groups=groups,
            transposed=False,
            filters=lambda: _tensor(kernel).permute(3, 2, 0, 1),
            note=note,
            **common,
        )
    return None  # a conv kind this module does not know: left out of the report


class KerasModel(nn.Module):
    """A Keras model on the torch backend, with its layers listed under their Keras names.

    ``forward`` takes an NCHW batch and feeds it as NHWC. A model whose last layer applies
    softmax returns the log of its probabilities, so that the softmax featreport applies
    gives them back unchanged.
    """

    def __init__(self, model: Any, layers: list[tuple[str, nn.Module]], softmax: bool) -> None:
        super().__init__()
        for name, layer in layers:
            self.add_module(name, layer)
        self.keras_model = [model]  # not a child: its parameters are the layers' own
        self.softmax = softmax

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the model on an NCHW batch and return its logits."""
        out = self.keras_model[0](x.permute(0, 2, 3, 1), training=False)
        out = out[0] if isinstance(out, (list, tuple)) else out
        logits: torch.Tensor = out.clamp_min(1e-30).log() if self.softmax else out
        return logits


def _load(keras: Any, path: Path, allow_pickle: bool) -> Any:
    try:
        return keras.saving.load_model(str(path), compile=False, safe_mode=not allow_pickle)
    except Exception as exc:
        text = str(exc)
        if "Lambda" in text or "safe_mode" in text:
            raise ModelError(
                f"--model {path}: the model has a Lambda layer, whose code is stored pickled; "
                "give --allow-pickle to load it, only for a file you trust"
            ) from None
        if "Could not locate" in text or "Unknown layer" in text or "custom" in text.lower():
            raise ModelError(
                f"--model {path}: the model uses a custom class whose code featreport does not "
                f"have ({short_error(exc)}); its code is needed: register it with "
                "keras.saving.register_keras_serializable in a module you import, and pass "
                "--model that_module.py:a_function_that_loads_the_model"
            ) from None
        raise ModelError(f"--model {path}: Keras could not load it ({short_error(exc)})") from None


def _preprocess(keras: Any, model: Any, layers: list[Any], spec: ModelSpec) -> Preprocess:
    """Choose the preprocessing: the model's own rescaling, its family's, or the options'."""
    size = spec.input_size
    shape = getattr(model, "input_shape", None)
    if size is None and isinstance(shape, tuple) and len(shape) == 4 and shape[1]:
        size = int(shape[1])
    crop = size or 224
    first = next((x for x in layers if not isinstance(x, keras.layers.InputLayer)), None)
    given = spec.mean is not None or spec.std is not None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    bgr = spec.bgr
    if given:
        mean, std = tuple(spec.mean or IMAGENET_MEAN), tuple(spec.std or IMAGENET_STD)
        source = "--mean and --std"
    elif isinstance(first, (keras.layers.Rescaling, keras.layers.Normalization)):
        mean, std = (0.0, 0.0, 0.0), (1 / 255,) * 3
        source = f"the model's own {type(first).__name__} layer: fed 0..255 pixels"
    else:
        name = str(model.name).lower()
        mode = next((m for prefix, m in FAMILIES if name.startswith(prefix)), None)
        if mode == "tf":
            mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
        elif mode == "caffe":
            mean, std, bgr = CAFFE_MEAN, (1 / 255,) * 3, True
        elif mode == "torch":
            mean, std = IMAGENET_MEAN, IMAGENET_STD
        else:
            raise ModelError(
                f"the Keras model {model.name!r} stores no preprocessing and starts with no "
                "Rescaling layer; give --mean and --std (0..1 pixel units), and --bgr for "
                "Caffe-style models"
            )
        source = f"keras.applications' preprocess_input mode {mode!r}, from the model's name {model.name!r}"
    channels = 3
    return Preprocess(
        resize=round(crop / 0.875),
        crop=crop,
        mean=mean[:channels],
        std=std[:channels],
        interpolation="bilinear",
        channels=channels,
        source=source,
        bgr=bgr,
    )


def keras_model(spec: ModelSpec, weights_file: bool) -> Built:
    """Load ``--model model.keras`` (or ``.h5``) on the torch backend."""
    path = Path(str(spec.model))
    if not path.is_file():
        raise ModelError(f"--model {path}: no such file")
    if weights_file or spec.weights.upper() != "DEFAULT":
        raise WeightsError(
            f"--weights {spec.weights}: a Keras file carries its own weights; leave --weights out"
        )
    keras = _keras()
    model = _load(keras, path, spec.allow_pickle)
    layers = _flatten(keras, model)
    named: list[tuple[str, nn.Module]] = []
    for layer in layers:
        if not isinstance(layer, nn.Module):
            continue
        view = _view(keras, layer)
        if view is not None:
            register_view(layer, view)
        role = _role(keras, layer)
        if role is not None:
            register_role(layer, role)
        named.append((str(layer.name).replace(".", "_").replace("/", "_"), layer))
    last = layers[-1] if layers else None
    softmax = getattr(getattr(last, "activation", None), "__name__", "") == "softmax" or (
        isinstance(last, keras.layers.Softmax)
    )
    wrapper = KerasModel(model, named, softmax)
    preprocess = _preprocess(keras, model, layers, spec)
    return Built(
        module=wrapper,
        name=f"{path.name} ({model.name})",
        weights="from the Keras file, run by Keras 3 on the PyTorch backend"
        + ("; its softmax output is taken as probabilities" if softmax else ""),
        untrained=False,
        categories=None,
        preprocess=lambda module, channels: preprocess,
        parameters=int(model.count_params()),
    )
