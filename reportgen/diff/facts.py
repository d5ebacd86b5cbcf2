"""What a comparison found, as frozen records, and the pure functions that state it.

Facts in (two reports, the CKA sums, the filters), records out: nothing here runs a
model. The records are what the diff's pages and its report.json are made from.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from ..report.facts import LayerRecord, PointName, Report
from .cka import (
    BOOTSTRAP,
    GROUPS,
    LEVEL,
    Estimate,
    MinibatchEstimates,
    PairSums,
    channel_correlations,
    minibatch_estimates,
    pair_estimate,
)
from .run import DiffPass

__all__ = [
    "ChannelChange",
    "Checkpoint",
    "Comparison",
    "Flip",
    "LayerChange",
    "Setup",
    "compare",
    "drift",
    "mean_present",
]


@dataclass(frozen=True)
class ChannelChange:
    """One channel of an aligned layer, A against B."""

    channel: int
    cosine_drift: float | None  # 1 − cos(filter in A, filter in B); None for a zero filter
    relative_change: float | None  # ‖w_B − w_A‖ / ‖w_A‖; None for a zero filter in A
    correlation: float | None  # Pearson r of the channel's activations in A and B
    top_overlap: float | None  # share of A's top examples that are also B's


@dataclass(frozen=True)
class LayerChange:
    """One layer of A: CKA to B with its references, and what changed in its channels."""

    depth: int
    name: str
    point: str  # where both models were measured, as the pages say it
    cka: Estimate | None  # aligned layers only
    null: float | None  # the same two models with the image order of B deranged
    floor: float | None  # A against a random initialisation of A
    samples: int  # positions × images summed for the estimate
    channels: tuple[ChannelChange, ...]  # aligned layers only
    mean_cosine_drift: float | None
    dead_a: tuple[int, ...]
    dead_b: tuple[int, ...]
    duplicates_a: int  # near-duplicate filter pairs
    duplicates_b: int
    findings_a: tuple[str, ...]  # kinds of the findings naming this layer
    findings_b: tuple[str, ...]


@dataclass(frozen=True)
class Flip:
    """An image one model gets right and the other wrong."""

    index: int
    path: str
    label: int
    a: tuple[int, float]  # A's top class and its probability
    b: tuple[int, float]


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint of a training run, compared with the last."""

    name: str
    cka: tuple[float | None, ...]  # per layer of A, to the final checkpoint
    drift: tuple[float | None, ...]  # per layer: mean 1 − cos of its filters to the final's
    top1: float | None  # accuracy on the labelled images


@dataclass(frozen=True)
class Comparison:
    """Everything the diff states."""

    a: Report
    b: Report
    label_a: str
    label_b: str
    aligned: bool
    estimator: str  # how CKA was computed, for every page
    groups: int  # bootstrap groups of images (aligned) or of chunks (minibatch)
    replicates: int
    level: float
    floor_note: str  # what the floor is here
    layers: tuple[LayerChange, ...]
    heatmap: MinibatchEstimates | None  # different architectures
    layers_b: tuple[str, ...]
    pairs_null: int
    agreement: float | None  # share of images with the same top-1 class
    flips_ab: tuple[Flip, ...]  # A right, B wrong
    flips_ba: tuple[Flip, ...]  # A wrong, B right
    checkpoints: tuple[Checkpoint, ...]  # empty unless --checkpoints
    warnings: tuple[str, ...]


def drift(a: torch.Tensor, b: torch.Tensor) -> tuple[list[float | None], list[float | None]]:
    """Return each filter's 1 − cosine and relative L2 change from ``a`` to ``b`` (same shape)."""
    fa, fb = a.double().flatten(1), b.double().flatten(1)
    na, nb = fa.norm(dim=1), fb.norm(dim=1)
    cos = (fa * fb).sum(dim=1) / (na * nb)
    rel = (fb - fa).norm(dim=1) / na
    cosine = [
        None if not math.isfinite(c) else round(1.0 - max(-1.0, min(1.0, c)), 6)
        for c in cos.tolist()
    ]
    relative = [None if not math.isfinite(r) else round(r, 6) for r in rel.tolist()]
    return cosine, relative


