"""Per channel: the images that excite it most and least, where, and a fixed sample of images.

For every image and channel the reducer takes the spatial maximum and its position (DeepVis,
NetDissect and davidbau/dissect all rank a unit's images by it) and, where asked, the
spatial minimum and its position (the most negative responses, meaningful before an
activation). It keeps, per channel:

* the ``k`` images with the highest maxima, ties broken by image index (``torch.topk`` is
  not stable on ties, so each update sorts stably by index, then by value);
* the ``k`` images with the lowest minima, the same way;
* a reservoir: the ``SAMPLE`` images with the smallest fixed hash of their index. The
  hash is a bijection on 32-bit integers, so the reservoir is one set of images for every
  channel, whatever the batching, sharding or order; the pages take examples at quantiles
  of a channel's maxima over it.

State stays on the tap's device, ``O(channels × (2k + SAMPLE))``; nothing moves to the
host before :meth:`TopKReducer.state`. Merging two states runs the same selection over
their union, so the result never depends on batch size or process count.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..report.facts import Example, UnitExamples

__all__ = ["QUANTILES", "SAMPLE", "Kept", "TopKReducer", "TopKState", "reservoir_key"]

SAMPLE = 64
QUANTILES = (0.25, 0.5, 0.9)
_MULTIPLIER = 2654435761  # Knuth's multiplicative hash: odd, so a bijection modulo 2**32
_MODULUS = 2**32


def reservoir_key(indices: torch.Tensor) -> torch.Tensor:
    """Return the fixed hash that decides which images are in the reservoir (smallest first)."""
    return (indices.long() * _MULTIPLIER + 12345) % _MODULUS


@dataclass(frozen=True)
class Kept:
    """Per channel, the images kept so far: ``[C, n]`` values, image indices and positions."""

    values: torch.Tensor
    images: torch.Tensor
    positions: torch.Tensor  # flat index into the tap's H × W


@dataclass(frozen=True)
class TopKState:
    """A :class:`TopKReducer`'s state, as host tensors."""

    height: int
    width: int
    top: Kept | None
    bottom: Kept | None
    sample: Kept | None  # every channel's maximum on the reservoir's images, in key order


def _order(values: torch.Tensor, images: torch.Tensor, highest: bool) -> torch.Tensor:
    """Return one int64 key per entry that orders by value, then by image index, exactly.

    The float's bits, made to compare as integers do (negative floats flip their other
    bits), fill the high 32 bits; the image index the low ones, counted down when the
    highest values come first so that the lower index still wins a tie. Keys are unique
    in a row (one entry per image), so ``torch.topk`` needs no stable tie-breaking, and one
    selection replaces two stable sorts.
    """
    filled = torch.nan_to_num(values.float(), nan=-torch.inf if highest else torch.inf) + 0.0
    bits = filled.view(torch.int32).long()
    ordered = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
    tie = (_LOW_BITS - images) if highest else images
    return ordered * 2**32 + tie


_LOW_BITS = 2**32 - 1


def _joined(a: Kept | None, b: Kept) -> Kept:
    """Put two sets of kept images side by side, per channel."""
    if a is None:
        return b
    return Kept(*(torch.cat([x, y], dim=1) for x, y in zip(_fields(a), _fields(b), strict=True)))


def _keep(a: Kept | None, b: Kept, count: int, highest: bool) -> Kept:
    """Keep the ``count`` best of two sets per channel: by value, then by image index."""
    b = _joined(a, b)
    key = _order(b.values, b.images, highest)
    chosen = torch.topk(key, min(count, int(key.shape[1])), dim=1, largest=highest).indices
    return Kept(*(x.gather(1, chosen) for x in _fields(b)))


def _sample(a: Kept | None, b: Kept) -> Kept:
    """Keep the images with the smallest reservoir keys (the same images in every row)."""
    b = _joined(a, b)
    order = torch.sort(reservoir_key(b.images[0]), stable=True).indices[:SAMPLE]
    return Kept(*(x[:, order] for x in _fields(b)))


CHUNK = 128  # positions a chunk holds at least: long enough for a vectorised reduction
MIN_CHUNKS = 4  # fewer chunks than this and one max pool with indices is as fast


