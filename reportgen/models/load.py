"""Resolve ``--model`` and ``--weights`` into a model adapter, its facts and its preprocessing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..config import WEIGHT_SUFFIXES, ModelSpec, RunConfig
from ..errors import ModelError
from .adapter import ModelAdapter
from .checkpoint import load_weights_file
from .code_source import code_model, given_model
from .keras_source import SUFFIXES as KERAS_SUFFIXES
from .keras_source import keras_model
from .onnx_source import SUFFIX as ONNX_SUFFIX
from .onnx_source import onnx_model
from .preprocess import Preprocess, preprocess_from_options, preprocess_from_weights
from .source import Built, seeded
from .timm_source import PREFIX, timm_model
from .torch_adapter import TorchAdapter, conv_modules, input_channels, output_filters
from .torchvision_source import imagenet_categories, torchvision_model

__all__ = ["LoadedModel", "fresh_norm_medians", "load_model", "resolve_device"]


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to run behind its adapter, and the facts the report states about it."""

    adapter: ModelAdapter
    name: str
    weights: str
    untrained: bool
    categories: tuple[str, ...] | None
    imagenet_classes: bool
    preprocess: Preprocess
    parameters: int
    fresh_norm_medians: dict[str, float]  # per conv layer, of an untrained instance; may be empty
    precision: str = "float32"  # how forward passes compute, as the report states it


def autocast_dtype(device: torch.device) -> torch.dtype:
    """Return the reduced precision ``--amp`` runs forward passes in on ``device``.

    bfloat16 where the device has it (CPUs, recent CUDA GPUs): its range is float32's, so
    activations do not overflow; float16 on older CUDA GPUs and on MPS.
    """
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float16 if device.type == "mps" else torch.bfloat16


def resolve_device(name: str) -> torch.device:
    """Turn ``auto|cpu|cuda|mps`` into a device that exists here."""
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if mps else torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ModelError("--device cuda was asked for but CUDA is not available; use --device cpu")
    if name == "mps" and not mps:
        raise ModelError("--device mps was asked for but MPS is not available; use --device cpu")
    return torch.device(name)


def _is_weights_file(weights: str) -> bool:
    return weights.lower() not in ("default", "none") and (
        weights.endswith(WEIGHT_SUFFIXES) or Path(weights).exists()
    )


def _build(spec: ModelSpec, weights_file: bool) -> Built:
    """Build the module from its source: a module given, code, or a torchvision name."""
    if isinstance(spec.model, nn.Module):
        return given_model(spec.model, spec)
    if not isinstance(spec.model, str):
        raise ModelError(
            f"--model must be a model spec or an nn.Module, not {type(spec.model).__name__}"
        )
    if spec.model.startswith(PREFIX):
        return timm_model(spec, weights_file)
    if spec.model.lower().endswith(ONNX_SUFFIX):
        return onnx_model(spec, weights_file)
    if spec.model.lower().endswith(KERAS_SUFFIXES):
        return keras_model(spec, weights_file)
    if ":" in spec.model:
        return code_model(spec, spec.model, weights_file)
    return torchvision_model(spec, spec.model, weights_file)


def load_model(spec: ModelSpec, run: RunConfig) -> LoadedModel:
    """Build the model the spec names, load its weights, and pick its preprocessing."""
    weights_file = _is_weights_file(spec.weights)
    built = _build(spec, weights_file)
    module, weights = built.module, built.weights
    if weights_file:
        how = load_weights_file(module, Path(spec.weights), spec.allow_pickle)
        weights = f"state dict from {spec.weights}" + (f" ({how})" if how else "")
    if built.finish is not None:
        module, note = built.finish(module)
        weights = f"{weights}; {note}" if note else weights

    channels = input_channels(module)
    user_preprocess = spec.input_size or spec.mean or spec.std or spec.bgr
    known = None if built.preprocess is None else built.preprocess(module, channels)
    if built.torchvision_weights is not None and not user_preprocess:
        preprocess = preprocess_from_weights(built.torchvision_weights, channels)
    elif known is not None:
        preprocess = known
    else:
        preprocess = preprocess_from_options(spec, channels)

    if isinstance(spec.model, nn.Module) and run.device == "auto":
        # A module the caller built stays where it is: the build must not move it.
        device = next((p.device for p in module.parameters()), torch.device("cpu"))
    else:
        device = resolve_device(run.device)
    module.to(device)
    categories = built.categories
    amp = autocast_dtype(device) if run.amp else None
    adapter = TorchAdapter(
        module,
        device,
        run.layers,
        spec.output_key,
        input_shape=(preprocess.channels, preprocess.crop, preprocess.crop),
        precision=amp,
    )
    fresh = {} if built.untrained else fresh_norm_medians(built, spec.seed, adapter)
    return LoadedModel(
        adapter=adapter,
        name=built.name,
        weights=weights,
        untrained=built.untrained,
        categories=categories,
        imagenet_classes=built.imagenet
        if built.imagenet is not None
        else (categories == imagenet_categories() if categories else False),
        preprocess=preprocess,
        parameters=built.parameters
        if built.parameters is not None
        else sum(p.numel() for p in module.parameters()),
        fresh_norm_medians=fresh,
        precision="float32"
        if amp is None
        else f"{str(amp).removeprefix('torch.')} autocast (--amp) in the forward passes; the "
        "gradient pass in float32; statistics summed in float32 and float64",
    )


@torch.no_grad()
def fresh_norm_medians(built: Built, seed: int, adapter: TorchAdapter) -> dict[str, float]:
    """Measure the median filter norm of each conv layer in an untrained instance.

    The untrained-weights detector compares the loaded filters with these. Models whose
    source cannot build a second instance, or whose layers differ, get none.
    """
    if built.fresh is None:
        return {}
    try:
        fresh = seeded(seed, built.fresh)
    except Exception:  # the comparison is a bonus; a source that fails now gets none
        return {}
    convs = dict(conv_modules(fresh))
    medians: dict[str, float] = {}
    for conv in adapter.conv_layers():
        module = convs.get(conv.name)
        if module is None:
            return {}
        weights = output_filters(module).float().flatten(1)
        if weights.shape[0] != conv.out_channels:
            return {}
        medians[conv.name] = float(torch.linalg.vector_norm(weights, dim=1).median())
    return medians
