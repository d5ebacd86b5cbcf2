"""What every model source hands over: a built module and the facts of how it was built."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torchvision.models import _api as tv_api

from .preprocess import Preprocess

__all__ = ["Built", "seeded"]


@dataclass(frozen=True)
class Built:
    """A module as its source built it, before any weights file is loaded into it."""

    module: nn.Module
    name: str
    weights: str  # how the weights came to be, for the report
    untrained: bool
    categories: tuple[str, ...] | None  # class names the source knows of
    torchvision_weights: tv_api.WeightsEnum | None = None  # their transforms() preprocess
    fresh: Callable[[], nn.Module] | None = None  # builds an untrained instance, to compare
    imagenet: bool | None = None  # the classes are ImageNet-1k's in order; None: compare names
    # After the weights are loaded: the module to run, and what the report says changed.
    finish: Callable[[nn.Module], tuple[nn.Module, str | None]] | None = None
    # The preprocessing the source knows for the module and channels (timm's data config,
    # an ONNX input's size), given the options; None leaves it to the options.
    preprocess: Callable[[nn.Module, int], Preprocess | None] | None = None
    parameters: int | None = None  # as the source counts them, where torch's count differs


def seeded(seed: int, build: Callable[[], nn.Module]) -> nn.Module:
    """Build a module with torch's generator seeded, leaving the global generator as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()
