"""How an image becomes the model's input tensor: from the weights, or from the options."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
from PIL import Image
from torchvision.models import _api as tv_api
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as tvf

from ..config import ModelSpec
from ..data.device_decode import normalize_pixels
from ..errors import ModelError

__all__ = [
    "DEFAULT_INPUT_SIZE",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Preprocess",
    "preprocess_from_options",
    "preprocess_from_weights",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_INPUT_SIZE = 224


@dataclass(frozen=True)
class Preprocess:
    """Resize, centre crop and normalize: how an image becomes the model's input tensor."""

    resize: int
    crop: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str
    channels: int  # 3 for RGB, 1 for grayscale
    source: str  # where these settings came from
    bgr: bool = False  # feed the three channels in BGR order (Caffe-style models)

    @property
    def mode(self) -> str:
        """Return the Pillow mode images are decoded to: "RGB" or "L"."""
        return "L" if self.channels == 1 else "RGB"

    def describe(self) -> str:
        """Say in one line what happens to an image, for the report."""
        colour = "grayscale" if self.channels == 1 else ("BGR" if self.bgr else "RGB")
        mean = ", ".join(f"{m:g}" for m in self.mean)
        std = ", ".join(f"{s:g}" for s in self.std)
        return (
            f"{colour}; resize shorter side to {self.resize} px ({self.interpolation}), "
            f"centre crop {self.crop}×{self.crop}; normalize mean ({mean}), std ({std})"
        )

    def _place(self, image: Image.Image) -> Image.Image:
        """Resize and centre crop, as every input is."""
        mode = InterpolationMode(self.interpolation)
        image = tvf.resize(image, [self.resize], interpolation=mode, antialias=True)
        return cast("Image.Image", tvf.center_crop(image, [self.crop, self.crop]))

    def mask(self, mask: Image.Image) -> torch.Tensor:
        """Return an 8-bit object mask as ``[H, W]`` booleans where its image's input is."""
        placed = cast("torch.Tensor", tvf.pil_to_tensor(self._place(mask.convert("L"))))
        return placed[0] >= 128

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """Return the normalized ``[C, H, W]`` input tensor for ``image``."""
        return normalize_pixels(tvf.pil_to_tensor(self._place(image)), self)


def preprocess_from_options(spec: ModelSpec, channels: int) -> Preprocess:
    """Build the preprocessing from ``--input-size``, ``--mean`` and ``--std`` or their defaults."""
    size = spec.input_size or DEFAULT_INPUT_SIZE
    mean = tuple(spec.mean or IMAGENET_MEAN)
    std = tuple(spec.std or IMAGENET_STD)
    if channels == 1:
        mean = (sum(mean) / len(mean),) if len(mean) != 1 else mean
        std = (sum(std) / len(std),) if len(std) != 1 else std
    for label, values in (("--mean", mean), ("--std", std)):
        if len(values) != channels:
            raise ModelError(
                f"{label} has {len(values)} values but the model takes {channels} channels"
            )
    source = ", ".join(
        [
            "--input-size" if spec.input_size else f"the default size {DEFAULT_INPUT_SIZE}",
            "--mean" if spec.mean else "ImageNet's mean",
            "--std" if spec.std else "ImageNet's std",
            *(["--bgr"] if spec.bgr and channels == 3 else []),
        ]
    )
    return Preprocess(
        resize=round(size / 0.875),
        crop=size,
        mean=mean,
        std=std,
        interpolation=InterpolationMode.BILINEAR.value,
        channels=channels,
        source=source,
        bgr=spec.bgr and channels == 3,
    )


def preprocess_from_weights(weights: tv_api.WeightsEnum, channels: int) -> Preprocess:
    """Take the preprocessing that torchvision's weights were trained with."""
    transform = weights.transforms()
    return Preprocess(
        resize=int(transform.resize_size[0]),
        crop=int(transform.crop_size[0]),
        mean=tuple(float(m) for m in transform.mean),
        std=tuple(float(s) for s in transform.std),
        interpolation=transform.interpolation.value,
        channels=channels,
        source=f"the transforms() of torchvision's {weights}",
    )
