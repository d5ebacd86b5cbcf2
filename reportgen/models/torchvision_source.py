"""Models by torchvision name: the architecture, its weight sets, and fetching them."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import cast
from urllib.error import URLError

import torch
import torchvision
from torch import nn
from torchvision.models import _api as tv_api

from ..config import ModelSpec
from ..errors import ModelError, WeightsError, short_error
from .source import Built, seeded

__all__ = ["classification_models", "imagenet_categories", "torchvision_model"]


def classification_models() -> list[str]:
    """List the names of torchvision's classification models."""
    return sorted(torchvision.models.list_models(module=torchvision.models))


def imagenet_categories() -> tuple[str, ...]:
    """Return ImageNet's class names as torchvision's weights carry them."""
    return tuple(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def _torchvision_weights(name: str, weights: str) -> tv_api.WeightsEnum:
    try:
        enum = torchvision.models.get_model_weights(name)
    except (ValueError, KeyError):
        raise WeightsError(
            f"{name} has no pretrained weights in torchvision; use --weights none or a file"
        ) from None
    if weights.upper() == "DEFAULT":
        return enum.DEFAULT
    members = [m for m in enum.__members__ if m != "DEFAULT"]
    key = weights.split(".")[-1]
    if key in enum.__members__:
        return enum[key]
    raise WeightsError(
        f"--weights {weights!r} is not a weight set of {name}; choose one of "
        f"{', '.join(['DEFAULT', *members])}, none, or a path to a .pth file"
    )


def _fetch_torchvision(name: str, weights: tv_api.WeightsEnum) -> nn.Module:
    try:
        return cast("nn.Module", torchvision.models.get_model(name, weights=weights))
    except (URLError, OSError, RuntimeError) as exc:
        filename = weights.url.rsplit("/", 1)[-1]
        cache = Path(torch.hub.get_dir()) / "checkpoints" / filename
        raise WeightsError(
            f"could not fetch the {weights} weights for {name} ({short_error(exc)}). "
            f"Without network access, place the file at {cache} (from {weights.url}), "
            "pass a local state dict with --weights PATH, or use --weights none for untrained weights"
        ) from None


def _default_categories(name: str) -> tuple[str, ...] | None:
    """Return the class names of the architecture's default weights, if it has any."""
    try:
        meta = torchvision.models.get_model_weights(name).DEFAULT.meta
    except (ValueError, KeyError, AttributeError):
        return None
    return tuple(meta.get("categories") or ()) or None


def torchvision_model(spec: ModelSpec, name: str, weights_file: bool) -> Built:
    """Build torchvision's ``name``: untrained (for ``none`` or a weights file), or pretrained."""
    known = classification_models()
    if name not in known:
        close = difflib.get_close_matches(name.lower(), known, n=4, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ModelError(
            f"unknown model {name!r}{hint} Pass a torchvision classification model name, "
            "path/to/file.py:Name or package.module:Name"
        )
    if spec.weights.lower() == "none" or weights_file:
        module = seeded(spec.seed, lambda: torchvision.models.get_model(name, weights=None))
        return Built(
            module=module,
            name=name,
            weights=f"none: untrained, initialized with seed {spec.seed}",
            untrained=spec.weights.lower() == "none",
            categories=_default_categories(name),
            fresh=lambda: cast("nn.Module", torchvision.models.get_model(name, weights=None)),
        )
    weights = _torchvision_weights(name, spec.weights)
    categories = tuple(weights.meta.get("categories") or ()) or None
    return Built(
        module=_fetch_torchvision(name, weights),
        name=name,
        weights=f"torchvision {weights}",
        untrained=False,
        categories=categories or _default_categories(name),
        torchvision_weights=weights,
        fresh=lambda: cast("nn.Module", torchvision.models.get_model(name, weights=None)),
    )
