"""Channel verdicts from a layer's moments: dead channels and the ranking by mean."""

from __future__ import annotations

from ..report.facts import ChannelMoments, ChannelStats
from .rules import DEAD_RANGE

__all__ = ["channel_stats"]


def channel_stats(moments: ChannelMoments) -> ChannelStats:
    """Find the dead channels and rank the others by mean, highest first (ties by index)."""
    mean = moments.mean
    dead = tuple(
        c
        for c, (high, low) in enumerate(zip(moments.max, moments.min, strict=True))
        if high - low <= DEAD_RANGE * max(1.0, abs(high), abs(low))
    )
    dead_set = set(dead)
    order = sorted(range(len(mean)), key=lambda c: (-mean[c], c))
    return ChannelStats(
        output_shape=moments.output_shape,
        channel_mean=mean,
        channel_max=moments.max,
        activation_min=min(moments.min),
        activation_max=max(moments.max),
        dead_channels=dead,
        by_mean=tuple(c for c in order if c not in dead_set),
    )
