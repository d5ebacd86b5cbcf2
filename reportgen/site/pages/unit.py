"""A unit page: what one channel of one layer responds to, over the whole image folder."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from ...analysis.units import UnitChoice, purity
from ...report.facts import Example
from .. import urls
from ..layout import UNIT_DIM, UNIT_PX, UNIT_THRESHOLD, shows_field
from ..urls import Linker
from .common import Chrome, Fact, Link, PageContext, Picture, Verdict, num, pct, verdict
from .findings import FindingView, finding_views

__all__ = ["ClassBar", "UnitCard", "UnitPage", "unit_page"]


@dataclass(frozen=True)
class UnitCard:
    """One example of a channel: the image with the channel's region, and what it says."""

    picture: Picture | None  # None: not drawn, because pass 2 did not reproduce it
    field: Picture | None  # the receptive field around the peak, where small enough
    name: str
    link: Link | None  # the image's own page, when it has one
    value: str
    where: str  # the peak's row and column in the map
    truth: str
    verdict: Verdict
    level: str  # for a quantile example: "25%"
    missing: str  # why it is not drawn


@dataclass(frozen=True)
class ClassBar:
    """One true class among a channel's top examples."""

    name: str
    count: int
    share: str
    width: int  # percent of the bar


@dataclass(frozen=True)
class UnitPage:
    """The page of one channel of one layer."""

    chrome: Chrome
    layer: Link
    layer_name: str
    channel: int
    reasons: str
    point_label: str
    facts: tuple[Fact, ...]
    findings: tuple[FindingView, ...]
    filter: Picture | None
    top: tuple[UnitCard, ...]
    bottom: tuple[UnitCard, ...]
    bottom_point: str
    quantiles: tuple[UnitCard, ...]
    sample_size: int
    classes: tuple[ClassBar, ...]
    purity: str
    chance: str
    threshold: str
    dim: str
    field: str  # the layer's receptive field, in words
    field_shown: bool  # whether the top examples have crops of it
    size: int  # the thumbnails' longer side
    previous: Link | None
    next: Link | None


def _card(
    ctx: PageContext,
    linker: Linker,
    unit: UnitChoice,
    kind: str,
    rank: int,
    example: Example,
    level: str = "",
) -> UnitCard:
    r = ctx.report
    p = r.image(example.image).prediction
    name = ctx.image_label(example.image)
    asset = urls.unit_picture(unit.depth, unit.channel, kind, rank, ctx.ext)
    field_asset = urls.unit_picture(unit.depth, unit.channel, "field", rank, ctx.ext)
    drawn = asset in ctx.sizes
    missing = ""
    if not drawn:
        missed = ctx.mismatch(unit.depth, unit.channel, kind, rank)
        missing = (
            f"Not drawn: pass 2 gave {num(missed)} where pass 1 recorded {num(example.value)}."
            if missed is not None
            else "Not drawn."
        )
    what = "lowest value" if kind == "bottom" else "peak"
    return UnitCard(
        picture=ctx.picture(linker, asset, f"{name}, channel {unit.channel}'s {what} region")
        if drawn
        else None,
        field=ctx.picture(linker, field_asset, f"Receptive field of the peak in {name}")
        if kind == "top" and field_asset in ctx.sizes
        else None,
        name=name,
        link=ctx.image_link(linker, example.image),
        value=num(example.value),
        where=f"row {example.y}, column {example.x}",
        truth=r.class_name(p.label),
        verdict=verdict(p),
        level=level,
        missing=missing,
    )


