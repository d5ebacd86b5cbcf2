"""The diff's page model: every number formatted and every rule stated, for the template."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..report.facts import Report
from ..site.pages.common import Fact, Picture, index_list, pct
from .cka import Estimate
from .facts import ChannelChange, Comparison, Flip, LayerChange, mean_present

__all__ = ["DiffPage", "diff_page"]

MOVED_LISTED = 8  # channels per layer in the "moved most" table
CHANNELS_LISTED = 12  # dead channels named per layer
CONFUSION_LISTED = 20


@dataclass(frozen=True)
class ChannelRow:
    """One channel among those that moved most."""

    channel: int
    cosine_drift: str
    relative_change: str
    correlation: str
    top_overlap: str


@dataclass(frozen=True)
class LayerRow:
    """One layer's row of the comparison table."""

    depth: int
    name: str
    point: str
    cka: str
    interval: str
    null: str
    floor: str
    verdict: str  # how the value reads against its references
    css: str
    drift: str
    dead: str
    duplicates: str
    findings: str
    moved: tuple[ChannelRow, ...]


@dataclass(frozen=True)
class ClassRow:
    """One class's accuracy under A and B."""

    name: str
    images: int
    top1_a: str
    top1_b: str
    change: str
    css: str


@dataclass(frozen=True)
class ConfusionRow:
    """One (true, predicted) pair counted under A and B."""

    true: str
    predicted: str
    a: int
    b: int
    change: str


@dataclass(frozen=True)
class FlipCard:
    """An image one model gets right and the other wrong."""

    picture: Picture | None
    cam_a: Picture | None
    cam_b: Picture | None
    path: str
    truth: str
    a: str
    b: str


@dataclass(frozen=True)
class FlipGroup:
    """The flips in one direction: cards, and the rest listed."""

    title: str
    count: int
    cards: tuple[FlipCard, ...]
    listed: tuple[FlipCard, ...]


@dataclass(frozen=True)
class HeatmapCell:
    """One value of the heatmap's table, and whether it is its row's largest."""

    text: str
    best: bool


@dataclass(frozen=True)
class HeatmapRow:
    """One layer of A against every layer of B, as numbers."""

    name: str
    cells: tuple[HeatmapCell, ...]


def _heatmap_rows(c: Comparison) -> tuple[HeatmapRow, ...]:
    if c.heatmap is None:
        return ()
    rows = []
    for layer, values, low, high in zip(
        c.layers, c.heatmap.value, c.heatmap.low, c.heatmap.high, strict=True
    ):
        best = max((v for v in values if v is not None), default=None)
        cells = tuple(
            HeatmapCell(
                "—"
                if v is None
                else (f"{v:.2f}" if lo is None else f"{v:.2f} ({lo:.2f}–{hi:.2f})"),
                v is not None and v == best,
            )
            for v, lo, hi in zip(values, low, high, strict=True)
        )
        rows.append(HeatmapRow(layer.name, cells))
    return tuple(rows)


@dataclass(frozen=True)
class CheckpointRow:
    """One checkpoint of the training run."""

    position: int
    name: str
    top1: str
    cka_mean: str
    drift_mean: str
    filters: Picture | None


@dataclass(frozen=True)
class DiffPage:
    """Everything the diff page shows."""

    title: str
    label_a: str
    label_b: str
    summary: tuple[str, ...]
    facts: tuple[Fact, ...]
    aligned: bool
    cka_chart: Picture | None
    cka_caption: str
    layers: tuple[LayerRow, ...]
    heatmap: Picture | None
    heatmap_caption: str
    layers_a: tuple[str, ...]
    layers_b: tuple[str, ...]
    heatmap_rows: tuple[HeatmapRow, ...]
    filters_a: Picture | None
    filters_b: Picture | None
    filters_caption: str
    behaviour: tuple[Fact, ...]
    classes: tuple[ClassRow, ...]
    confusion: tuple[ConfusionRow, ...]
    confusion_total: int
    flips: tuple[FlipGroup, ...]
    checkpoints: tuple[CheckpointRow, ...]
    training_cka: Picture | None
    training_drift: Picture | None
    training_caption: str
    warnings: tuple[str, ...]
    skipped: tuple[Fact, ...]


def _listed(channels: Sequence[int]) -> str:
    return index_list(channels, CHANNELS_LISTED)


