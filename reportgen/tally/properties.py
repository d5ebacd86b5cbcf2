"""Cheap properties of every image as the model saw it, for the shortcut detector.

Fed by the input tap: the normalized batch is turned back into 0..1 RGB with the
preprocessing's mean and std, and seven numbers are kept per image (``PROPERTY_NAMES``):
the mean luma (brightness) and its standard deviation (contrast); the hue (degrees) and
saturation of the image's mean colour; the luma and hue of the mean colour of the border,
a band an eighth of the side wide; and the mean luma of the centre (the middle half of
each side) minus the border's. Grayscale images have hue 0 and saturation 0. Images larger
than ``SIDE`` pixels are first average-pooled to at most that side, which keeps every mean
and measures the contrast at that scale, at a tenth of the cost for 224 px inputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from ..report.facts import PROPERTY_NAMES

__all__ = ["SIDE", "ImageProperties", "ImagePropertiesReducer", "PropertiesState", "properties"]

LUMA = (0.299, 0.587, 0.114)
SIDE = 64


@dataclass(frozen=True)
class PropertiesState:
    """Per image: its properties, and whether it was seen."""

    values: torch.Tensor  # [images, len(PROPERTY_NAMES)] float32
    seen: torch.Tensor  # [images] bool


@dataclass(frozen=True)
class ImageProperties:
    """Each seen image's properties, in ``PROPERTY_NAMES`` order."""

    by_image: Mapping[int, tuple[float, ...]]


def _hue_saturation(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the HSV hue (degrees) and saturation of colours ``[N, 3]``."""
    high, low = rgb.amax(dim=1), rgb.amin(dim=1)
    chroma = high - low
    r, g, b = rgb.unbind(dim=1)
    safe = chroma.clamp(min=1e-6)
    hue = torch.where(
        high == r,
        ((g - b) / safe) % 6,
        torch.where(high == g, (b - r) / safe + 2, (r - g) / safe + 4),
    )
    hue = torch.where(chroma > 1e-6, hue * 60.0, torch.zeros_like(hue))
    saturation = torch.where(high > 1e-6, chroma / high.clamp(min=1e-6), torch.zeros_like(high))
    return hue, saturation


@dataclass(frozen=True)
class _Constants:
    """What turns a batch back into pixels and weighs its regions, made once per device and size."""

    scale: torch.Tensor  # [1, C, 1, 1]: the normalization std
    shift: torch.Tensor  # [1, C, 1, 1]: the normalization mean
    luma: torch.Tensor  # [3]
    border: torch.Tensor  # [H, W], summing to 1
    centre: torch.Tensor  # [H, W], summing to 1
    bgr: bool


def _pooled(x: torch.Tensor) -> torch.Tensor:
    """Average-pool a batch by a whole factor so that neither side exceeds ``SIDE``."""
    factor = math.ceil(max(int(x.shape[2]), int(x.shape[3])) / SIDE)
    return x if factor <= 1 else torch.nn.functional.avg_pool2d(x, factor, ceil_mode=True)


def _constants(
    x: torch.Tensor, mean: Sequence[float], std: Sequence[float], bgr: bool
) -> _Constants:
    x = _pooled(x)
    h, w = int(x.shape[2]), int(x.shape[3])
    band = max(1, math.ceil(min(h, w) / 8))
    border = torch.ones(h, w)
    border[band : h - band, band : w - band] = 0.0
    centre = torch.zeros(h, w)
    centre[h // 4 : h - h // 4, w // 4 : w - w // 4] = 1.0
    shape = (1, -1, 1, 1)
    return _Constants(
        scale=torch.tensor(std, dtype=torch.float32).view(shape).to(x.device),
        shift=torch.tensor(mean, dtype=torch.float32).view(shape).to(x.device),
        luma=torch.tensor(LUMA).to(x.device),
        border=(border / border.sum()).to(x.device),
        centre=(centre / centre.sum()).to(x.device),
        bgr=bgr,
    )


def _measure(x: torch.Tensor, k: _Constants) -> torch.Tensor:
    """Compute ``PROPERTY_NAMES`` for a normalized batch, without waiting for the device.

    Regions are weights, not boolean indices, which would wait for the device.
    """
    pixels = (_pooled(x).float() * k.scale + k.shift).clamp(0.0, 1.0)
    if pixels.shape[1] == 1:
        pixels = pixels.expand(-1, 3, -1, -1)
    elif k.bgr:
        pixels = pixels.flip(1)
    luma = torch.einsum("nchw,c->nhw", pixels, k.luma)
    hue, saturation = _hue_saturation(pixels.mean(dim=(2, 3)))
    border_rgb = torch.einsum("nchw,hw->nc", pixels, k.border)
    border_hue, _ = _hue_saturation(border_rgb)
    border_luma = border_rgb @ k.luma
    values = (
        luma.mean(dim=(1, 2)),
        luma.flatten(1).std(dim=1, correction=0),
        hue,
        saturation,
        border_luma,
        border_hue,
        torch.einsum("nhw,hw->n", luma, k.centre) - border_luma,
    )
    return torch.stack(values, dim=1)


@torch.no_grad()
def properties(
    x: torch.Tensor, mean: Sequence[float], std: Sequence[float], bgr: bool = False
) -> torch.Tensor:
    """Compute ``PROPERTY_NAMES`` for a normalized batch ``[N, C, H, W]``: ``[N, 7]``."""
    return _measure(x, _constants(x, mean, std, bgr))


class ImagePropertiesReducer:
    """Keep the properties of every image (fed by the input tap), in a table on the device."""

    def __init__(
        self, capacity: int, mean: Sequence[float], std: Sequence[float], bgr: bool = False
    ) -> None:
        self.capacity = capacity
        self.mean, self.std, self.bgr = tuple(mean), tuple(std), bgr
        self._state: PropertiesState | None = None
        self._constants: _Constants | None = None

    @torch.no_grad()
    def update(self, x: torch.Tensor, indices: torch.Tensor) -> None:
        """Compute one batch's properties and store them by image index."""
        if self._state is None:
            self._state = PropertiesState(
                torch.zeros(self.capacity, len(PROPERTY_NAMES), device=x.device),
                torch.zeros(self.capacity, dtype=torch.bool, device=x.device),
            )
        k = self._constants
        size = _pooled(x[:1, :1]).shape[2:]
        if k is None or k.border.shape != size or k.border.device != x.device:
            k = self._constants = _constants(x, self.mean, self.std, self.bgr)
        self._state.values[indices] = _measure(x, k)
        self._state.seen[indices] = True

    def state(self) -> PropertiesState:
        """Return the table on the host (empty when no batch was seen)."""
        if self._state is None:
            return PropertiesState(
                torch.zeros(self.capacity, len(PROPERTY_NAMES)),
                torch.zeros(self.capacity, dtype=torch.bool),
            )
        return PropertiesState(self._state.values.cpu(), self._state.seen.cpu())

    def merge(self, a: PropertiesState, b: PropertiesState) -> PropertiesState:
        """Combine the tables of two disjoint sets of images."""
        return PropertiesState(torch.where(b.seen[:, None], b.values, a.values), a.seen | b.seen)

    def finish(self, state: PropertiesState) -> ImageProperties:
        """List each seen image's properties."""
        values = state.values.tolist()
        return ImageProperties(
            {
                i: tuple(round(float(v), 6) for v in values[i])
                for i in torch.nonzero(state.seen).flatten().tolist()
            }
        )
