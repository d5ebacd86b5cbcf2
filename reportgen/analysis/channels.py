"""Channel verdicts from a layer's moments and block: constant, dead and silent channels,
and the ranking by mean."""

from __future__ import annotations

from ..report.facts import BlockFacts, ChannelMoments, ChannelStats
from .rules import DEAD_RANGE, GATING_ACTIVATIONS, OFF_MARGIN

__all__ = ["channel_stats", "dead_and_silent", "off_margins"]


def channel_stats(moments: ChannelMoments) -> ChannelStats:
    """Find the constant channels and rank the others by mean, highest first (ties by index)."""
    mean = moments.mean
    constant = tuple(
        c
        for c, (high, low) in enumerate(zip(moments.max, moments.min, strict=True))
        if high - low <= DEAD_RANGE * max(1.0, abs(high), abs(low))
    )
    skip = set(constant)
    order = sorted(range(len(mean)), key=lambda c: (-mean[c], c))
    return ChannelStats(
        output_shape=moments.output_shape,
        channel_mean=mean,
        channel_max=moments.max,
        activation_min=min(moments.min),
        activation_max=max(moments.max),
        constant=constant,
        by_mean=tuple(c for c in order if c not in skip),
    )


def off_margins(block: BlockFacts) -> tuple[float, ...] | None:
    """Return each channel's β/|γ| from the block's norm, or None without an affine norm.

    A channel whose γ is zero gets −inf when its β is at most zero (always off), +inf else.
    """
    norm = block.norm
    if norm is None or norm.weight is None or norm.bias is None:
        return None
    return tuple(
        b / abs(g) if g else (float("-inf") if b <= 0 else float("inf"))
        for g, b in zip(norm.weight, norm.bias, strict=True)
    )


def dead_and_silent(
    block: BlockFacts, conv: ChannelStats, after: ChannelMoments | None
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Return the dead channels and the silent ones (see DEFINITIONS) of one layer.

    Dead: constant at the conv output, or never positive after a gating activation and
    structurally off (β/|γ| ≤ OFF_MARGIN). Silent: never positive after a gating
    activation, whatever the norm says.
    """
    dead = set(conv.constant)
    silent: tuple[int, ...] = ()
    if after is not None and block.activation_type in GATING_ACTIVATIONS:
        silent = tuple(c for c, high in enumerate(after.max) if high <= 0.0)
        margins = off_margins(block)
        if margins is not None:
            dead.update(c for c in silent if margins[c] <= OFF_MARGIN)
    return tuple(sorted(dead)), silent
