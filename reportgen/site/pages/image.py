"""One showcased image's page: its prediction, then its maps at every conv layer."""

from __future__ import annotations

from dataclasses import dataclass

from .. import urls
from .common import (
    CamView,
    ChannelList,
    Chrome,
    Link,
    PageContext,
    Picture,
    Verdict,
    pct,
    shape_text,
    verdict,
)

__all__ = ["ImagePage", "LayerView", "TopEntry", "image_page"]


@dataclass(frozen=True)
class TopEntry:
    """One of the top five predictions."""

    name: str
    probability: str
    value: float  # 0–1, for the bar
    is_truth: bool


@dataclass(frozen=True)
class LayerView:
    """One layer's maps for this image."""

    anchor: str
    depth: int
    link: Link
    shape: str
    mean: Picture
    grid: Picture
    shown: int  # channels in the grid
    out_channels: int
    channels: ChannelList  # the channels shown, in rank order
    point_label: str  # where the maps were measured


@dataclass(frozen=True)
class ImagePage:
    """A showcased image's page."""

    chrome: Chrome
    name: str
    input: Picture
    verdict: Verdict
    predicted: str
    confidence: str
    truth: str
    top: tuple[TopEntry, ...]
    cams: tuple[CamView, ...]
    cam_rule: str  # method, layer, point and resolution; empty without maps
    cam_anchor: str
    cam_check: str  # the sanity check's result, in words; empty without one
    cam_check_failed: bool
    cam_inside: str  # the share of the map on the object, or what --masks would add
    rank: str  # "relative" or "mean"
    layers: tuple[LayerView, ...]
    toc: tuple[Link, ...]
    previous: Link | None
    next: Link | None


def image_page(ctx: PageContext, position: int) -> ImagePage:
    """Build the page of the ``position``-th showcased image."""
    r = ctx.report
    showcase = ctx.choices.selection.showcase
    index = showcase[position]
    page = urls.image_page(index)
    linker = ctx.base.for_page(page)
    p = r.image(index).prediction
    name = ctx.image_label(index)
    views = tuple(
        LayerView(
            anchor=linker.anchor(urls.layer_anchor(layer.depth)),
            depth=layer.depth + 1,
            link=Link(linker.href(urls.layer_page(layer.depth)), layer.conv.name),
            shape=shape_text(layer.at(ctx.choices.point).stats.output_shape),
            mean=ctx.mean_map(linker, index, layer.depth),
            grid=ctx.grid(linker, index, layer.depth),
            shown=ctx.shown_channels(layer.depth),
            out_channels=layer.conv.out_channels,
            channels=ctx.channels(linker, index, layer.depth),
            point_label=ctx.point_label(layer.depth),
        )
        for layer in r.layers
    )
    check, failed = ctx.cam_check(index)
    top = tuple(TopEntry(r.class_name(c), pct(v), round(v, 4), c == p.label) for c, v in p.top)

    def neighbour(offset: int, text: str) -> Link | None:
        other = position + offset
        if 0 <= other < len(showcase):
            return Link(
                linker.href(urls.image_page(showcase[other])),
                f"{text}: {ctx.image_label(showcase[other])}",
            )
        return None

    return ImagePage(
        chrome=ctx.chrome(linker, "image", f"{name} — featreport"),
        name=name,
        input=ctx.input_picture(linker, index),
        verdict=verdict(p),
        predicted=r.class_name(p.predicted),
        confidence=pct(p.confidence),
        truth=r.class_name(p.label),
        top=top,
        cams=ctx.cam_views(linker, index),
        cam_rule=ctx.cam_rule(),
        cam_anchor=linker.anchor("where-it-looked"),
        cam_check=check,
        cam_check_failed=failed,
        cam_inside=ctx.cam_inside(index),
        rank=ctx.choices.rank,
        layers=views,
        toc=tuple(
            Link(linker.href(page, urls.layer_anchor(layer.depth)), layer.conv.name)
            for layer in r.layers
        ),
        previous=neighbour(-1, "Previous image"),
        next=neighbour(1, "Next image"),
    )
