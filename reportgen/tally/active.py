"""The share of positions where each channel is above zero: how often it fires."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .moments import per_image_channel

__all__ = ["PositiveShareReducer", "PositiveState"]


@dataclass(frozen=True)
class PositiveState:
    """Per channel, how many values were above zero, out of how many."""

    positive: torch.Tensor  # [C] int64
    total: int


class PositiveShareReducer:
    """Count, per channel, the values above zero over every image and position.

    Counts are integers, so the result is exact and independent of batching.
    """

    def __init__(self) -> None:
        self._positive: torch.Tensor | None = None
        self._total = 0

    @torch.no_grad()
    def update(self, x: torch.Tensor, indices: torch.Tensor) -> None:
        """Fold in one batch; the indices are not needed, as counts do not depend on order."""
        flat, axis = per_image_channel(x)
        positive = flat.gt(0).sum(dim=axis).sum(dim=0)
        self._positive = positive if self._positive is None else self._positive + positive
        self._total += flat.numel() // int(x.shape[1])

    def state(self) -> PositiveState:
        """Return the counts on the host."""
        if self._positive is None:
            raise RuntimeError("no batch was recorded for this tap")
        return PositiveState(self._positive.cpu(), self._total)

    def merge(self, a: PositiveState, b: PositiveState) -> PositiveState:
        """Add the counts of two disjoint sets of images."""
        return PositiveState(a.positive + b.positive, a.total + b.total)

    def finish(self, state: PositiveState) -> tuple[float, ...]:
        """Return each channel's share of values above zero."""
        return tuple(int(p) / state.total for p in state.positive.tolist())
