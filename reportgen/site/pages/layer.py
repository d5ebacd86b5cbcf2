"""One conv layer's page: its settings, filters, channel statistics and example maps."""

from __future__ import annotations

from dataclasses import dataclass

from .. import urls
from ..layout import strongest_channels
from .common import (
    Chrome,
    Fact,
    Link,
    PageContext,
    Picture,
    Verdict,
    index_list,
    num,
    pct,
    shape_text,
    verdict,
)
from .filters import FilterView, filter_view

__all__ = ["ExampleMaps", "LayerPage", "layer_page"]


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
    channels: str  # the channels shown, strongest first


@dataclass(frozen=True)
class LayerPage:
    """A conv layer's page."""

    chrome: Chrome
    name: str
    depth: int
    facts: tuple[Fact, ...]
    filters: FilterView
    chart: Picture
    dead: str
    strongest: str
    examples: tuple[ExampleMaps, ...]
    shown: int  # channels per grid
    out_channels: int
    previous: Link | None
    next: Link | None


def _facts(ctx: PageContext, depth: int) -> list[Fact]:
    r = ctx.report
    layer = r.layers[depth]
    conv, stats = layer.conv, layer.stats
    facts = [
        Fact("Depth", f"{depth + 1} of {len(r.layers)} (forward order)"),
        Fact("Type", conv.type),
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
        Fact(
            "Activation range",
            f"{num(stats.activation_min)} to {num(stats.activation_max)} over all images",
        ),
        Fact("Dead channels", f"{len(stats.dead_channels)} of {conv.out_channels}"),
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
    conv, stats = layer.conv, layer.stats
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
                channels=ctx.channels(index, depth),
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
        filters=filter_view(ctx, linker, depth),
        chart=ctx.picture(
            linker,
            urls.channel_chart_picture(depth),
            f"Mean and maximum activation of each of the {conv.out_channels} channels of {conv.name}",
        ),
        dead=index_list(stats.dead_channels),
        strongest=index_list(strongest_channels(stats, ctx.choices.max_channels)),
        examples=tuple(examples),
        shown=ctx.shown_channels(depth),
        out_channels=conv.out_channels,
        previous=neighbour(depth - 1, "Shallower"),
        next=neighbour(depth + 1, "Deeper"),
    )
