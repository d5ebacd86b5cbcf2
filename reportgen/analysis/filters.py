"""Filter verdicts from a layer's weights: norms, dead filters, near-duplicate pairs within
a group, and the spatial smoothness of the kernels."""

from __future__ import annotations

import torch

from ..report.facts import FilterStats
from .rules import DEAD_FILTER_RATIO, DUPLICATE_COSINE, MIN_DUPLICATE_WEIGHTS

__all__ = ["filter_stats", "smoothness"]


@torch.no_grad()
def smoothness(weights: torch.Tensor) -> float | None:
    """Correlate spatially neighbouring kernel weights: near 0 for noise, high for edges and blobs.

    Σ w(p)·w(q) over neighbouring positions p, q, over the root of the product of their
    sums of squares; the kernels' means are kept, as a colour blob is structure too (a fresh
    ResNet-18 or ShapesNet first layer: −0.05 to 0.05; trained EfficientNet-Lite0: 0.23).
    None for kernels smaller than 2×2.
    """
    if weights.dim() != 4 or weights.shape[2] < 2 or weights.shape[3] < 2:
        return None
    w = weights.double()
    down, right = (w[..., 1:, :], w[..., :-1, :]), (w[..., :, 1:], w[..., :, :-1])
    pairs = (down[0] * down[1]).sum() + (right[0] * right[1]).sum()
    squares = sum((t**2).sum() for t in (*down, *right))
    return float(2 * pairs / squares) if float(squares) > 0 else 0.0


def _duplicates(
    flat: torch.Tensor, alive: torch.Tensor, groups: int
) -> list[tuple[int, int, float]]:
    """Find near-duplicate pairs among the live filters of each group."""
    per_group = flat.shape[0] // groups
    found: list[tuple[int, int, float]] = []
    for group in range(groups):
        members = alive[(alive >= group * per_group) & (alive < (group + 1) * per_group)]
        if len(members) < 2:
            continue
        unit = flat[members.to(flat.device)]
        unit = unit / torch.linalg.vector_norm(unit, dim=1, keepdim=True)
        cosine = (unit @ unit.T).triu(diagonal=1).cpu()
        for a, b in torch.nonzero(cosine > DUPLICATE_COSINE).tolist():
            found.append((int(members[a]), int(members[b]), round(float(cosine[a, b]), 6)))
    return found


@torch.no_grad()
def filter_stats(weights: torch.Tensor, groups: int = 1) -> FilterStats:
    """Measure filters given as ``[out_channels, in_channels/groups, kh, kw]``.

    Filters are compared only within their group: filters of different groups read
    different input channels, so equal weights there are not redundant (every filter of a
    depthwise conv is a group of its own, and none is compared).
    """
    flat = weights.float().flatten(1)
    norms = torch.linalg.vector_norm(flat, dim=1).cpu()
    median = float(norms.median()) if len(norms) else 0.0
    dead_mask = norms <= max(median * DEAD_FILTER_RATIO, 0.0)
    dead = torch.nonzero(dead_mask).flatten().tolist()
    compared = flat.shape[1] >= MIN_DUPLICATE_WEIGHTS and flat.shape[0] > groups
    duplicates: list[tuple[int, int, float]] = []
    if compared:
        duplicates = _duplicates(flat, torch.nonzero(~dead_mask).flatten(), groups)
    return FilterStats(
        norms=tuple(float(n) for n in norms),
        dead=tuple(int(i) for i in dead),
        duplicates=tuple(sorted(duplicates)),
        compared=compared,
        smoothness=smoothness(weights),
    )
