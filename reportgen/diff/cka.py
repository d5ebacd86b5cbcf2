"""Centered kernel alignment between two models' activations, streamed in float64.

**Linear CKA with positions as samples** (aligned layers of one architecture). Kornblith
et al., "Similarity of Neural Network Representations Revisited" (ICML 2019), eq. 5: for
features ``X [n, p]`` and ``Y [n, q]`` with centred columns,
``CKA = ‖XᵀY‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F)``. Every spatial position of every image is one
sample and the channels are the features, so the state is the raw float64 sums
``n, Σx, Σy, ΣxxᵀΣ, Σyyᵀ, Σxyᵀ`` (C×C each) and centring happens at the end:
``S_c = S − s tᵀ / n``. Nothing depends on the batch size but float64 rounding.

The sums are kept per *group* of images (image ``i`` in group ``i mod GROUPS``, so shards
and batches fall into the same groups), which gives a bootstrap over images at no extra
pass: resampling groups with weights ``w``, ``‖S_c(w)‖² = wᵀMw − 2 T(w,w,w)/n(w) +
(wᵀAw)(wᵀBw)/n(w)²`` with ``M_gh = ⟨S_g, S_h⟩``, ``T_ghk = a_gᵀ S_h b_k``, ``A_gh = a_g·a_h``
and ``B_gh = b_g·b_h`` (``a``, ``b`` the groups' column sums), all computed once; each
replicate then costs O(G³), not O(C²).

**Unbiased minibatch CKA** (different architectures, every layer pair). Nguyen, Raghu and
Kornblith, "Do Wide and Deep Networks Learn the Same Things?" (ICLR 2021), eq. 2–3, with
the unbiased HSIC of Song et al. (JMLR 2012): the images are taken in fixed chunks of
``CHUNK`` in the order they were read (independent of ``--batch-size``; a last chunk of
at least 4 images counts too), each layer's flattened features give an ``n×n`` Gram
matrix per chunk, and ``CKA = Σ_k HSIC₁(K_k, L_k) / √(Σ_k HSIC₁(K_k, K_k) Σ_k HSIC₁(L_k, L_k))``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

__all__ = [
    "BOOTSTRAP",
    "CHUNK",
    "GROUPS",
    "LEVEL",
    "Estimate",
    "MinibatchCKA",
    "MinibatchState",
    "PairReducer",
    "PairSums",
    "hsic1",
    "linear_cka",
    "minibatch_estimates",
    "pair_estimate",
]

GROUPS = 10  # bootstrap groups of images for linear CKA: image i in group i mod GROUPS
CHUNK = 16  # images per Gram matrix of the minibatch estimator
MIN_CHUNK = 4  # the unbiased HSIC needs n ≥ 4
MB_GROUPS = 50  # bootstrap groups of chunks for the minibatch estimator
BOOTSTRAP = 2000  # bootstrap replicates
LEVEL = 0.90  # the interval's coverage
SEED = 0
_GRAM_BYTES = 64 << 20  # per-image Gram matrices computed at most this much at a time


def _wide(device: torch.device) -> torch.device:
    """Return where float64 sums live: the device, or the host where it lacks float64 (MPS)."""
    return torch.device("cpu") if device.type == "mps" else device


def _positions(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Return ``[N, C, H, W]`` as float64 samples ``[N, H·W, C]`` on ``device``."""
    return x.detach().to(device, torch.float64).flatten(2).transpose(1, 2)