def mean_present(values: Sequence[float | None]) -> float | None:
    """Return the mean of the values that are not None (rounded to 6 places), or None."""
    kept = [v for v in values if v is not None]
    return round(sum(kept) / len(kept), 6) if kept else None


def _overlap(a: LayerRecord, b: LayerRecord, point: PointName) -> list[float | None]:
    """Return, per channel, the share of A's top examples that are B's top examples too."""
    units_a, units_b = a.at(point).units, b.at(point).units
    if units_a is None or units_b is None or units_a.top is None or units_b.top is None:
        return [None] * a.conv.out_channels
    shares: list[float | None] = []
    for top_a, top_b in zip(units_a.top, units_b.top, strict=True):
        images_a, images_b = {e.image for e in top_a}, {e.image for e in top_b}
        shares.append(round(len(images_a & images_b) / len(images_a), 6) if images_a else None)
    return shares


def _value(sums: PairSums | None) -> float | None:
    if sums is None:
        return None
    return _round(pair_estimate(sums, replicates=0).value)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _rounded(estimate: Estimate) -> Estimate:
    return Estimate(_round(estimate.value), _round(estimate.low), _round(estimate.high))


def _findings_by_layer(report: Report) -> dict[str, tuple[str, ...]]:
    kinds: dict[str, set[str]] = {}
    for finding in report.findings:
        if finding.layer is not None:
            kinds.setdefault(finding.layer, set()).add(finding.kind)
    return {layer: tuple(sorted(k)) for layer, k in kinds.items()}


def _flips(a: Report, b: Report) -> tuple[tuple[Flip, ...], tuple[Flip, ...], float | None]:
    """Return the images A gets right and B wrong, the reverse, and the top-1 agreement."""
    by_b = {image.index: image for image in b.images}
    ab: list[Flip] = []
    ba: list[Flip] = []
    same = total = 0
    for image in a.images:
        other = by_b.get(image.index)
        if other is None:
            continue
        pa, pb = image.prediction, other.prediction
        total += 1
        same += pa.predicted == pb.predicted
        if pa.label is None or pa.correct == pb.correct:
            continue
        flip = Flip(image.index, image.path, pa.label, pa.top[0], pb.top[0])
        (ab if pa.correct else ba).append(flip)
    # Most confident in the wrong answer first: the clearest flips lead.
    ab.sort(key=lambda f: (-f.b[1], f.index))
    ba.sort(key=lambda f: (-f.a[1], f.index))
    return tuple(ab), tuple(ba), (round(same / total, 6) if total else None)


@dataclass(frozen=True)
class Setup:
    """What the comparison is of: labels, alignment, the floor, filters and checkpoints."""

    labels: tuple[str, str]
    aligned: bool
    floor_note: str
    filters_a: Mapping[str, torch.Tensor]
    filters_b: Mapping[str, torch.Tensor]
    checkpoints: Sequence[tuple[str, Mapping[str, torch.Tensor]]] = ()
    warnings: Sequence[str] = ()


