"""Pictures: pure functions from tensors to PIL images, and the encoder.

Grids are composed as arrays (normalize, colormap lookup, tile) in torch on the tensors'
own device, so only finished 8-bit pixels move to the host. matplotlib lends its
colormaps only; charts are SVG (``charts.py``).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from PIL import Image

__all__ = [
    "BACKGROUND",
    "CAM_ALPHA",
    "CAM_CMAP",
    "DEAD_COLOR",
    "DEAD_MARK",
    "DUPLICATE_COLOR",
    "DUPLICATE_MARK",
    "FEATURE_CMAP",
    "FILTER_TARGET",
    "STRONG_MARK",
    "TILE_TARGET",
    "Color",
    "cam_overlay",
    "colormap_lut",
    "encode",
    "feature_grid",
    "filter_grid_gray",
    "filter_grid_rgb",
    "fit_square",
    "grid_columns",
    "heatmap",
    "input_image",
    "legend_stops",
    "receptive_crop",
    "shrink",
    "strip_tiles",
    "tile",
    "to_image",
    "unit_example",
    "unit_per_map",
    "unnormalized",
    "upscale_factor",
]

Color = tuple[int, int, int]

BACKGROUND: Color = (255, 255, 255)
DEAD_COLOR: Color = (214, 39, 40)
DUPLICATE_COLOR: Color = (255, 127, 14)
FEATURE_CMAP = "viridis"
# Class activation maps use another sequential colormap, so that attribution is never
# mistaken for a feature map; it is laid over the image at this opacity.
CAM_CMAP = "inferno"
CAM_ALPHA = 0.55
# Tiles are stored small and enlarged by the browser (img.maps is pixelated): a quarter
# of the pixels to encode and to download, the same picture on screen.
TILE_TARGET = 32
FILTER_TARGET = 40
STRONG_MARK = "#2ca02c"


def _hex(color: Color) -> str:
    return "#" + "".join(f"{c:02x}" for c in color)


# Charts mark dead and duplicate filters in the same colours as the filter-grid frames.
DEAD_MARK = _hex(DEAD_COLOR)
DUPLICATE_MARK = _hex(DUPLICATE_COLOR)


@lru_cache(maxsize=8)
def _lut(name: str) -> npt.NDArray[np.uint8]:
    table: npt.NDArray[np.float64] = np.asarray(colormaps[name](np.linspace(0.0, 1.0, 256)))
    levels: npt.NDArray[np.float64] = np.rint(table[:, :3] * 255.0)
    return levels.astype(np.uint8)


def colormap_lut(name: str, device: torch.device) -> torch.Tensor:
    """Return the colormap as a ``[256, 3]`` uint8 lookup table on ``device``."""
    return torch.from_numpy(_lut(name)).to(device)


def unit_per_map(maps: torch.Tensor) -> torch.Tensor:
    """Scale each ``[H, W]`` map of ``[N, H, W]`` to [0, 1] by its own min and max."""
    flat = maps.float().flatten(1)
    low = flat.amin(dim=1, keepdim=True)
    span = flat.amax(dim=1, keepdim=True) - low
    unit = torch.where(span > 0, (flat - low) / span.clamp_min(1e-30), torch.zeros_like(flat))
    return unit.reshape(maps.shape)


def upscale_factor(height: int, width: int, target: int) -> int:
    """Return the whole factor that enlarges a map to at least ``target`` pixels."""
    return max(1, math.ceil(target / max(height, width)))


def _upscale(levels: torch.Tensor, factor: int) -> torch.Tensor:
    if factor == 1:
        return levels
    return levels.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)


def _colorize(unit: torch.Tensor, cmap: str, factor: int) -> torch.Tensor:
    """Map ``[N, H, W]`` values in [0, 1] to ``[N, H*f, W*f, 3]`` uint8 colours."""
    levels = (unit * 255.0).round().to(torch.long)
    return colormap_lut(cmap, unit.device)[_upscale(levels, factor)]


def tile(
    tiles: torch.Tensor,
    columns: int,
    frames: Sequence[Color | None] = (),
    border: int = 2,
) -> torch.Tensor:
    """Lay ``[N, h, w, 3]`` uint8 tiles on a grid, each in a frame (white unless given)."""
    count, height, width, _ = tiles.shape
    rows = math.ceil(count / columns)
    cells = torch.empty(
        (rows * columns, height + 2 * border, width + 2 * border, 3),
        dtype=torch.uint8,
        device=tiles.device,
    )
    cells[:] = torch.tensor(BACKGROUND, dtype=torch.uint8, device=tiles.device)
    for i, color in enumerate(frames):
        if color is not None and i < count:
            cells[i] = torch.tensor(color, dtype=torch.uint8, device=tiles.device)
    cells[:count, border : border + height, border : border + width] = tiles
    grid = cells.reshape(rows, columns, height + 2 * border, width + 2 * border, 3)
    return grid.permute(0, 2, 1, 3, 4).reshape(rows * (height + 2 * border), -1, 3)


def to_image(pixels: torch.Tensor) -> Image.Image:
    """Move finished ``[H, W, 3]`` or ``[H, W]`` uint8 pixels to the host as a PIL image."""
    array = np.ascontiguousarray(pixels.cpu().numpy())
    return Image.fromarray(array, mode="RGB" if array.ndim == 3 else "L")


def input_image(tensor: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> Image.Image:
    """Undo normalization: a ``[C, H, W]`` model input becomes the picture the model saw."""
    shift = torch.tensor(mean, device=tensor.device)[:, None, None]
    scale = torch.tensor(std, device=tensor.device)[:, None, None]
    pixels = (tensor * scale + shift).clamp(0, 1).mul(255).round().to(torch.uint8)
    return to_image(pixels.expand(3, -1, -1).permute(1, 2, 0))


def grid_columns(count: int) -> int:
    """Return the columns of a near-square grid of ``count`` tiles."""
    return max(1, math.ceil(math.sqrt(count)))


def feature_grid(maps: torch.Tensor, cmap: str = FEATURE_CMAP) -> Image.Image:
    """Draw ``[N, H, W]`` feature maps as a grid, each map scaled to its own min–max."""
    count, height, width = maps.shape
    factor = upscale_factor(height, width, TILE_TARGET)
    tiles = _colorize(unit_per_map(maps), cmap, factor)
    return to_image(tile(tiles, grid_columns(count), border=1))


def heatmap(
    values: torch.Tensor, cmap: str = FEATURE_CMAP, target: int = TILE_TARGET
) -> Image.Image:
    """Draw one ``[H, W]`` map scaled to its min–max, enlarged to about ``target`` pixels."""
    height, width = values.shape
    factor = upscale_factor(height, width, target)
    return to_image(_colorize(unit_per_map(values[None]), cmap, factor)[0])


def fit_square(values: torch.Tensor, size: int) -> torch.Tensor:
    """Resize an ``[H, W]`` map to ``size``×``size``: averaging down, nearest up."""
    x = values.float()[None, None]
    if max(values.shape) > size:
        x = F.adaptive_avg_pool2d(x, (size, size))
    else:
        x = F.interpolate(x, size=(size, size), mode="nearest")
    return x[0, 0]


def strip_tiles(
    squares: torch.Tensor, low: torch.Tensor, high: torch.Tensor, cmap: str = FEATURE_CMAP
) -> list[Image.Image]:
    """Draw ``[L, S, S]`` maps as ``L`` tiles, map ``l`` scaled from ``low[l]`` to ``high[l]``."""
    low, high = low[:, None, None], high[:, None, None]
    span = high - low
    unit = torch.where(
        span > 0, ((squares - low) / span.clamp_min(1e-30)).clamp(0, 1), torch.zeros_like(squares)
    )
    pixels = np.ascontiguousarray(_colorize(unit, cmap, 1).cpu().numpy())  # one transfer
    return [Image.fromarray(tile_pixels, mode="RGB") for tile_pixels in pixels]


def _frames(count: int, dead: Sequence[int], duplicate: Sequence[int]) -> list[Color | None]:
    frames: list[Color | None] = [None] * count
    for i in duplicate:
        if i < count:
            frames[i] = DUPLICATE_COLOR
    for i in dead:
        if i < count:
            frames[i] = DEAD_COLOR
    return frames


def filter_grid_rgb(
    weights: torch.Tensor, dead: Sequence[int] = (), duplicate: Sequence[int] = ()
) -> Image.Image:
    """Draw ``[N, 3, k, k]`` first-layer filters as colour tiles, each scaled to its min–max."""
    count, _, height, width = weights.shape
    flat = weights.float().flatten(1)
    low = flat.amin(dim=1, keepdim=True)
    span = (flat.amax(dim=1, keepdim=True) - low).clamp_min(1e-30)
    unit = ((flat - low) / span).reshape(weights.shape)
    levels = (unit * 255.0).round().to(torch.uint8)
    factor = upscale_factor(height, width, FILTER_TARGET)
    pixels = _upscale(levels, factor).permute(0, 2, 3, 1)
    return to_image(tile(pixels, grid_columns(count), _frames(count, dead, duplicate)))


def filter_grid_gray(
    weights: torch.Tensor, dead: Sequence[int] = (), duplicate: Sequence[int] = ()
) -> Image.Image:
    """Draw ``[N, C, k, k]`` filters as one gray tile each: the mean over input channels.

    Each tile is scaled symmetrically around zero, so mid-gray is a zero weight, white
    the filter's largest positive mean weight and black its most negative.
    """
    count, _, height, width = weights.shape
    kernels = weights.float().mean(dim=1)
    peak = kernels.flatten(1).abs().amax(dim=1).clamp_min(1e-30)[:, None, None]
    levels = ((kernels / peak) * 127.5 + 127.5).round().clamp(0, 255).to(torch.uint8)
    factor = upscale_factor(height, width, FILTER_TARGET)
    gray = _upscale(levels, factor)[..., None].expand(-1, -1, -1, 3)
    return to_image(tile(gray, grid_columns(count), _frames(count, dead, duplicate)))


def encode(image: Image.Image, image_format: str) -> bytes:
    """Encode with fixed settings so the same pixels always give the same bytes."""
    buffer = io.BytesIO()
    if image_format == "webp":
        image.save(buffer, format="WEBP", lossless=True, quality=0, method=0, exact=True)
    else:
        image.save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def legend_stops(cmap: str, count: int = 5) -> tuple[str, ...]:
    """Return ``count`` evenly spaced colours of a colormap as hex, low to high, for a legend."""
    table = _lut(cmap)
    return tuple(
        _hex(tuple(int(v) for v in table[round(i * 255 / (count - 1))]))  # type: ignore[arg-type]
        for i in range(count)
    )


def cam_overlay(
    tensor: torch.Tensor,
    cam: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    cmap: str = CAM_CMAP,
) -> Image.Image:
    """Lay a class activation map ``[h, w]``, upsampled and scaled to its own min–max, over its input.

    The map is enlarged to the input's size by bilinear interpolation (as Grad-CAM's
    authors display it), coloured, and blended over the un-normalized input ``[C, H, W]``.
    """
    height, width = int(tensor.shape[1]), int(tensor.shape[2])
    shift = torch.tensor(mean, device=tensor.device)[:, None, None]
    scale = torch.tensor(std, device=tensor.device)[:, None, None]
    picture = (tensor * scale + shift).clamp(0, 1).expand(3, -1, -1).permute(1, 2, 0)
    large = F.interpolate(
        cam.float()[None, None].to(tensor.device),
        size=(height, width),
        mode="bilinear",
        align_corners=False,
    )[0]
    heat = _colorize(unit_per_map(large), cmap, 1)[0].float() / 255.0
    blend = (1.0 - CAM_ALPHA) * picture + CAM_ALPHA * heat
    return to_image(blend.mul(255).round().to(torch.uint8))


def unnormalized(tensor: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Return a ``[C, H, W]`` model input as ``[H, W, 3]`` pixels in 0..1."""
    shift = torch.tensor(mean, device=tensor.device)[:, None, None]
    scale = torch.tensor(std, device=tensor.device)[:, None, None]
    return (tensor * scale + shift).clamp(0, 1).expand(3, -1, -1).permute(1, 2, 0)


