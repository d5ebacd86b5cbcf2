"""The build configuration: every option of ``featreport build`` as one frozen value."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_INPUT_SIZE = 224


@dataclass(frozen=True)
class BuildConfig:
    """Everything a build needs to know; the command line and the Python API both make one."""

    model: str | nn.Module
    images: Path
    out: Path = Path("featreport-site")
    weights: str = "DEFAULT"
    allow_pickle: bool = False
    output_key: str | None = None
    seed: int = 0
    classes_file: Path | None = None
    labels_file: Path | None = None
    input_size: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    batch_size: int = 16
    layers: tuple[str, ...] = field(default_factory=tuple)
    max_channels: int = 16
    examples: int = 12
    image_format: Literal["webp", "png"] = "webp"
    single_file: bool = False
    open_browser: bool = False
    quiet: bool = False
    profile: bool = False
