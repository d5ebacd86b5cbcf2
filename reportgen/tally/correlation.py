"""Channels that move together: a streaming covariance of each layer's channels.

Per image, the tap's values at a fixed grid of at most ``GRID × GRID`` positions are
taken as samples (every position when the map is that small). Each image's samples are
shifted by a per-channel constant, the first image's mean (covariance does not change
under a shift, and a centred Gram matrix loses far less to float32 rounding than a raw
one). Every ``FOLD`` images, in arrival order, their samples' Gram matrix is computed in
one float32 matmul and added to float64 running state; images of a batch that do not
fill a fold wait for the next batch. The arithmetic is therefore the same whatever the
batch size; running the images in another
order or in shards changes it only by float32 rounding. The state is C×C per layer (8 MB
at 1,024 channels) and is handed over as raw float64 sums, so states with different
shifts merge. At :meth:`CorrelationReducer.finish` the Pearson correlation of every
channel pair follows; pairs at or above the threshold are kept, strongest first.
Channels that never change have no correlation and are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..analysis.rules import DUPLICATE_CORRELATION, PAIRS_KEPT
from ..report.facts import Correlations, PointName
from .active import grid

__all__ = ["FOLD", "GRID", "CorrelationReducer", "CorrelationState", "correlation_matrix"]

GRID = 6
FOLD = 16  # images whose Gram matrix is summed in float32 before it is added in float64


@dataclass(frozen=True)
class CorrelationState:
    """Running sums for the channel covariance, as float64 host tensors."""

    positions: int  # sampled per image
    count: int  # samples per channel: images × positions
    sum: torch.Tensor  # [C]
    gram: torch.Tensor  # [C, C]


def _gram(samples: torch.Tensor) -> torch.Tensor:
    """Return the float64 Gram matrix of ``[images, positions, C]`` samples, summed in float32."""
    flat = samples.reshape(-1, samples.shape[-1])
    return (flat.T @ flat).to(torch.float64)


def _samples(x: torch.Tensor) -> torch.Tensor:
    """Take a fixed grid of positions of ``[N, C, H, W]`` as ``[N, positions, C]`` float32.

    Always in the same memory layout, so each image's Gram matrix is computed the same way
    whatever the input's layout and batch.
    """
    x = grid(x, GRID)
    n, c = int(x.shape[0]), int(x.shape[1])
    return x.float().reshape(n, c, -1).transpose(1, 2).contiguous()


def correlation_matrix(state: CorrelationState) -> torch.Tensor:
    """Return the upper triangle of the channels' Pearson ρ; 0 for channels that never change."""
    mean = state.sum / state.count
    covariance = state.gram / state.count - torch.outer(mean, mean)
    variance = covariance.diagonal().clamp(min=0.0)
    live = variance > 1e-12 * (1.0 + mean.square())
    spread = variance.sqrt().where(live, torch.ones_like(variance))
    rho = (covariance / torch.outer(spread, spread)).clamp(-1.0, 1.0)
    return rho.where(torch.outer(live, live), torch.zeros_like(rho)).triu(diagonal=1)


class CorrelationReducer:
    """Accumulate each layer's channel covariance over images and a grid of positions."""

    def __init__(self, point: PointName = "conv") -> None:
        self.point = point
        self._positions = 0
        self._count = 0
        self._shift: torch.Tensor | None = None  # [C] float32
        self._sum: torch.Tensor | None = None  # of shifted samples, float64
        self._gram: torch.Tensor | None = None  # of shifted samples, float64
        self._waiting: list[torch.Tensor] = []  # shifted samples of fewer than FOLD images

    @torch.no_grad()
    def update(self, x: torch.Tensor, indices: torch.Tensor) -> None:
        """Fold in one batch, ``FOLD`` images at a time in arrival order."""
        samples = _samples(x)
        n, positions, channels = samples.shape
        if self._shift is None:
            self._shift = samples[0].mean(dim=0)
            wide = torch.device("cpu") if x.device.type == "mps" else x.device  # no float64
            self._sum = torch.zeros(channels, dtype=torch.float64, device=wide)
            self._gram = torch.zeros(channels, channels, dtype=torch.float64, device=wide)
        assert self._sum is not None and self._gram is not None
        samples = samples - self._shift
        self._sum += samples.sum(dim=1).to(self._sum.device, torch.float64).sum(dim=0)
        self._positions = positions
        self._count += n * positions
        # The same FOLD images go into one float32 matmul whatever the batch size, so the
        # sums do not depend on it. A Gram matrix per image, each folded into float64, was
        # 2.4 times slower, and a batched matmul summed in float64 ten times.
        waiting = torch.cat([*self._waiting, samples]) if self._waiting else samples
        full = len(waiting) - len(waiting) % FOLD
        for start in range(0, full, FOLD):
            self._gram += _gram(waiting[start : start + FOLD]).to(self._gram.device)
        self._waiting = [waiting[full:]] if full < len(waiting) else []

    def state(self) -> CorrelationState:
        """Return the running sums of the raw samples, in float64 on the host."""
        if self._shift is None or self._sum is None or self._gram is None:
            raise RuntimeError("no batch was recorded for this tap")
        gram = self._gram
        if self._waiting:
            gram = gram + _gram(self._waiting[0]).to(gram.device)
        shift, shifted_sum = self._shift.to(self._sum.device, torch.float64), self._sum
        # Σ x xᵀ = Σ (x − k)(x − k)ᵀ + k sᵀ + s kᵀ + n k kᵀ, with s = Σ (x − k).
        cross = torch.outer(shift, shifted_sum)
        raw = gram + cross + cross.T + self._count * torch.outer(shift, shift)
        total = shifted_sum + self._count * shift
        return CorrelationState(self._positions, self._count, total.cpu(), raw.cpu())

    def merge(self, a: CorrelationState, b: CorrelationState) -> CorrelationState:
        """Add the sums of two disjoint sets of images."""
        return CorrelationState(a.positions, a.count + b.count, a.sum + b.sum, a.gram + b.gram)

    def finish(self, state: CorrelationState) -> Correlations:
        """List the channel pairs whose |ρ| reaches the threshold, strongest first."""
        rho = correlation_matrix(state)
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
