"""Filter verdicts from a layer's weights: norms, dead filters, near-duplicate pairs."""

from __future__ import annotations

import torch

from ..report.facts import FilterStats
from .rules import DEAD_FILTER_RATIO, DUPLICATE_COSINE, MIN_DUPLICATE_WEIGHTS

__all__ = ["filter_stats"]


@torch.no_grad()
def filter_stats(weights: torch.Tensor) -> FilterStats:
    """Measure filters given as ``[out_channels, in_channels/groups, kh, kw]``."""
    flat = weights.float().flatten(1)
    norms = torch.linalg.vector_norm(flat, dim=1).cpu()
    median = float(norms.median()) if len(norms) else 0.0
    dead_mask = norms <= max(median * DEAD_FILTER_RATIO, 0.0)
    dead = torch.nonzero(dead_mask).flatten().tolist()
    duplicates: list[tuple[int, int, float]] = []
    compared = flat.shape[1] >= MIN_DUPLICATE_WEIGHTS
    if compared:
        alive = torch.nonzero(~dead_mask).flatten()
        unit = flat[alive.to(flat.device)]
        unit = unit / torch.linalg.vector_norm(unit, dim=1, keepdim=True)
        cosine = (unit @ unit.T).triu(diagonal=1).cpu()
        for a, b in torch.nonzero(cosine > DUPLICATE_COSINE).tolist():
            duplicates.append((int(alive[a]), int(alive[b]), round(float(cosine[a, b]), 6)))
    return FilterStats(
        norms=tuple(float(n) for n in norms),
        dead=tuple(int(i) for i in dead),
        duplicates=tuple(sorted(duplicates)),
        compared=compared,
    )
