"""The filters page, ``filters.html``, and the filter view that layer pages share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .. import urls
from ..layout import FILTER_GRID_PX, FILTERS_SHOWN
from ..urls import Linker
from .common import ChannelList, Chrome, Fact, Link, PageContext, Picture, shape_text

__all__ = ["FilterView", "FiltersPage", "filter_view", "filters_page"]

PAIRS_LISTED = 30


@dataclass(frozen=True)
class FilterView:
    """One layer's filters: the grid, the norm chart, and which are dead or duplicated."""

    anchor: str
    link: Link
    picture: Picture
    shown: int
    out_channels: int
    tiles: Literal["rgb", "single", "averaged"]  # how a filter becomes a tile
    kernel: str
    inputs: int  # input channels each filter reads
    norm_chart: Picture
    dead: ChannelList  # a filter's index is its output channel's
    compared: bool  # False when filters are too small to compare
    duplicates: str  # the near-duplicate pairs, or "none"
    pairs: int
    pairs_listed: int


def filter_view(ctx: PageContext, linker: Linker, depth: int) -> FilterView:
    """Describe layer ``depth``'s filters for a page."""
    layer = ctx.report.layers[depth]
    conv, filters = layer.conv, layer.filters
    inputs = conv.in_channels // conv.groups
    tiles: Literal["rgb", "single", "averaged"] = (
        "rgb" if conv.rgb_filters else ("single" if inputs == 1 else "averaged")
    )
    listed = filters.duplicates[:PAIRS_LISTED]
    return FilterView(
        anchor=linker.anchor(urls.layer_anchor(depth)),
        link=Link(linker.href(urls.layer_page(depth)), conv.name),
        picture=ctx.picture(
            linker,
            urls.filter_picture(depth, ctx.ext),
            f"Filters of {conv.name}",
            at_least=FILTER_GRID_PX,
        ),
        shown=min(conv.out_channels, FILTERS_SHOWN),
        out_channels=conv.out_channels,
        tiles=tiles,
        kernel=shape_text(conv.kernel_size),
        inputs=inputs,
        norm_chart=ctx.picture(
            linker,
            urls.norm_chart_picture(depth),
            f"Weight L2 norm of each of the {conv.out_channels} filters of {conv.name}",
        ),
        dead=ctx.channel_list(linker, depth, filters.dead),
        compared=filters.compared,
        duplicates="; ".join(f"{a}–{c} (cos {s:.3f})" for a, c, s in listed) or "none",
        pairs=len(filters.duplicates),
        pairs_listed=len(listed),
    )


@dataclass(frozen=True)
class FiltersPage:
    """Every layer's filters, shallow to deep."""

    chrome: Chrome
    layers: tuple[FilterView, ...]
    toc: tuple[Link, ...]
    definitions: tuple[Fact, ...]


def filters_page(ctx: PageContext) -> FiltersPage:
    """Build the filters page."""
    linker = ctx.base.for_page(urls.FILTERS)
    definitions = dict(ctx.report.definitions)
    return FiltersPage(
        chrome=ctx.chrome(linker, "filters", f"Filters — {ctx.report.model.name}"),
        layers=tuple(filter_view(ctx, linker, layer.depth) for layer in ctx.report.layers),
        toc=tuple(
            Link(linker.href(urls.FILTERS, urls.layer_anchor(layer.depth)), layer.conv.name)
            for layer in ctx.report.layers
        ),
        definitions=tuple(
            Fact(k.replace("_", " "), definitions[k]) for k in ("dead_filter", "duplicate_filters")
        ),
    )