def _num(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _verdict(layer: LayerChange) -> tuple[str, str]:
    """Say how a layer's CKA reads against its shuffled reference and its floor."""
    cka = layer.cka
    if cka is None:
        return "not measured (the forward pass did not call it)", "muted"
    if cka.value is None:
        return "undefined: constant in A or in B at this point", "muted"
    low = cka.low if cka.low is not None else cka.value
    if layer.null is not None and low <= layer.null + 0.05:
        return "no more alike than unrelated images", "bad"
    if layer.floor is not None and cka.value <= layer.floor:
        return "no more alike than an untrained network", "warn"
    if cka.value >= 0.9:
        return "nearly the same", "good"
    return "changed", "warn"


def _moved(channels: Sequence[ChannelChange]) -> tuple[ChannelRow, ...]:
    ranked = sorted(
        (c for c in channels if c.cosine_drift is not None),
        key=lambda c: (-(c.cosine_drift or 0.0), c.channel),
    )
    return tuple(
        ChannelRow(
            c.channel,
            _num(c.cosine_drift),
            _num(c.relative_change),
            _num(c.correlation),
            pct(c.top_overlap),
        )
        for c in ranked[:MOVED_LISTED]
    )


def _layer_row(layer: LayerChange, aligned: bool) -> LayerRow:
    verdict, css = _verdict(layer)
    cka = layer.cka or Estimate(None)
    findings_a, findings_b = set(layer.findings_a), set(layer.findings_b)
    changed = [f"+{k} in B" for k in sorted(findings_b - findings_a)] + [
        f"−{k} in B" for k in sorted(findings_a - findings_b)
    ]
    dead = (
        f"{_listed(layer.dead_a)} → {_listed(layer.dead_b)}" if aligned else _listed(layer.dead_a)
    )
    return LayerRow(
        depth=layer.depth,
        name=layer.name,
        point=layer.point,
        cka=_num(cka.value),
        interval="—" if cka.low is None else f"{cka.low:.3f}–{cka.high:.3f}",
        null=_num(layer.null),
        floor=_num(layer.floor),
        verdict=verdict,
        css=css,
        drift=_num(layer.mean_cosine_drift),
        dead=dead if (layer.dead_a or layer.dead_b) else "none",
        duplicates=f"{layer.duplicates_a} → {layer.duplicates_b}"
        if aligned
        else str(layer.duplicates_a),
        findings="; ".join(changed) or "unchanged",
        moved=_moved(layer.channels),
    )


def _summary(c: Comparison) -> tuple[str, ...]:
    lines: list[str] = []
    if c.aligned:
        rows = [row for row in c.layers if row.cka is not None and row.cka.value is not None]
        apart = [row for row in rows if _verdict(row)[1] == "bad"]
        same = [row for row in rows if _verdict(row)[1] == "good"]
        least = sorted(rows, key=lambda row: row.cka.value)[:3]  # type: ignore[union-attr,return-value,arg-type]
        lines.append(
            f"Of {len(rows)} conv layers, {len(same)} are nearly the same in A and B "
            f"(CKA ≥ 0.9) and {len(apart)} are no more alike than unrelated images "
            "(the interval reaches the shuffled reference)."
        )
        if least:
            lines.append(
                "Least similar: "
                + "; ".join(f"{row.name} {row.cka.value:.3f}" for row in least)  # type: ignore[union-attr]
                + "."
            )
        moved = sorted(
            (row for row in c.layers if row.mean_cosine_drift is not None),
            key=lambda row: -(row.mean_cosine_drift or 0.0),
        )[:3]
        if moved:
            lines.append(
                "Filters moved most (mean 1 − cosine): "
                + "; ".join(f"{row.name} {row.mean_cosine_drift:.3f}" for row in moved)
                + "."
            )
    elif c.heatmap is not None:
        lines.append(
            f"Different architectures: every layer of A against every layer of B, over "
            f"{c.heatmap.chunks} chunks of images."
        )
    flips = len(c.flips_ab) + len(c.flips_ba)
    lines.append(
        f"Top-1 agreement {pct(c.agreement)}; {len(c.flips_ab)} image(s) A gets right and B "
        f"wrong, {len(c.flips_ba)} the reverse ({flips} flips)."
    )
    return tuple(lines)


def _class_rows(a: Report, b: Report) -> tuple[ClassRow, ...]:
    per_b = {x.index: x for x in b.accuracy.per_class}
    rows = []
    for x in a.accuracy.per_class:
        y = per_b.get(x.index)
        change = None if y is None else y.top1 - x.top1
        rows.append(
            ClassRow(
                name=a.class_name(x.index),
                images=x.images,
                top1_a=pct(x.top1),
                top1_b=pct(None if y is None else y.top1),
                change="—" if change is None else f"{100 * change:+.1f}",
                css="good" if change and change > 0 else ("bad" if change and change < 0 else ""),
            )
        )
    return tuple(rows)


def _confusion(a: Report, b: Report) -> tuple[tuple[ConfusionRow, ...], int]:
    counts_a = {(t, p): n for t, p, n in a.accuracy.confusion if t != p}
    counts_b = {(t, p): n for t, p, n in b.accuracy.confusion if t != p}
    keys = sorted(
        set(counts_a) | set(counts_b),
        key=lambda k: (-abs(counts_b.get(k, 0) - counts_a.get(k, 0)), k),
    )
    changed = [k for k in keys if counts_a.get(k, 0) != counts_b.get(k, 0)]
    rows = tuple(
        ConfusionRow(
            a.class_name(t),
            a.class_name(p),
            counts_a.get((t, p), 0),
            counts_b.get((t, p), 0),
            f"{counts_b.get((t, p), 0) - counts_a.get((t, p), 0):+d}",
        )
        for t, p in changed[:CONFUSION_LISTED]
    )
    return rows, len(changed)


def _flip_card(
    flip: Flip, c: Comparison, ext: str, sizes: Mapping[str, tuple[int, int]]
) -> FlipCard:
    index = flip.index
    return FlipCard(
        picture=_picture(f"images/img-{index:05d}.{ext}", sizes, flip.path),
        cam_a=_picture(
            f"cams/a-{index:05d}.{ext}", sizes, f"Where A looked for {c.a.class_name(flip.a[0])}"
        ),
        cam_b=_picture(
            f"cams/b-{index:05d}.{ext}", sizes, f"Where B looked for {c.b.class_name(flip.b[0])}"
        ),
        path=flip.path,
        truth=c.a.class_name(flip.label),
        a=f"{c.a.class_name(flip.a[0])} {pct(flip.a[1])}",
        b=f"{c.b.class_name(flip.b[0])} {pct(flip.b[1])}",
    )


def _flip_groups(
    c: Comparison, ext: str, sizes: Mapping[str, tuple[int, int]], shown: int
) -> tuple[FlipGroup, ...]:
    groups = []
    for title, flips in (
        ("A right, B wrong", c.flips_ab),
        ("A wrong, B right", c.flips_ba),
    ):
        cards = tuple(_flip_card(f, c, ext, sizes) for f in flips)
        groups.append(FlipGroup(title, len(flips), cards[:shown], cards[shown:]))
    return tuple(groups)


def _picture(path: str, sizes: Mapping[str, tuple[int, int]], alt: str) -> Picture | None:
    if path not in sizes:
        return None
    width, height = sizes[path]
    return Picture(path, width, height, alt)


def diff_page(
    c: Comparison, ext: str, sizes: Mapping[str, tuple[int, int]], shown: int = 24
) -> DiffPage:
    """Build the diff page's model from the comparison and what was drawn."""
    point = c.layers[0].point if c.layers else "—"
    facts = [
        Fact("Model A", c.label_a),
        Fact("Model B", c.label_b),
        Fact("Images", f"{len(c.a.images)} read, {len(c.a.skipped)} skipped"),
        Fact("Both models were fed", f"A's preprocessing: {c.a.model.preprocessing}"),
        Fact("Estimator", c.estimator),
        Fact(
            "Interval",
            f"{round(100 * c.level)}% bootstrap percentile interval, {c.replicates} resamples of "
            + (
                f"{c.groups} groups of images (image i in group i mod {c.groups})"
                if c.aligned
                else f"{c.groups} groups of chunks"
            ),
        ),
        Fact(
            "Shuffled reference",
            f"the same two models with B fed a seeded derangement of the images (image i of A "
            f"paired with another image in B; {c.pairs_null} pairs): near 0 means unrelated"
            if c.aligned
            else "each chunk's images in B rotated by one against A",
        ),
        Fact("Floor of meaning", f"CKA of A against {c.floor_note}"),
    ]
    cka_caption = (
        f"Linear CKA between A and B per conv layer, measured {point} in both (the layer's "
        "last point: after its norm and activation where it has them), shallow layers left. "
        f"Blue dot: CKA over all images; blue bar: its {round(100 * c.level)}% bootstrap "
        "interval; grey dash: the shuffled reference (should be near 0); orange diamond: "
        "the floor of meaning, A against a random initialisation. A layer reads as changed "
        "when its dot is well below 1, and as meaningful only above both references."
    )
    heatmap = _picture(
        "charts/heatmap.svg", sizes, "Minibatch CKA of every layer of A against every layer of B"
    )
    filters_a = _picture(f"filters/a.{ext}", sizes, "First-layer filters of A")
    filters_b = _picture(f"filters/b.{ext}", sizes, "First-layer filters of B")
    confusion, confusion_total = _confusion(c.a, c.b)
    behaviour = (
        Fact("Top-1 accuracy", f"A {pct(c.a.accuracy.top1)} · B {pct(c.b.accuracy.top1)}"),
        Fact("Top-5 accuracy", f"A {pct(c.a.accuracy.top5)} · B {pct(c.b.accuracy.top5)}"),
        Fact("Labelled images", str(c.a.accuracy.labeled)),
        Fact("Top-1 agreement", f"{pct(c.agreement)} of images get the same top class from both"),
    )
    checkpoints = tuple(
        CheckpointRow(
            position=i + 1,
            name=cp.name,
            top1=pct(cp.top1),
            cka_mean=_num(mean_present(cp.cka)),
            drift_mean=_num(mean_present(cp.drift)),
            filters=_picture(
                f"filters/checkpoint-{i:03d}.{ext}", sizes, f"First-layer filters at {cp.name}"
            ),
        )
        for i, cp in enumerate(c.checkpoints)
    )
    return DiffPage(
        title=f"featreport diff — {c.label_a} vs {c.label_b}",
        label_a=c.label_a,
        label_b=c.label_b,
        summary=_summary(c),
        facts=tuple(facts),
        aligned=c.aligned,
        cka_chart=_picture(
            "charts/cka.svg", sizes, "CKA per layer with its interval and references"
        )
        or _picture(
            "charts/floor.svg", sizes, "CKA of A against a random initialisation, per layer"
        ),
        cka_caption=cka_caption
        if c.aligned
        else "Orange diamond: linear CKA of each layer of A against a random initialisation "
        f"of A (the floor of meaning), measured {point}.",
        layers=tuple(_layer_row(row, c.aligned) for row in c.layers),
        heatmap=heatmap,
        heatmap_caption="Unbiased minibatch CKA (chunks of 16 images in file order, a last "
        "chunk of at least 4 counts) of every layer of A (rows, shallow at the top) against "
        "every layer of B (columns, shallow left), each layer's output flattened; viridis "
        "from 0 (dark) to 1 (yellow), values clipped to that range for colour only.",
        layers_a=tuple(row.name for row in c.layers),
        layers_b=c.layers_b,
        heatmap_rows=_heatmap_rows(c),
        filters_a=filters_a,
        filters_b=filters_b,
        filters_caption="The first conv layer's filters (up to 64), each tile scaled to its "
        "own min–max (colour where the layer reads RGB pixels, else the mean over its inputs "
        "in grey), A left and B right, in channel order so the same tile is the same filter.",
        behaviour=behaviour,
        classes=_class_rows(c.a, c.b),
        confusion=confusion,
        confusion_total=confusion_total,
        flips=_flip_groups(c, ext, sizes, shown),
        checkpoints=checkpoints,
        training_cka=_picture(
            "charts/training-cka.svg", sizes, "CKA to the final checkpoint per layer"
        ),
        training_drift=_picture(
            "charts/training-drift.svg",
            sizes,
            "Mean filter drift to the final checkpoint per layer",
        ),
        training_caption="One line per conv layer (viridis: dark purple the shallowest, yellow the deepest), one point per "
        "checkpoint in training order. Left: linear CKA of each checkpoint's layer to the same "
        "layer of the final checkpoint, on these images (1 at the last). Right: the mean over "
        "the layer's filters of 1 − cosine between the checkpoint's filter and the final one.",
        warnings=c.warnings,
        skipped=tuple(Fact(s.rel, s.reason) for s in c.a.skipped),
    )