def unit_page(ctx: PageContext, position: int) -> UnitPage:
    """Build the page of the ``position``-th chosen unit."""
    chosen = ctx.choices.units
    unit = chosen[position]
    r = ctx.report
    layer = r.layers[unit.depth]
    linker = ctx.base.for_page(urls.unit_page(unit.depth, unit.channel))
    record, conv = layer.at(ctx.choices.point), layer.conv_point
    units, c = record.units, unit.channel
    top = () if units is None or units.top is None else units.top[c]
    quantiles = () if units is None or units.quantiles is None else units.quantiles[c]
    bottom_rows = conv.units.bottom if conv.units is not None else None
    bottom = () if bottom_rows is None else bottom_rows[c]
    labels = ctx.labels
    share, label = purity(top, labels)
    counts = Counter(labels.get(e.image) for e in top)
    classes = tuple(
        ClassBar(
            r.class_name(cls) if cls is not None else "unlabeled",
            n,
            pct(n / len(top)),
            round(100 * n / len(top)),
        )
        for cls, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0] is None, kv[0] or 0))
    )
    labeled = r.accuracy.per_class  # the true classes present
    stats = record.stats
    facts = [
        Fact("Mean over all images and positions", num(stats.channel_mean[c])),
        Fact("Maximum over all images", num(stats.channel_max[c])),
    ]
    if record.positive is not None:
        facts.append(Fact("Share of positions above zero", pct(record.positive[c])))
    facts.append(Fact("Dead channel", "yes" if c in layer.dead_channels else "no"))
    copies = [b if a == c else a for a, b, _ in layer.filters.duplicates if c in (a, b)]
    facts.append(
        Fact(
            "Near-duplicate filter of",
            ", ".join(str(x) for x in copies) if copies else "none",
        )
    )
    field = layer.receptive_field
    field_text = "not measured (fed by a global pool only)"
    if field is not None:
        field_text = f"{'at least ' if field.at_least else ''}{field.height}×{field.width} pixels"
    side = int(r.model.input_size or 0)
    siblings = [u for u in chosen if u.depth == unit.depth]
    at = siblings.index(unit)

    def sibling(i: int, text: str) -> Link | None:
        if 0 <= i < len(siblings):
            other = siblings[i]
            href = linker.href(urls.unit_page(other.depth, other.channel))
            return Link(href, f"{text}: channel {other.channel}")
        return None

    return UnitPage(
        chrome=ctx.chrome(linker, "unit", f"{layer.conv.name}, channel {c} — featreport"),
        layer=Link(linker.href(urls.layer_page(unit.depth)), layer.conv.name),
        layer_name=layer.conv.name,
        channel=c,
        reasons="; ".join(unit.reasons),
        point_label=record.label,
        facts=tuple(facts),
        findings=finding_views(
            ctx,
            linker,
            [f for f in r.findings if f.layer == layer.conv.name and c in f.channels],
        ),
        filter=ctx.picture(
            linker,
            urls.unit_picture(unit.depth, c, "filter", 0, ctx.ext),
            f"Filter {c} of {layer.conv.name}",
            at_least=UNIT_PX,
        )
        if urls.unit_picture(unit.depth, c, "filter", 0, ctx.ext) in ctx.sizes
        else None,
        top=tuple(_card(ctx, linker, unit, "top", i, e) for i, e in enumerate(top)),
        bottom=tuple(_card(ctx, linker, unit, "bottom", i, e) for i, e in enumerate(bottom)),
        bottom_point=conv.label,
        quantiles=tuple(
            _card(ctx, linker, unit, "quantile", i, e, f"{level:.0%}")
            for i, (e, level) in enumerate(
                zip(quantiles, units.levels if units else (), strict=False)
            )
        ),
        sample_size=units.sample_size if units else 0,
        classes=classes,
        purity=f"{share:.0%} {r.class_name(label)}" if label is not None else "—",
        chance=pct(1 / len(labeled)) if labeled else "—",
        threshold=f"{UNIT_THRESHOLD:.0%}",
        dim=f"{UNIT_DIM:.0%}",
        field=field_text,
        field_shown=field is not None and side > 0 and shows_field(field.height, side),
        size=UNIT_PX,
        previous=sibling(at - 1, "Previous unit"),
        next=sibling(at + 1, "Next unit"),
    )