@dataclass(frozen=True)
class PairSums:
    """Float64 sums over positions of two layers' activations, per group of images (host)."""

    count: torch.Tensor  # [G] positions
    sx: torch.Tensor  # [G, p]
    sy: torch.Tensor  # [G, q]
    xx: torch.Tensor  # [G, p, p]
    yy: torch.Tensor  # [G, q, q]
    xy: torch.Tensor  # [G, p, q]

    def __add__(self, other: PairSums) -> PairSums:
        """Return the sums of two disjoint sets of images."""
        return PairSums(*(a + b for a, b in zip(self.fields(), other.fields(), strict=True)))

    def fields(self) -> tuple[torch.Tensor, ...]:
        """Return the six sums in order."""
        return (self.count, self.sx, self.sy, self.xx, self.yy, self.xy)

    def total(self) -> PairSums:
        """Return the sums of every group together, as one group."""
        return PairSums(*(f.sum(dim=0, keepdim=True) for f in self.fields()))


class PairReducer:
    """Accumulate the linear-CKA sums of one pair of layers, batch by batch, on the device.

    ``update(x, y, indices)`` takes both models' outputs for the same images; nothing goes
    to the host until :meth:`state`. ``groups=1`` keeps only the totals (no bootstrap).
    """

    def __init__(self, groups: int = GROUPS) -> None:
        self.groups = groups
        self._sums: list[torch.Tensor] | None = None

    @torch.no_grad()
    def update(self, x: torch.Tensor, y: torch.Tensor, indices: torch.Tensor) -> None:
        """Fold in one batch: ``x [N, p, H, W]`` and ``y [N, q, H, W]`` of the same images."""
        if x.shape[0] != y.shape[0] or x.shape[2:] != y.shape[2:]:
            raise ValueError(
                f"linear CKA needs maps of the same images and size: {tuple(x.shape)} "
                f"against {tuple(y.shape)}"
            )
        device = _wide(x.device)
        xs, ys = _positions(x, device), _positions(y, device)
        p, q, g = xs.shape[2], ys.shape[2], self.groups
        if self._sums is None:
            shapes = [(g,), (g, p), (g, q), (g, p, p), (g, q, q), (g, p, q)]
            self._sums = [torch.zeros(s, dtype=torch.float64, device=device) for s in shapes]
        count, sx, sy, xx, yy, xy = self._sums
        group = indices.to(device) % g
        positions = torch.full_like(group, xs.shape[1], dtype=torch.float64)
        count.index_add_(0, group, positions)
        sx.index_add_(0, group, xs.sum(dim=1))
        sy.index_add_(0, group, ys.sum(dim=1))
        if g == 1:
            fx, fy = xs.reshape(-1, p), ys.reshape(-1, q)
            xx += fx.T @ fx
            yy += fy.T @ fy
            xy += fx.T @ fy
            return
        # Per-image Gram matrices, a few images at a time, added into their groups.
        step = max(1, _GRAM_BYTES // (8 * max(p, q) ** 2))
        for start in range(0, xs.shape[0], step):
            a, b, k = (
                xs[start : start + step],
                ys[start : start + step],
                group[start : start + step],
            )
            xx.index_add_(0, k, a.transpose(1, 2) @ a)
            yy.index_add_(0, k, b.transpose(1, 2) @ b)
            xy.index_add_(0, k, a.transpose(1, 2) @ b)

    def state(self) -> PairSums | None:
        """Return the sums on the host (None when no batch came)."""
        return None if self._sums is None else PairSums(*(s.cpu() for s in self._sums))

    @staticmethod
    def merge(a: PairSums | None, b: PairSums | None) -> PairSums | None:
        """Combine the sums of two disjoint sets of images."""
        if a is None or b is None:
            return a if b is None else b
        return a + b


def _centred(s: PairSums) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return the centred ``XᵀX``, ``YᵀY``, ``XᵀY`` of the totals."""
    t = s.total()
    n = float(t.count[0])
    sx, sy = t.sx[0], t.sy[0]
    return (
        t.xx[0] - torch.outer(sx, sx) / n,
        t.yy[0] - torch.outer(sy, sy) / n,
        t.xy[0] - torch.outer(sx, sy) / n,
    )


@dataclass(frozen=True)
class Estimate:
    """One CKA value, with its bootstrap interval where one was computed."""

    value: float | None  # None where a layer never varies (CKA undefined)
    low: float | None = None
    high: float | None = None


def _ratio(xy: float, xx: float, yy: float) -> float | None:
    denominator = (max(xx, 0.0) * max(yy, 0.0)) ** 0.5
    return None if denominator <= 0.0 else min(1.0, max(0.0, xy / denominator))


def _group_terms(
    s: torch.Tensor, a: torch.Tensor, b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return M, T, A, B of the bootstrap expansion for group sums ``s [G, p, q]``."""
    flat = s.flatten(1)
    m = flat @ flat.T
    t = torch.einsum("gp,hpq,kq->ghk", a, s, b)
    return m, t, a @ a.T, b @ b.T


def _squared_norms(
    terms: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    w: torch.Tensor,
    n: torch.Tensor,
) -> torch.Tensor:
    """Return ``‖S_c(w)‖²_F`` for each row of weights ``w [R, G]``."""
    m, t, a, b = terms
    quadratic = ((w @ m) * w).sum(dim=1)
    cubic = torch.einsum("rg,rh,rk,ghk->r", w, w, w, t)
    means = ((w @ a) * w).sum(dim=1) * ((w @ b) * w).sum(dim=1)
    return quadratic - 2.0 * cubic / n + means / n.square()


def _replicate_weights(live: int, replicates: int) -> torch.Tensor:
    """Return seeded multinomial resampling weights ``[replicates, live]``."""
    generator = torch.Generator().manual_seed(SEED)
    picks = torch.randint(0, live, (replicates, live), generator=generator)
    w = torch.zeros(replicates, live, dtype=torch.float64)
    w.scatter_add_(1, picks, torch.ones_like(picks, dtype=torch.float64))
    return w


def _interval(values: torch.Tensor) -> tuple[float | None, float | None]:
    values = values[torch.isfinite(values)]
    if not len(values):
        return None, None
    tail = (1.0 - LEVEL) / 2.0
    low, high = torch.quantile(values, torch.tensor([tail, 1.0 - tail], dtype=values.dtype))
    return float(low), float(high)


def pair_estimate(sums: PairSums, replicates: int = BOOTSTRAP) -> Estimate:
    """Return linear CKA from the sums, with a bootstrap interval over groups of images
    where there are at least two groups with images."""
    xx, yy, xy = _centred(sums)
    value = _ratio(float(xy.square().sum()), float(xx.square().sum()), float(yy.square().sum()))
    live = torch.nonzero(sums.count > 0).flatten()
    if value is None or len(live) < 2 or replicates == 0:
        return Estimate(value)
    count, sx, sy = sums.count[live], sums.sx[live], sums.sy[live]
    w = _replicate_weights(len(live), replicates)
    n = w @ count
    norms = [
        _squared_norms(_group_terms(s[live], a, b), w, n)
        for s, a, b in ((sums.xy, sx, sy), (sums.xx, sx, sx), (sums.yy, sy, sy))
    ]
    boot = norms[0] / (norms[1].clamp(min=0.0) * norms[2].clamp(min=0.0)).sqrt()
    low, high = _interval(boot.clamp(0.0, 1.0))
    return Estimate(value, low, high)


def channel_correlations(sums: PairSums) -> tuple[float | None, ...]:
    """Return each channel's Pearson correlation between the two layers (same channels)."""
    xx, yy, xy = _centred(sums)
    spread = (xx.diagonal().clamp(min=0.0) * yy.diagonal().clamp(min=0.0)).sqrt()
    rho = xy.diagonal() / spread
    return tuple(
        round(max(-1.0, min(1.0, r)), 6) if s > 0 and math.isfinite(r) else None
        for r, s in zip(rho.tolist(), spread.tolist(), strict=True)
    )


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Return linear CKA of ``[n, p]`` and ``[n, q]`` features computed directly (a reference)."""
    x = x.double() - x.double().mean(dim=0)
    y = y.double() - y.double().mean(dim=0)
    cross = float((x.T @ y).square().sum())
    return cross / float((x.T @ x).square().sum().sqrt() * (y.T @ y).square().sum().sqrt())


def hsic1(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:  # noqa: E741
    """Return the unbiased HSIC of Gram matrices ``k [..., n, n]`` and ``l [n, n]`` (Song et al.)."""
    n = k.shape[-1]
    k = k - torch.diag_embed(k.diagonal(dim1=-2, dim2=-1))
    l = l - torch.diag_embed(l.diagonal(dim1=-2, dim2=-1))  # noqa: E741
    trace = (k * l).sum(dim=(-2, -1))
    sums = k.sum(dim=(-2, -1)) * l.sum(dim=(-2, -1)) / ((n - 1) * (n - 2))
    rows = (k.sum(dim=-1) * l.sum(dim=-1)).sum(dim=-1) * 2.0 / (n - 2)
    return (trace + sums - rows) / (n * (n - 3))


def _off_diagonal(grams: torch.Tensor) -> torch.Tensor:
    """Zero the diagonals of ``[L, n, n]`` Gram matrices."""
    return grams - torch.diag_embed(grams.diagonal(dim1=-2, dim2=-1))


def _pair_hsic(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:  # noqa: E741
    """Return the unbiased HSIC of every pair of ``k [La, n, n]`` and ``l [Lb, n, n]``."""
    n = k.shape[-1]
    k, l = _off_diagonal(k), _off_diagonal(l)  # noqa: E741
    trace = k.flatten(1) @ l.flatten(1).T
    rk, rl = k.sum(dim=-1), l.sum(dim=-1)
    sums = torch.outer(rk.sum(dim=-1), rl.sum(dim=-1)) / ((n - 1) * (n - 2))
    rows = (rk @ rl.T) * 2.0 / (n - 2)
    return (trace + sums - rows) / (n * (n - 3))


@dataclass(frozen=True)
class MinibatchState:
    """Unbiased HSIC sums per group of chunks (chunk ``k`` in group ``k mod MB_GROUPS``)."""

    chunks: int
    xy: torch.Tensor  # [G, La, Lb]
    xx: torch.Tensor  # [G, La]
    yy: torch.Tensor  # [G, Lb]
    null: torch.Tensor  # [G, La, Lb]: B's images rotated by one inside each chunk


class MinibatchCKA:
    """Unbiased minibatch CKA between every layer of model A and every layer of model B.

    Feed each batch's flattened features with :meth:`add`, in the order the images were
    read; chunks of ``CHUNK`` images are formed whatever the batch size. The shuffled
    reference pairs image ``j`` of a chunk in A with image ``j + 1`` (cyclically) in B.
    """

    def __init__(
        self, layers_a: Sequence[str], layers_b: Sequence[str], chunk: int = CHUNK
    ) -> None:
        if chunk < MIN_CHUNK:
            raise ValueError(f"chunks need at least {MIN_CHUNK} images")
        self.layers_a, self.layers_b, self.chunk = tuple(layers_a), tuple(layers_b), chunk
        self._waiting_a: dict[str, list[torch.Tensor]] = {n: [] for n in self.layers_a}
        self._waiting_b: dict[str, list[torch.Tensor]] = {n: [] for n in self.layers_b}
        self._held = 0
        self._chunks = 0
        la, lb = len(self.layers_a), len(self.layers_b)
        self._xy, self._xx, self._yy, self._null = (
            torch.zeros(shape, dtype=torch.float64)
            for shape in (
                (MB_GROUPS, la, lb),
                (MB_GROUPS, la),
                (MB_GROUPS, lb),
                (MB_GROUPS, la, lb),
            )
        )

    @torch.no_grad()
    def add(self, a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> None:
        """Take one batch's features of every layer of A and B (``[N, ...]``, same images)."""
        size = next(iter(a.values())).shape[0]
        for name in self.layers_a:
            self._waiting_a[name].append(a[name].detach().flatten(1).float())
        for name in self.layers_b:
            self._waiting_b[name].append(b[name].detach().flatten(1).float())
        self._held += size
        while self._held >= self.chunk:
            self._take(self.chunk)

    def _take(self, count: int) -> None:
        """Turn the first ``count`` waiting images into one chunk's HSIC terms."""
        grams: list[torch.Tensor] = []
        for waiting in (self._waiting_a, self._waiting_b):
            side = []
            for name, parts in waiting.items():
                features = torch.cat(parts) if len(parts) > 1 else parts[0]
                head, rest = features[:count], features[count:]
                waiting[name] = [rest] if len(rest) else []
                wide = head.to(_wide(head.device), torch.float64)
                side.append((wide @ wide.T).cpu())
            grams.append(torch.stack(side))
        self._held -= count
        k, l = grams  # noqa: E741
        rotate = torch.roll(torch.arange(count), 1)
        shuffled = l[:, rotate][:, :, rotate]
        g = self._chunks % MB_GROUPS
        self._xy[g] += _pair_hsic(k, l)
        self._null[g] += _pair_hsic(k, shuffled)
        self._xx[g] += torch.stack([hsic1(m, m) for m in k])
        self._yy[g] += torch.stack([hsic1(m, m) for m in l])
        self._chunks += 1

    def state(self) -> MinibatchState:
        """Close the last chunk (if it has enough images) and return the sums."""
        if self._held >= MIN_CHUNK:
            self._take(self._held)
        return MinibatchState(self._chunks, self._xy, self._xx, self._yy, self._null)


@dataclass(frozen=True)
class MinibatchEstimates:
    """Minibatch CKA of every layer pair, its interval, and the shuffled reference."""

    chunks: int
    value: tuple[tuple[float | None, ...], ...]  # [La][Lb]
    low: tuple[tuple[float | None, ...], ...]
    high: tuple[tuple[float | None, ...], ...]
    null: tuple[tuple[float | None, ...], ...]


def _mb_ratio(xy: torch.Tensor, xx: torch.Tensor, yy: torch.Tensor) -> torch.Tensor:
    """Return CKA ``[..., La, Lb]`` from summed HSIC terms; NaN where undefined."""
    denominator = (xx.clamp(min=0.0)[..., :, None] * yy.clamp(min=0.0)[..., None, :]).sqrt()
    return torch.where(denominator > 0, xy / denominator, torch.full_like(xy, float("nan")))


def _rows(values: torch.Tensor) -> tuple[tuple[float | None, ...], ...]:
    return tuple(tuple(None if v != v else round(v, 6) for v in row) for row in values.tolist())


def minibatch_estimates(state: MinibatchState, replicates: int = BOOTSTRAP) -> MinibatchEstimates:
    """Return every layer pair's minibatch CKA, bootstrapped over groups of chunks."""
    value = _mb_ratio(state.xy.sum(0), state.xx.sum(0), state.yy.sum(0))
    null = _mb_ratio(state.null.sum(0), state.xx.sum(0), state.yy.sum(0))
    live = min(state.chunks, MB_GROUPS)
    low = high = torch.full_like(value, float("nan"))
    if live >= 2 and replicates:
        w = _replicate_weights(live, replicates)
        boot = _mb_ratio(
            torch.einsum("rg,gab->rab", w, state.xy[:live]),
            w @ state.xx[:live],
            w @ state.yy[:live],
        )
        tail = (1.0 - LEVEL) / 2.0
        bounds = torch.nanquantile(boot, torch.tensor([tail, 1.0 - tail], dtype=boot.dtype), dim=0)
        low, high = bounds[0], bounds[1]
    return MinibatchEstimates(state.chunks, _rows(value), _rows(low), _rows(high), _rows(null))
