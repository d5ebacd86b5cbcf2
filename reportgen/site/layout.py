"""How much of each kind the site shows, and at what size: numbers the pictures and the
pages must agree on."""

from __future__ import annotations

from ..report.facts import ChannelStats

__all__ = [
    "CONFUSION_LIMIT",
    "FILTERS_SHOWN",
    "FILTER_GRID_PX",
    "GRID_PX",
    "MAX_STRIP_LAYERS",
    "MEAN_MAP_PX",
    "MISTAKE_CLASSES_SHOWN",
    "PAIRS_SHOWN",
    "STRIP_PX",
    "STRIP_SHOWN_PX",
    "UNIT_DIM",
    "UNIT_PX",
    "UNIT_THRESHOLD",
    "shows_field",
    "strip_depths",
    "strongest_channels",
]

MAX_STRIP_LAYERS = 16
STRIP_PX = 32  # a depth-strip tile: each map averaged down (or enlarged) to this square
STRIP_SHOWN_PX = 64  # and shown enlarged to this
UNIT_PX = 96  # a unit example's picture, longer side
UNIT_THRESHOLD = 0.5  # a unit's region: where its map reaches half of its extreme on the image
UNIT_DIM = 0.3  # the brightness left outside that region
MISTAKE_CLASSES_SHOWN = 24  # classes with cards on the mistakes page; each has its own page
CONFUSION_LIMIT = 20
PAIRS_SHOWN = 10  # most confused class pairs listed above the confusion matrix
FILTERS_SHOWN = 64
MEAN_MAP_PX = 128
GRID_PX = 256
FILTER_GRID_PX = 240


def strip_depths(count: int) -> list[int]:
    """Pick up to MAX_STRIP_LAYERS depths spread evenly from the first to the last layer."""
    if count <= MAX_STRIP_LAYERS:
        return list(range(count))
    step = (count - 1) / (MAX_STRIP_LAYERS - 1)
    return sorted({round(i * step) for i in range(MAX_STRIP_LAYERS)})


def strongest_channels(stats: ChannelStats, max_channels: int) -> tuple[int, ...]:
    """Name the strongest channels by mean: about one in sixteen, at least five.

    So the mark means something in a layer of 16 channels and in one of 2,048; never more
    than ``--max-channels``.
    """
    named = min(max_channels, max(5, len(stats.channel_mean) // 16))
    return stats.by_mean[:named]


def shows_field(field: int, side: int) -> bool:
    """Say whether a receptive field is small enough (at most half the input side) to crop."""
    return field <= side / 2