def _extreme(x: torch.Tensor, highest: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Return each ``[N, C]`` map's maximum (or minimum) and its first position in raster order.

    A reduction that returns indices costs several plain ones on the CPU, so maps with
    enough positions are cut into chunks of whole rows: the plain extreme of each chunk,
    then the first extreme chunk, then the first position within it (chunks follow raster
    order, so this is the first position overall). Small maps take one global max pool
    with indices.
    """
    n, c, h, w = (int(d) for d in x.shape)
    rows = next((g for g in range(1, h + 1) if h % g == 0 and g * w >= CHUNK), h)
    if h // rows < MIN_CHUNKS:
        value, where = F.adaptive_max_pool2d(x if highest else x.neg(), 1, return_indices=True)
        value, where = value.view(n, c), where.view(n, c)
        return (value if highest else value.neg()), where
    length = rows * w
    part = x.reshape(n * c, h // rows, length)
    best = part.amax(dim=2) if highest else part.amin(dim=2)  # [N × C, chunks]
    value, chunk = best.max(dim=1) if highest else best.min(dim=1)
    # Row indexing copies whole chunks; gather along a middle dimension is slower on the CPU.
    line = part[torch.arange(n * c, device=x.device), chunk]
    column = (line.argmax if highest else line.argmin)(dim=1)
    return value.view(n, c), (chunk * length + column).view(n, c)


def _fields(kept: Kept) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return kept.values, kept.images, kept.positions


class TopKReducer:
    """Keep each channel's top-``k`` images by spatial maximum with its maxima on a fixed
    reservoir of images, its bottom-``k`` by spatial minimum, or both."""

    def __init__(self, k: int, top: bool = True, bottom: bool = False) -> None:
        if not (top or bottom):
            raise ValueError("a TopKReducer keeps the top, the bottom or both")
        self.k = k
        self.top = top
        self.bottom = bottom
        self._shape: tuple[int, int] | None = None
        self._top: Kept | None = None
        self._bottom: Kept | None = None
        self._sample: Kept | None = None

    @torch.no_grad()
    def update(self, x: torch.Tensor, indices: torch.Tensor) -> None:
        """Fold in one batch ``[N, C, H, W]`` and its images' global indices ``[N]``."""
        if x.dim() == 3:
            x = x[:, :, None, :]
        if self._shape is None:
            self._shape = (int(x.shape[2]), int(x.shape[3]))
        n, c = int(x.shape[0]), int(x.shape[1])
        images = indices.long()[None, :].expand(c, n)
        if self.top:
            high, where = _extreme(x, highest=True)
            top = Kept(high.float().T, images, where.T)
            self._top = _keep(self._top, top, self.k, highest=True)
            self._sample = _sample(self._sample, top)
        if self.bottom:
            low, at = _extreme(x, highest=False)
            self._bottom = _keep(self._bottom, Kept(low.float().T, images, at.T), self.k, False)

    def state(self) -> TopKState:
        """Return the kept images on the host (one transfer)."""
        if self._shape is None:
            raise RuntimeError("no batch was recorded for this tap")
        return TopKState(
            *self._shape,
            None if self._top is None else _host(self._top),
            None if self._bottom is None else _host(self._bottom),
            None if self._sample is None else _host(self._sample),
        )

    def merge(self, a: TopKState, b: TopKState) -> TopKState:
        """Keep the best of two disjoint sets of images, as if they had been one."""
        top = bottom = sample = None
        if a.top is not None and b.top is not None:
            top = _keep(a.top, b.top, self.k, highest=True)
        if a.bottom is not None and b.bottom is not None:
            bottom = _keep(a.bottom, b.bottom, self.k, highest=False)
        if a.sample is not None and b.sample is not None:
            sample = _sample(a.sample, b.sample)
        return TopKState(a.height, a.width, top, bottom, sample)

    def finish(self, state: TopKState) -> UnitExamples:
        """Turn the kept images into examples per channel: top, bottom, and at quantiles."""
        width = state.width

        def examples(kept: Kept) -> tuple[tuple[Example, ...], ...]:
            rows = zip(
                kept.images.tolist(),
                kept.values.tolist(),
                (kept.positions // width).tolist(),
                (kept.positions % width).tolist(),
                strict=True,
            )
            # A hundred thousand small tuples would each run the cyclic garbage collector
            # over every object alive (0.3 s for ResNet-18): they hold no cycles, so pause it.
            collecting = gc.isenabled()
            gc.disable()
            try:
                return tuple(tuple(map(Example, *row)) for row in rows)
            finally:
                if collecting:
                    gc.enable()

        quantiles: tuple[tuple[Example, ...], ...] | None = None
        size = 0
        if state.sample is not None:
            sample = state.sample
            size = int(sample.values.shape[1])
            if size:
                order = torch.sort(sample.values, dim=1, stable=True).indices  # ascending
                at = order[:, [round(q * (size - 1)) for q in QUANTILES]]
                quantiles = examples(Kept(*(t.gather(1, at) for t in _fields(sample))))
            else:
                quantiles = tuple(() for _ in range(int(sample.values.shape[0])))
        return UnitExamples(
            height=state.height,
            width=width,
            top=None if state.top is None else examples(state.top),
            bottom=None if state.bottom is None else examples(state.bottom),
            quantiles=quantiles,
            levels=QUANTILES,
            sample_size=size,
        )


def _host(kept: Kept) -> Kept:
    return Kept(kept.values.cpu(), kept.images.cpu(), kept.positions.cpu())