def shrink(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """Shrink ``[H, W, 3]`` pixels so the longer side is at most ``size``, by area averaging."""
    height, width = int(pixels.shape[0]), int(pixels.shape[1])
    scale = size / max(height, width)
    if scale >= 1:
        return pixels
    target = (max(1, round(height * scale)), max(1, round(width * scale)))
    return F.interpolate(pixels.permute(2, 0, 1)[None], size=target, mode="area")[0].permute(
        1, 2, 0
    )


def _pixels_image(pixels: torch.Tensor) -> Image.Image:
    return to_image(pixels.mul(255).round().to(torch.uint8))


def unit_example(
    pixels: torch.Tensor, values: torch.Tensor, region: tuple[float, float, bool]
) -> Image.Image:
    """Draw ``[H, W, 3]`` pixels (a shrunk input) with everything outside a channel's region dimmed.

    ``region`` is (threshold, dim, lowest): the channel's map ``[h, w]``, enlarged to the
    pixels by bilinear interpolation, marks the region where it reaches ``threshold`` of its
    maximum on this image (of its minimum, with ``lowest``); outside it the brightness is
    multiplied by ``dim``. A map with no such extreme (a maximum at or below zero) dims
    nothing.
    """
    threshold, dim, lowest = region
    height, width = int(pixels.shape[0]), int(pixels.shape[1])
    large = F.interpolate(
        values.float()[None, None].to(pixels.device),
        size=(height, width),
        mode="bilinear",
        align_corners=False,
    )[0, 0]
    signed = -large if lowest else large
    peak = signed.max()
    inside = torch.where(
        peak > 0, signed >= threshold * peak, torch.ones_like(signed, dtype=torch.bool)
    )
    shade = torch.where(inside, 1.0, dim)[:, :, None]
    return _pixels_image(pixels * shade)


def receptive_crop(
    pixels: torch.Tensor, centre: tuple[float, float], field: tuple[int, int], size: int
) -> Image.Image:
    """Cut the ``field`` (height, width) around ``centre`` (row, column) from ``[H, W, 3]`` pixels."""
    height, width = int(pixels.shape[0]), int(pixels.shape[1])
    fh, fw = min(field[0], height), min(field[1], width)
    top = min(max(0, round(centre[0] - fh / 2)), height - fh)
    left = min(max(0, round(centre[1] - fw / 2)), width - fw)
    crop = pixels[top : top + fh, left : left + fw]
    if max(fh, fw) < size:  # enlarge a small field by whole pixels, as the maps are
        factor = max(1, size // max(fh, fw))
        crop = crop.repeat_interleave(factor, dim=0).repeat_interleave(factor, dim=1)
    return _pixels_image(shrink(crop, size))
