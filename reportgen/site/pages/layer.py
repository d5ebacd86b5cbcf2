"""One conv layer's page: its settings, filters, channel statistics and example maps."""

from __future__ import annotations

from dataclasses import dataclass

from ...analysis.rules import GATING_ACTIVATIONS
from ...report.facts import LayerRecord
from .. import urls
from ..layout import strongest_channels
from ..urls import Linker
from .common import (
    ChannelList,
    ChannelRef,
    Chrome,
    Fact,
    Link,
    PageContext,
    Picture,
    Verdict,
    num,
    pct,
    shape_text,
    verdict,
)
from .filters import FilterView, filter_view
from .findings import CHANNEL_ANCHOR, FINDINGS_ANCHOR, FindingView, finding_views

__all__ = ["CorrelatedPair", "ExampleMaps", "LayerPage", "PointRow", "UnitRow", "layer_page"]

SHEET_EXAMPLES = 5  # top examples per channel on a layer page's sheet


@dataclass(frozen=True)
class UnitRow:
    """One channel with a unit page, on its layer's sheet: its top few examples in a row."""

    link: Link
    reasons: str
    pictures: tuple[Picture, ...]


@dataclass(frozen=True)
class ExampleMaps:
    """One showcased image's maps at this layer."""

    link: Link
    verdict: Verdict
    predicted: str
    confidence: str
    truth: str
    input: Picture
    mean: Picture
    grid: Picture
    channels: ChannelList  # the channels shown, highest ranked first


@dataclass(frozen=True)
class CorrelatedPair:
    """Two channels of the layer whose activations correlate, each linked to its unit page."""

    a: ChannelRef
    b: ChannelRef
    rho: str


@dataclass(frozen=True)
class PointRow:
    """One measurement point of the layer in the points table."""

    label: str  # "conv output", "after BatchNorm2d and ReLU"
    shown: bool  # the point the charts and maps show
    range: str
    constant: int
    positive: str  # median share of positive values over channels
    never_positive: int


@dataclass(frozen=True)
class LayerPage:
    """A conv layer's page."""

    chrome: Chrome
    name: str
    depth: int
    facts: tuple[Fact, ...]
    findings: tuple[FindingView, ...]
    findings_anchor: str
    channels_anchor: str
    points: tuple[PointRow, ...]
    point_label: str  # where the chart and the maps are measured
    rank: str  # "relative" or "mean"
    filters: FilterView
    chart: Picture
    dead: ChannelList
    silent: ChannelList
    gating: bool  # whether the layer has a ReLU-like activation, so silence means something
    correlated: tuple[CorrelatedPair, ...]  # at most 30, strongest first
    correlated_total: int
    correlated_samples: str
    correlation_point: str
    strongest: ChannelList
    examples: tuple[ExampleMaps, ...]
    shown: int  # channels per grid
    out_channels: int
    previous: Link | None
    next: Link | None
    units: tuple[UnitRow, ...]
    unit_point: str
    unit_examples: int  # top examples kept per channel in pass 1


def _sheet(ctx: PageContext, linker: Linker, depth: int) -> tuple[UnitRow, ...]:
    rows = []
    for unit in ctx.choices.units:
        if unit.depth != depth:
            continue
        pictures = []
        for rank in range(SHEET_EXAMPLES):
            asset = urls.unit_picture(depth, unit.channel, "top", rank, ctx.ext)
            if asset in ctx.sizes:
                pictures.append(
                    ctx.picture(linker, asset, f"Top example {rank + 1} of channel {unit.channel}")
                )
        rows.append(
            UnitRow(
                Link(linker.href(urls.unit_page(depth, unit.channel)), f"channel {unit.channel}"),
                "; ".join(unit.reasons),
                tuple(pictures),
            )
        )
    return tuple(rows)


def _block(layer: LayerRecord) -> str:
    block, parts = layer.block, []
    if block.norm is not None:
        parts.append(f"{block.norm.name} ({block.norm.type})")
    if block.activation is not None:
        parts.append(f"{block.activation} ({block.activation_type})")
    return ", then ".join(parts) or "none found (absent, or called as a function)"


