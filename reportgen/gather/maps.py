"""Pass 2: the images the site shows, run again to gather their maps, one batch at a time.

Nothing is kept between batches: each image's maps are yielded as soon as its batch has
run, drawn by the caller and dropped, so memory is bounded by the batch, not by the
number of images shown.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass

import torch

from ..analysis.ranking import Ranking
from ..data.batches import Loading, Prepare, batches
from ..data.files import ImageFile
from ..errors import InferenceError
from ..models.adapter import ModelAdapter, Tap

__all__ = ["ImageMaps", "LayerMaps", "gather_maps"]


@dataclass(frozen=True)
class LayerMaps:
    """One image's view of one layer: its channel-mean map and its strongest channels."""

    mean_map: torch.Tensor  # [H, W]
    channels: tuple[int, ...]  # channel indices, highest first by the layer's Ranking
    maps: torch.Tensor | None  # [len(channels), H, W], or None when only the mean map was asked


@dataclass(frozen=True)
class ImageMaps:
    """One shown image: its model input and its maps at every layer, in depth order."""

    index: int
    input: torch.Tensor  # [C, H, W], normalized as the model saw it
    layers: tuple[LayerMaps, ...]


def gather_maps(  # noqa: PLR0913  # what to gather, and how batches load
    adapter: ModelAdapter,
    files: Sequence[ImageFile],
    prepare: Prepare,
    rankings: Sequence[Ranking],
    wanted: Mapping[int, bool],
    max_channels: int,
    batch_size: int,
    loading: Loading | None = None,
) -> Generator[ImageMaps, None, None]:
    """Yield, in index order, the maps of each ranked layer (depth order) for each image in ``wanted``.

    Each layer's maps are taken at its ranking's point, and its channels ordered by the
    ranking. ``wanted[i]`` says whether image ``i`` needs its channel grids or only its
    mean maps. Maps stay on the model's device: normalizing, colouring and tiling happen
    there, and only finished 8-bit pixels move to the host (``drawing.visuals.to_image``).
    """
    taps = [Tap(r.layer, r.point) for r in rankings]
    depth_of = {tap: depth for depth, tap in enumerate(taps)}
    device = adapter.device
    offsets = {
        tap: torch.tensor(r.offset, dtype=torch.float32, device=device)
        for tap, r in zip(taps, rankings, strict=True)
    }
    scales = {
        tap: torch.tensor(r.scale, dtype=torch.float32, device=device)
        for tap, r in zip(taps, rankings, strict=True)
    }
    current: list[int] = []
    per_image: dict[int, list[LayerMaps | None]] = {}

    def sink(tap: Tap, output: torch.Tensor) -> None:
        x = output.float()
        mean_maps = x.mean(dim=1)
        score = (x.mean(dim=(2, 3)) - offsets[tap]) / scales[tap]
        order = torch.sort(score, dim=1, descending=True, stable=True).indices
        top = order[:, : min(max_channels, x.shape[1])]
        full_rows = [row for row, index in enumerate(current) if wanted[index]]
        gathered = None
        if full_rows:
            rows = torch.tensor(full_rows, device=x.device)
            gathered = x[rows[:, None], top[rows]]
        for row, index in enumerate(current):
            maps = None
            if gathered is not None and row in full_rows:
                maps = gathered[full_rows.index(row)].clone()
            channels = tuple(int(c) for c in top[row].tolist())
            per_image[index][depth_of[tap]] = LayerMaps(mean_maps[row].clone(), channels, maps)

    # Images are yielded between forward passes: inference mode covers each forward only,
    # so the caller's drawing does not run inside it. The caller closes the generator
    # (contextlib.closing) so that the hooks go at once, also when drawing fails.
    with adapter.recording(taps, sink) as recording:
        for batch in batches(files, prepare, batch_size, sorted(wanted), loading):
            if batch.failed or batch.pixels is None:
                index, reason = batch.failed[0]
                raise InferenceError(f"{files[index].rel} could not be read again: {reason}")
            current[:] = batch.indices
            per_image.update({i: [None] * len(taps) for i in batch.indices})
            with torch.inference_mode():
                recording.forward(batch.pixels, [files[i].rel for i in batch.indices])
            for index, pixels in zip(batch.indices, batch.pixels, strict=True):
                yield ImageMaps(index, pixels, tuple(m for m in per_image[index] if m is not None))
            per_image.clear()  # this batch's maps go before the next batch is decoded