def compare(
    a: Report, b: Report, measured: DiffPass, setup: Setup, replicates: int = BOOTSTRAP
) -> Comparison:
    """State the comparison from the two reports, the pass's sums and both models' filters."""
    labels, aligned, floor_note = setup.labels, setup.aligned, setup.floor_note
    filters_a, filters_b, checkpoints = setup.filters_a, setup.filters_b, setup.checkpoints
    warnings = setup.warnings
    layers_b = {layer.conv.name: layer for layer in b.layers}
    found_a, found_b = _findings_by_layer(a), _findings_by_layer(b)
    changes: list[LayerChange] = []
    for layer in a.layers:
        name = layer.conv.name
        tap = measured.points[name]
        where: PointName = "activation" if tap.point == "activation" else "conv"
        point = layer.at(where)
        other = layers_b.get(name) if aligned else None
        main = measured.main.get(name)
        channels: tuple[ChannelChange, ...] = ()
        mean_drift = None
        if other is not None and name in filters_a and name in filters_b:
            cosine, relative = drift(filters_a[name], filters_b[name])
            correlation = channel_correlations(main) if main is not None else [None] * len(cosine)
            overlap = _overlap(layer, other, where)
            channels = tuple(
                ChannelChange(c, *values)
                for c, values in enumerate(zip(cosine, relative, correlation, overlap, strict=True))
            )
            mean_drift = mean_present(cosine)
        samples = int(main.count.sum()) if main is not None else 0
        changes.append(
            LayerChange(
                depth=layer.depth,
                name=name,
                point=point.label,
                cka=None if main is None else _rounded(pair_estimate(main, replicates)),
                null=_value(measured.null.get(name)),
                floor=_value(measured.floor.get(name)),
                samples=samples,
                channels=channels,
                mean_cosine_drift=mean_drift,
                dead_a=layer.dead_channels,
                dead_b=() if other is None else other.dead_channels,
                duplicates_a=len(layer.filters.duplicates),
                duplicates_b=0 if other is None else len(other.filters.duplicates),
                findings_a=found_a.get(name, ()),
                findings_b=found_b.get(name, ()) if other is not None else (),
            )
        )
    heatmap = (
        None if measured.minibatch is None else minibatch_estimates(measured.minibatch, replicates)
    )
    ab, ba, agreement = _flips(a, b)
    names = [layer.conv.name for layer in a.layers]
    history = _history(a, b, measured, names, filters_b, checkpoints, labels)
    if aligned:
        estimator = (
            "linear CKA with every spatial position of every image as a sample and the "
            "channels as features (Kornblith et al. 2019), summed exactly in float64"
        )
        groups = GROUPS
    else:
        estimator = (
            "unbiased minibatch CKA (Nguyen et al. 2021; HSIC of Song et al. 2012) on each "
            f"layer's flattened features, in chunks of {16} images taken in file order"
        )
        groups = min(measured.minibatch.chunks, 50) if measured.minibatch else 0
    return Comparison(
        a=a,
        b=b,
        label_a=labels[0],
        label_b=labels[1],
        aligned=aligned,
        estimator=estimator,
        groups=groups,
        replicates=replicates,
        level=LEVEL,
        floor_note=floor_note,
        layers=tuple(changes),
        heatmap=heatmap,
        layers_b=measured.layers_b,
        pairs_null=measured.pairs_null,
        agreement=agreement,
        flips_ab=ab,
        flips_ba=ba,
        checkpoints=history,
        warnings=tuple(warnings),
    )


def _top1_accuracy(report: Report, top1: Mapping[int, int]) -> float | None:
    labeled = [
        (i.index, i.prediction.label) for i in report.images if i.prediction.label is not None
    ]
    hits = [top1.get(index) == label for index, label in labeled if index in top1]
    return round(sum(hits) / len(hits), 6) if hits else None


def _history(
    a: Report,
    b: Report,
    measured: DiffPass,
    names: Sequence[str],
    final: Mapping[str, torch.Tensor],
    checkpoints: Sequence[tuple[str, Mapping[str, torch.Tensor]]],
    labels: tuple[str, str],
) -> tuple[Checkpoint, ...]:
    """Follow every checkpoint's CKA and filter drift to the final one (``--checkpoints``)."""
    if not checkpoints:
        return ()
    rows: list[Checkpoint] = []
    middle = list(zip(measured.middle, measured.middle_top1, strict=True))
    for position, (name, filters) in enumerate(checkpoints):
        if position == 0:
            sums, top1 = measured.main, {i.index: i.prediction.predicted for i in a.images}
        elif position == len(checkpoints) - 1:
            sums, top1 = {}, {i.index: i.prediction.predicted for i in b.images}
        else:
            sums, top1 = middle[position - 1]
        last = position == len(checkpoints) - 1
        rows.append(
            Checkpoint(
                name=name,
                cka=tuple(1.0 if last else _value(sums.get(n)) for n in names),
                drift=tuple(
                    mean_present(drift(filters[n], final[n])[0])
                    if n in filters and n in final
                    else None
                    for n in names
                ),
                top1=_top1_accuracy(a, top1),
            )
        )
    return tuple(rows)
