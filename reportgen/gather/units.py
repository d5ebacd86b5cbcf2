"""Pass 2 for unit pages: the images the chosen channels' examples need, each run once.

The examples of every chosen channel are grouped by image, so an image that is a top
example of five channels is decoded and run once, and only the needed channels' maps
are kept. Each map comes with the channel's maximum (or minimum) recomputed on it, so the
caller can check it against what pass 1 recorded before drawing anything.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass

import torch

from ..data.batches import Loading, Prepare, batches, chunks
from ..data.files import ImageFile
from ..errors import InferenceError
from ..models.adapter import ModelAdapter, Tap
from ..report.facts import PointName

__all__ = ["Need", "UnitMaps", "gather_unit_batch", "gather_units", "unit_batches"]

Need = tuple[str, PointName, int]  # layer, point, channel


@dataclass(frozen=True)
class UnitMaps:
    """One image's maps of the channels whose examples it is."""

    index: int
    input: torch.Tensor  # [C, H, W], normalized as the model saw it
    maps: dict[Need, torch.Tensor]  # [h, w] at the tap's resolution


def unit_batches(
    needs: Mapping[int, Sequence[Need]], depths: Mapping[str, int], batch_size: int
) -> list[list[int]]:
    """Return the batches pass 2 runs, in order: images grouped by the deepest layer they
    are needed at (shallowest group first), each group's images in order, cut in batches."""
    return [run for group in _by_depth(needs, depths) for run in chunks(group, batch_size)]


def _by_depth(needs: Mapping[int, Sequence[Need]], depths: Mapping[str, int]) -> list[list[int]]:
    """Group the images by the deepest layer they are needed at, shallowest group first."""
    groups: dict[int, list[int]] = {}
    for index, wanted in needs.items():
        groups.setdefault(max(depths[layer] for layer, _, _ in wanted), []).append(index)
    return [sorted(indices) for _, indices in sorted(groups.items())]


def gather_units(
    adapter: ModelAdapter,
    files: Sequence[ImageFile],
    prepare: Prepare,
    needs: Mapping[int, Sequence[Need]],
    depths: Mapping[str, int],
    batch_size: int,
    loading: Loading | None = None,
) -> Generator[UnitMaps, None, None]:
    """Yield each needed image's maps of the channels it is an example of.

    Images are grouped by the deepest layer they are needed at (``depths``: layer name →
    forward order), and each group's forward passes stop as soon as that layer has run:
    an image that only shallow channels need never runs the deep half of the model.
    """
    for group in _by_depth(needs, depths):
        yield from _gather_group(
            adapter, files, prepare, {i: needs[i] for i in group}, batch_size, loading
        )


def gather_unit_batch(
    adapter: ModelAdapter,
    files: Sequence[ImageFile],
    prepare: Prepare,
    needs: Mapping[int, Sequence[Need]],
    batch: Sequence[int],
    loading: Loading | None = None,
) -> list[UnitMaps]:
    """Run one of :func:`unit_batches` and return its images' maps on the host."""
    wanted = {i: needs[i] for i in batch}
    return [
        UnitMaps(m.index, m.input.cpu(), {need: values.cpu() for need, values in m.maps.items()})
        for m in _gather_group(adapter, files, prepare, wanted, len(batch), loading)
    ]


def _gather_group(
    adapter: ModelAdapter,
    files: Sequence[ImageFile],
    prepare: Prepare,
    needs: Mapping[int, Sequence[Need]],
    batch_size: int,
    loading: Loading | None = None,
) -> Generator[UnitMaps, None, None]:
    by_tap: dict[Tap, dict[int, list[int]]] = {}
    for index, wanted in needs.items():
        for layer, point, channel in wanted:
            by_tap.setdefault(Tap(layer, point), {}).setdefault(index, []).append(channel)
    current: list[int] = []
    kept: dict[int, dict[Need, torch.Tensor]] = {}

    def sink(tap: Tap, output: torch.Tensor) -> None:
        wanted = by_tap.get(tap, {})
        for row, index in enumerate(current):
            for channel in wanted.get(index, ()):
                point: PointName = "conv" if tap.point == "conv" else "activation"
                kept[index][(tap.layer, point, channel)] = output[row, channel].float().clone()

    with adapter.recording(list(by_tap), sink) as recording:
        for batch in batches(files, prepare, batch_size, sorted(needs), loading):
            if batch.failed or batch.pixels is None:
                index, reason = batch.failed[0]
                raise InferenceError(f"{files[index].rel} could not be read again: {reason}")
            current[:] = batch.indices
            kept.update({i: {} for i in batch.indices})
            with torch.inference_mode():
                recording.probe(batch.pixels)
            for index, pixels in zip(batch.indices, batch.pixels, strict=True):
                yield UnitMaps(index, pixels, kept.pop(index))
