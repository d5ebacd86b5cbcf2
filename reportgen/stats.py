"""Statistics: per-channel activations reduced batch by batch, filters, and accuracy.

Definitions (also stated in the report):

* A channel is **dead** when its output is constant over every image and position:
  ``max - min <= DEAD_RANGE * max(1, |max|, |min|)``. Such a channel carries no
  information, whatever layer follows. Statistics are of the conv's own output, before
  any batch norm or ReLU.
* A filter is **dead** when its weight L2 norm is at most ``DEAD_FILTER_RATIO`` times
  the median norm of its layer (or exactly zero).
* Two filters are **near-duplicates** when the cosine similarity of their flattened
  weights exceeds ``DUPLICATE_COSINE``. Filters with fewer than ``MIN_DUPLICATE_WEIGHTS``
  weights are not compared: short vectors are alike by chance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

DEAD_RANGE = 1e-6
DEAD_FILTER_RATIO = 1e-3
DUPLICATE_COSINE = 0.99
MIN_DUPLICATE_WEIGHTS = 4

DEFINITIONS = {
    "dead_channel": (
        "a channel whose output is constant over every image and position (range at most "
        f"{DEAD_RANGE:g} of its magnitude); it carries no information to later layers"
    ),
    "dead_filter": (
        f"a filter whose weight L2 norm is at most {DEAD_FILTER_RATIO:g} × the median norm "
        "of its layer"
    ),
    "duplicate_filters": (
        f"two filters whose flattened weights have cosine similarity above {DUPLICATE_COSINE:g}"
    ),
    "depth": "the order in which the forward pass first calls the conv layer",
    "statistics": "computed on the conv layer's own output, before any batch norm or ReLU",
}


@dataclass(frozen=True)
class LayerStats:
    """One layer's activation statistics over the whole image set."""

    output_shape: tuple[int, ...]  # (C, H, W) for one image
    channel_mean: tuple[float, ...]
    channel_max: tuple[float, ...]
    activation_min: float
    activation_max: float
    dead_channels: tuple[int, ...]
    strongest_channels: tuple[int, ...]


@dataclass(frozen=True)
class _Running:
    """Per-channel running sums and extremes, in float64 on the host."""

    count: int
    total: torch.Tensor  # sum of the channel's values
    max: torch.Tensor
    min: torch.Tensor

    def merge(self, other: _Running) -> _Running:
        return _Running(
            count=self.count + other.count,
            total=self.total + other.total,
            max=torch.maximum(self.max, other.max),
            min=torch.minimum(self.min, other.min),
        )


