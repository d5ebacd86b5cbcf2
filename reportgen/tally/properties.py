"""Cheap properties of every image as the model saw it, for the shortcut detector.

Fed by the input tap: the normalized batch is turned back into 0..1 RGB with the
preprocessing's mean and std, and seven numbers are kept per image (``PROPERTY_NAMES``):
the mean luma (brightness) and its standard deviation (contrast); the hue (degrees) and
saturation of the image's mean colour; the luma and hue of the mean colour of the border,
a band an eighth of the side wide; and the mean luma of the centre (the middle half of
each side) minus the border's. Grayscale images have hue 0 and saturation 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from ..report.facts import PROPERTY_NAMES

__all__ = ["ImageProperties", "ImagePropertiesReducer", "PropertiesState", "properties"]

LUMA = (0.299, 0.587, 0.114)


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


def _regions(h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the border band and the centre as weight masks ``[H, W]`` that sum to 1."""
    band = max(1, math.ceil(min(h, w) / 8))
    border = torch.ones(h, w, device=device)
    border[band : h - band, band : w - band] = 0.0
    centre = torch.zeros(h, w, device=device)
    centre[h // 4 : h - h // 4, w // 4 : w - w // 4] = 1.0
    return border / border.sum(), centre / centre.sum()


@torch.no_grad()
def properties(
    x: torch.Tensor, mean: Sequence[float], std: Sequence[float], bgr: bool = False
) -> torch.Tensor:
    """Compute ``PROPERTY_NAMES`` for a normalized batch ``[N, C, H, W]``: ``[N, 7]``.

    Masks are applied as weights, not by boolean indexing, which would wait for the device.
    """
    shape = (1, -1, 1, 1)
    scale = torch.tensor(std, dtype=torch.float32).view(shape).to(x.device, non_blocking=True)
    shift = torch.tensor(mean, dtype=torch.float32).view(shape).to(x.device, non_blocking=True)
    pixels = (x.float() * scale + shift).clamp(0.0, 1.0)
    if pixels.shape[1] == 1:
        pixels = pixels.expand(-1, 3, -1, -1)
    elif bgr:
        pixels = pixels.flip(1)
    weights = torch.tensor(LUMA).to(x.device, non_blocking=True)
    luma = torch.einsum("nchw,c->nhw", pixels, weights)
    border, centre = _regions(int(pixels.shape[2]), int(pixels.shape[3]), x.device)
    hue, saturation = _hue_saturation(pixels.mean(dim=(2, 3)))
    border_rgb = torch.einsum("nchw,hw->nc", pixels, border)
    border_hue, _ = _hue_saturation(border_rgb)
    border_luma = border_rgb @ weights
    values = (
        luma.mean(dim=(1, 2)),
        luma.flatten(1).std(dim=1, correction=0),
        hue,
        saturation,
        border_luma,
        border_hue,
        torch.einsum("nhw,hw->n", luma, centre) - border_luma,
    )
    return torch.stack(values, dim=1)


class ImagePropertiesReducer:
    """Keep the properties of every image (fed by the input tap), in a table on the device."""

    def __init__(
        self, capacity: int, mean: Sequence[float], std: Sequence[float], bgr: bool = False
    ) -> None:
        self.capacity = capacity
        self.mean, self.std, self.bgr = tuple(mean), tuple(std), bgr
        self._state: PropertiesState | None = None

    def update(self, x: torch.Tensor, indices: torch.Tensor) -> None:
        """Compute one batch's properties and store them by image index."""
        if self._state is None:
            self._state = PropertiesState(
                torch.zeros(self.capacity, len(PROPERTY_NAMES), device=x.device),
                torch.zeros(self.capacity, dtype=torch.bool, device=x.device),
            )
        self._state.values[indices] = properties(x, self.mean, self.std, self.bgr)
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