def _points(layer: LayerRecord, shown: str) -> tuple[PointRow, ...]:
    rows = []
    for record in layer.points:
        shares = sorted(record.positive or ())
        rows.append(
            PointRow(
                label=record.label,
                shown=record.point == shown,
                range=f"{num(record.stats.activation_min)} to {num(record.stats.activation_max)}",
                constant=len(record.stats.constant),
                positive=pct(shares[len(shares) // 2]) if shares else "—",
                never_positive=sum(high <= 0 for high in record.moments.max),
            )
        )
    return tuple(rows)


def _facts(ctx: PageContext, depth: int) -> list[Fact]:
    r = ctx.report
    layer = r.layers[depth]
    conv, stats = layer.conv, layer.conv_point.stats
    facts = [
        Fact("Depth", f"{depth + 1} of {len(r.layers)} (forward order)"),
        Fact("Type", conv.type + (f": {conv.note}" if conv.note else "")),
        Fact("Kernel", shape_text(conv.kernel_size)),
        Fact("Stride", shape_text(conv.stride)),
        Fact("Padding", conv.padding),
        Fact("Dilation", shape_text(conv.dilation)),
        Fact("Groups", f"{conv.groups}" + (" (depthwise)" if conv.depthwise else "")),
        Fact("In / out channels", f"{conv.in_channels} / {conv.out_channels}"),
        Fact(
            "Output shape",
            f"{shape_text(stats.output_shape)} (channels × height × width, one image)",
        ),
        Fact("Norm and activation", _block(layer)),
        Fact("Dead channels", f"{len(layer.dead_channels)} of {conv.out_channels}"),
    ]
    if layer.calls_per_forward > 1:
        facts.append(
            Fact(
                "Calls per forward",
                f"{layer.calls_per_forward}; statistics and maps record the first call only",
            )
        )
    return facts


def layer_page(ctx: PageContext, depth: int) -> LayerPage:
    """Build the page of the layer at ``depth``."""
    r = ctx.report
    linker = ctx.base.for_page(urls.layer_page(depth))
    layer = r.layers[depth]
    conv, stats = layer.conv, layer.at(ctx.choices.point).stats
    corr = layer.correlations
    examples = []
    for index in ctx.choices.selection.showcase:
        p = r.image(index).prediction
        examples.append(
            ExampleMaps(
                link=Link(
                    linker.href(urls.image_page(index), urls.layer_anchor(depth)),
                    ctx.image_label(index),
                ),
                verdict=verdict(p),
                predicted=r.class_name(p.predicted),
                confidence=pct(p.confidence),
                truth=r.class_name(p.label),
                input=ctx.input_picture(linker, index),
                mean=ctx.mean_map(linker, index, depth),
                grid=ctx.grid(linker, index, depth),
                channels=ctx.channels(linker, index, depth),
            )
        )

    def neighbour(other: int, text: str) -> Link | None:
        if 0 <= other < len(r.layers):
            return Link(linker.href(urls.layer_page(other)), f"{text}: {r.layers[other].conv.name}")
        return None

    return LayerPage(
        chrome=ctx.chrome(linker, "layer", f"{conv.name} — featreport"),
        name=conv.name,
        depth=depth + 1,
        facts=tuple(_facts(ctx, depth)),
        findings=finding_views(ctx, linker, [f for f in r.findings if f.layer == conv.name]),
        findings_anchor=linker.anchor(FINDINGS_ANCHOR),
        channels_anchor=linker.anchor(CHANNEL_ANCHOR),
        points=_points(layer, layer.at(ctx.choices.point).point),
        point_label=ctx.point_label(depth),
        rank=ctx.choices.rank,
        filters=filter_view(ctx, linker, depth),
        chart=ctx.picture(
            linker,
            urls.channel_chart_picture(depth),
            f"Mean and maximum of each of the {conv.out_channels} channels of {conv.name}, "
            f"{ctx.point_label(depth)}",
        ),
        dead=ctx.channel_list(linker, depth, layer.dead_channels),
        silent=ctx.channel_list(
            linker, depth, tuple(c for c in layer.silent if c not in set(layer.dead_channels))
        ),
        gating=layer.block.activation_type in GATING_ACTIVATIONS,
        correlated=tuple(
            CorrelatedPair(
                ChannelRef(str(a), ctx.unit_href(linker, depth, a)),
                ChannelRef(str(b), ctx.unit_href(linker, depth, b)),
                f"{rho:.3f}",
            )
            for a, b, rho in (corr.pairs[:30] if corr else ())
        ),
        correlated_total=corr.total if corr else 0,
        correlated_samples=f"{corr.samples:,}" if corr else "0",
        correlation_point=(layer.block.label if corr.point == "activation" else "conv output")
        if corr
        else "",
        strongest=ctx.channel_list(
            linker, depth, strongest_channels(stats, ctx.choices.max_channels)
        ),
        examples=tuple(examples),
        shown=ctx.shown_channels(depth),
        out_channels=conv.out_channels,
        previous=neighbour(depth - 1, "Shallower"),
        next=neighbour(depth + 1, "Deeper"),
        units=_sheet(ctx, linker, depth),
        unit_point=layer.at(ctx.choices.point).label,
        unit_examples=_kept(layer),
    )


def _kept(layer: LayerRecord) -> int:
    units = layer.conv_point.units or (layer.activation.units if layer.activation else None)
    rows = (units.top or units.bottom) if units is not None else None
    return len(rows[0]) if rows else 0
