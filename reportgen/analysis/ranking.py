"""How an image's channels are ranked on the pages: a site rule, stated in the captions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..report.facts import LayerRecord, PointName

__all__ = ["Rank", "Ranking", "ranking"]

Rank = Literal["relative", "mean"]


@dataclass(frozen=True)
class Ranking:
    """Rank one layer's channels on an image by (image mean − offset) / scale, highest first."""

    layer: str
    point: PointName  # where the maps are taken: the point asked for, if the layer has it
    rule: Rank
    offset: tuple[float, ...]
    scale: tuple[float, ...]


def ranking(layer: LayerRecord, point: PointName, rule: Rank) -> Ranking:
    """Make a layer's ranking at ``point``: relative to each channel's typical response, or by mean.

    ``relative`` subtracts the channel's mean over the folder and divides by the spread of
    its per-image means; a channel whose per-image mean never changes scores zero.
    """
    record = layer.at(point)
    channels = len(record.stats.channel_mean)
    if rule == "mean":
        return Ranking(layer.conv.name, record.point, rule, (0.0,) * channels, (1.0,) * channels)
    mean = record.moments.mean
    spread = record.moments.image_spread
    scale = tuple(
        s if s > 1e-9 * (1.0 + abs(m)) else float("inf") for m, s in zip(mean, spread, strict=True)
    )
    return Ranking(layer.conv.name, record.point, rule, mean, scale)
