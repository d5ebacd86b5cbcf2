"""Channels that move together: a streaming covariance of each layer's channels.

Per image, the tap's values at a fixed grid of at most ``GRID × GRID`` positions are
taken as samples (every position when the map is that small), and their Gram matrix is
computed in float32 on the device, one image at a time, then folded into float64 running
state: the result is independent of batching and sharding up to float64
rounding. The
state is C×C per layer (8 MB at 1,024 channels). At :meth:`CorrelationReducer.finish` the
Pearson correlation of every channel pair follows; pairs at or above the threshold are
kept, strongest first. Channels that never change have no correlation and are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..analysis.rules import DUPLICATE_CORRELATION, PAIRS_KEPT
from ..report.facts import Correlations, PointName
from .active import grid

__all__ = ["GRID", "CorrelationReducer", "CorrelationState"]

GRID = 6


@dataclass(frozen=True)
class CorrelationState:
    """Running sums for the channel covariance, as float64 host tensors."""

    positions: int  # sampled per image
    count: int  # samples per channel: images × positions
    sum: torch.Tensor  # [C]
    gram: torch.Tensor  # [C, C]


def _samples(x: torch.Tensor) -> torch.Tensor:
    """Take a fixed grid of positions of ``[N, C, H, W]`` as ``[N, positions, C]`` float32.

    Always in the same memory layout, so each image's Gram matrix is computed the same way
    whatever the input's layout and batch.
    """
    x = grid(x, GRID)
    n, c = int(x.shape[0]), int(x.shape[1])
    return x.float().reshape(n, c, -1).transpose(1, 2).contiguous()


class CorrelationReducer:
    """Accumulate each layer's channel covariance over images and a grid of positions."""

    def __init__(self, point: PointName = "conv") -> None:
        self.point = point
        self._positions = 0
        self._count = 0
        self._sum: torch.Tensor | None = None
        self._gram: torch.Tensor | None = None

    @torch.no_grad()
    def update(self, x: torch.Tensor, indices: torch.Tensor) -> None:
        """Fold in one batch, one image's Gram matrix at a time."""
        samples = _samples(x)
        n, positions, channels = samples.shape
        if self._sum is None or self._gram is None:
            device = torch.device("cpu") if x.device.type == "mps" else x.device
            self._sum = torch.zeros(channels, dtype=torch.float64, device=device)
            self._gram = torch.zeros(channels, channels, dtype=torch.float64, device=device)
        # One image at a time: a batched matmul summed in float64 was four times slower at
        # 512 channels on the CPU, and one matmul over the whole batch would sum in float32.
        for image in samples:
            self._gram += (image.T @ image).to(self._gram.device, torch.float64)
        self._sum += samples.sum(dim=1).to(self._sum.device, torch.float64).sum(dim=0)
        self._positions = positions
        self._count += n * positions

    def state(self) -> CorrelationState:
        """Return the running sums on the host."""
        if self._sum is None or self._gram is None:
            raise RuntimeError("no batch was recorded for this tap")
        return CorrelationState(self._positions, self._count, self._sum.cpu(), self._gram.cpu())

    def merge(self, a: CorrelationState, b: CorrelationState) -> CorrelationState:
        """Add the sums of two disjoint sets of images."""
        return CorrelationState(a.positions, a.count + b.count, a.sum + b.sum, a.gram + b.gram)

    def finish(self, state: CorrelationState) -> Correlations:
        """List the channel pairs whose |ρ| reaches the threshold, strongest first."""
        mean = state.sum / state.count
        covariance = state.gram / state.count - torch.outer(mean, mean)
        variance = covariance.diagonal().clamp(min=0.0)
        live = variance > 1e-12 * (1.0 + mean.square())
        spread = variance.sqrt().where(live, torch.ones_like(variance))
        rho = (covariance / torch.outer(spread, spread)).clamp(-1.0, 1.0)
        rho = rho.where(torch.outer(live, live), torch.zeros_like(rho)).triu(diagonal=1)
        found = torch.nonzero(rho.abs() >= DUPLICATE_CORRELATION)
        values = rho[found[:, 0], found[:, 1]] if len(found) else torch.zeros(0)
        pairs = sorted(
            (
                (int(i), int(j), round(float(v), 6))
                for (i, j), v in zip(found.tolist(), values.tolist(), strict=True)
            ),
            key=lambda p: (-abs(p[2]), p[0], p[1]),
        )
        return Correlations(
            point=self.point,
            positions=state.positions,
            samples=state.count,
            pairs=tuple(pairs[:PAIRS_KEPT]),
            total=len(pairs),
        )