def _per_image_channel(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """View a conv output as [N, C, positions] (dim 2) or [N, positions, C] (dim 1), uncopied."""
    n, c = x.shape[:2]
    if (
        x.dim() == 4
        and not x.is_contiguous()
        and x.is_contiguous(memory_format=torch.channels_last)
    ):
        return x.permute(0, 2, 3, 1).reshape(n, -1, c), 1
    return x.reshape(n, c, -1), 2


class ChannelAccumulator:
    """Reduce conv outputs to per-channel statistics, one batch at a time.

    Each batch is reduced along its contiguous axis, per image and channel (sum, max,
    min); only those small per-image vectors are merged, in float64 on the host, so the
    result does not depend on how the images were batched.
    """

    def __init__(self) -> None:
        self.shape: tuple[int, ...] | None = None
        self.running: _Running | None = None

    @torch.no_grad()
    def update(self, output: torch.Tensor) -> None:
        x = output.float()
        flat, axis = _per_image_channel(x)
        # Separate amax and amin along the contiguous axis vectorize; aminmax and float64
        # sums do not, and cost nine and twenty times as much on the CPU.
        sums, high, low = flat.sum(dim=axis), flat.amax(dim=axis), flat.amin(dim=axis)
        # Only a few numbers per image and channel cross to the host (MPS lacks float64).
        sums, high, low = (t.to("cpu", torch.float64) for t in (sums, high, low))
        batch = _Running(
            count=flat.numel() // x.shape[1],
            total=sums.sum(dim=0),
            max=high.amax(dim=0),
            min=low.amin(dim=0),
        )
        if self.running is None:
            self.shape = tuple(int(s) for s in x.shape[1:])
            self.running = batch
        else:
            self.running = self.running.merge(batch)

    def finish(self, strongest: int) -> LayerStats:
        """Return the statistics, naming at most ``strongest`` top-mean channels.

        A layer names about one channel in sixteen as strongest (at least five), so the
        mark means something in a layer of 16 channels and in one of 2,048.
        """
        if self.running is None or self.shape is None:
            raise RuntimeError("no batch was recorded for this layer")
        r = self.running
        mean, cmax, cmin = r.total / r.count, r.max, r.min
        scale = torch.maximum(torch.ones_like(cmax), torch.maximum(cmax.abs(), cmin.abs()))
        dead = torch.nonzero((cmax - cmin) <= DEAD_RANGE * scale).flatten().tolist()
        dead_set = set(dead)
        order = sorted(range(len(mean)), key=lambda c: (-float(mean[c]), c))
        alive = [c for c in order if c not in dead_set]
        named = min(strongest, max(5, len(mean) // 16))
        return LayerStats(
            output_shape=self.shape,
            channel_mean=tuple(float(v) for v in mean),
            channel_max=tuple(float(v) for v in cmax),
            activation_min=float(cmin.min()),
            activation_max=float(cmax.max()),
            dead_channels=tuple(dead),
            strongest_channels=tuple(alive[:named]),
        )


@dataclass(frozen=True)
class FilterStats:
    """One layer's filters: norms, dead ones and near-duplicate pairs."""

    norms: tuple[float, ...]
    dead: tuple[int, ...]
    duplicates: tuple[tuple[int, int, float], ...]  # (i, j, cosine) with i < j
    compared: bool  # False when filters are too small to compare


def output_filters(module: nn.Module) -> torch.Tensor:
    """Return the weights as ``[out_channels, in_channels/groups, kh, kw]`` for any conv."""
    weight = cast("torch.Tensor", module.weight).detach()
    if not isinstance(module, nn.ConvTranspose2d):
        return weight
    groups = module.groups
    cin, cout_g, *kernel = weight.shape
    w = weight.reshape(groups, cin // groups, cout_g, *kernel).transpose(1, 2)
    return w.reshape(groups * cout_g, cin // groups, *kernel)


@torch.no_grad()
def filter_stats(module: nn.Module) -> FilterStats:
    weights = output_filters(module).float().flatten(1)
    norms = torch.linalg.vector_norm(weights, dim=1).cpu()
    median = float(norms.median()) if len(norms) else 0.0
    dead_mask = norms <= max(median * DEAD_FILTER_RATIO, 0.0)
    dead = torch.nonzero(dead_mask).flatten().tolist()
    duplicates: list[tuple[int, int, float]] = []
    compared = weights.shape[1] >= MIN_DUPLICATE_WEIGHTS
    if compared:
        alive = torch.nonzero(~dead_mask).flatten()
        unit = weights[alive.to(weights.device)]
        unit = unit / torch.linalg.vector_norm(unit, dim=1, keepdim=True)
        cosine = (unit @ unit.T).triu(diagonal=1).cpu()
        for a, b in torch.nonzero(cosine > DUPLICATE_COSINE).tolist():
            duplicates.append((int(alive[a]), int(alive[b]), round(float(cosine[a, b]), 6)))
    return FilterStats(
        norms=tuple(float(n) for n in norms),
        dead=tuple(dead),
        duplicates=tuple(sorted(duplicates)),
        compared=compared,
    )


@dataclass(frozen=True)
class Prediction:
    """The model's answer for one image."""

    top: tuple[tuple[int, float], ...]  # (class index, probability), best first, up to 5
    label: int | None

    @property
    def predicted(self) -> int:
        return self.top[0][0]

    @property
    def confidence(self) -> float:
        return self.top[0][1]

    @property
    def correct(self) -> bool | None:
        return None if self.label is None else self.predicted == self.label

    @property
    def in_top5(self) -> bool | None:
        return None if self.label is None else any(c == self.label for c, _ in self.top)


@dataclass(frozen=True)
class ClassAccuracy:
    index: int
    images: int
    top1: float
    top5: float


@dataclass(frozen=True)
class Accuracy:
    """Top-1 and top-5 accuracy over the labeled images, overall and per true class."""

    labeled: int
    top1: float | None
    top5: float | None
    per_class: tuple[ClassAccuracy, ...]
    confusion: tuple[tuple[int, int, int], ...]  # (true, predicted, count), count > 0


def accuracy(predictions: Sequence[Prediction]) -> Accuracy:
    labeled = [p for p in predictions if p.label is not None]
    if not labeled:
        return Accuracy(0, None, None, (), ())
    by_class: dict[int, list[Prediction]] = {}
    confusion: dict[tuple[int, int], int] = {}
    for p in labeled:
        assert p.label is not None
        by_class.setdefault(p.label, []).append(p)
        key = (p.label, p.predicted)
        confusion[key] = confusion.get(key, 0) + 1
    per_class = tuple(
        ClassAccuracy(
            index=c,
            images=len(ps),
            top1=sum(bool(p.correct) for p in ps) / len(ps),
            top5=sum(bool(p.in_top5) for p in ps) / len(ps),
        )
        for c, ps in sorted(by_class.items())
    )
    return Accuracy(
        labeled=len(labeled),
        top1=sum(bool(p.correct) for p in labeled) / len(labeled),
        top5=sum(bool(p.in_top5) for p in labeled) / len(labeled),
        per_class=per_class,
        confusion=tuple((t, q, n) for (t, q), n in sorted(confusion.items())),
    )
