"""Unit pages' pictures: which examples each chosen channel shows, checked and drawn.

The plan lists, for every chosen channel, its top examples and its quantile examples at
the point the pages show, and its bottom examples at the conv output (the most negative
responses, before an activation clips them). Pass 2 recomputes each example's map; an
example whose recomputed maximum (minimum for a bottom one) differs from what pass 1
recorded is not drawn, and the page says so: the model or the images changed between
the passes, and a different map must not pass for the recorded one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch

from ..analysis.units import Mismatch, UnitChoice, UnitExample
from ..drawing import visuals
from ..drawing.encoder import Pictures
from ..gather.units import Need, UnitMaps
from ..report.facts import Example, PointName, Report
from . import urls
from .layout import UNIT_DIM, UNIT_PX, UNIT_THRESHOLD, shows_field

__all__ = ["UnitPlan", "draw_unit_filters", "draw_units", "plan_units"]


@dataclass(frozen=True)
class UnitPlan:
    """Every example of every chosen channel, and what pass 2 must capture for each image."""

    examples: tuple[UnitExample, ...]
    needs: dict[int, tuple[Need, ...]]  # image index → (layer, point, channel)


def plan_units(report: Report, chosen: Sequence[UnitChoice], point: PointName) -> UnitPlan:
    """List the examples of the chosen channels, and group what they need by image."""
    examples: list[UnitExample] = []
    for unit in chosen:
        layer = report.layers[unit.depth]
        shown, conv = layer.at(point), layer.conv_point
        lists: list[tuple[str, PointName, tuple[Example, ...] | None]] = []
        for kind, record in (("top", shown), ("bottom", conv), ("quantile", shown)):
            units = record.units
            rows = None
            if units is not None:
                rows = {"top": units.top, "bottom": units.bottom, "quantile": units.quantiles}[kind]
            lists.append((kind, record.point, None if rows is None else rows[unit.channel]))
        for kind, at, row in lists:
            examples.extend(
                UnitExample(unit.depth, unit.channel, kind, rank, at, example)
                for rank, example in enumerate(row or ())
            )
    needs: dict[int, set[Need]] = {}
    for e in examples:
        needs.setdefault(e.example.image, set()).add(
            (report.layers[e.depth].conv.name, e.point, e.channel)
        )
    return UnitPlan(tuple(examples), {i: tuple(sorted(n)) for i, n in sorted(needs.items())})


def _agrees(recomputed: float, recorded: float) -> bool:
    """Say whether pass 2 reproduced pass 1's value, up to float32 batching noise."""
    return math.isclose(recomputed, recorded, rel_tol=1e-3, abs_tol=1e-5)


def draw_units(
    pictures: Pictures,
    report: Report,
    plan: UnitPlan,
    stream: Iterable[UnitMaps],
    mean: Sequence[float],
    std: Sequence[float],
) -> tuple[Mismatch, ...]:
    """Check and draw every planned example as its image's maps come; return those not drawn."""
    by_image: dict[int, list[UnitExample]] = {}
    for e in plan.examples:
        by_image.setdefault(e.example.image, []).append(e)
    mismatches: list[Mismatch] = []
    ext = pictures.ext
    for image in stream:
        height = int(image.input.shape[1])
        # Drawn small once per image; each example only lays its region over it.
        full = visuals.unnormalized(image.input, mean, std)
        small = visuals.shrink(full, UNIT_PX)
        for e in by_image.get(image.index, ()):
            layer = report.layers[e.depth]
            values = image.maps[(layer.conv.name, e.point, e.channel)]
            lowest = e.kind == "bottom"
            recomputed = float(values.min() if lowest else values.max())
            if not _agrees(recomputed, e.example.value):
                mismatches.append(Mismatch(e, recomputed))
                continue
            pictures.add(
                urls.unit_picture(e.depth, e.channel, e.kind, e.rank, ext),
                visuals.unit_example(small, values, (UNIT_THRESHOLD, UNIT_DIM, lowest)),
            )
            field = layer.receptive_field
            if e.kind == "top" and field is not None and shows_field(field.height, height):
                rows, columns = (int(n) for n in values.shape)
                centre = (
                    (e.example.y + 0.5) * height / rows,
                    (e.example.x + 0.5) * int(image.input.shape[2]) / columns,
                )
                pictures.add(
                    urls.unit_picture(e.depth, e.channel, "field", e.rank, ext),
                    visuals.receptive_crop(full, centre, (field.height, field.width), UNIT_PX),
                )
    return tuple(mismatches)


def draw_unit_filters(
    pictures: Pictures,
    report: Report,
    chosen: Sequence[UnitChoice],
    filters: Callable[[str], torch.Tensor],
) -> None:
    """Draw each chosen channel's filter as its layer's filter grid draws it."""
    for unit in chosen:
        layer = report.layers[unit.depth]
        weights = filters(layer.conv.name)[unit.channel : unit.channel + 1]
        tile = (
            visuals.filter_grid_rgb(weights)
            if layer.conv.rgb_filters
            else visuals.filter_grid_gray(weights)
        )
        pictures.add(urls.unit_picture(unit.depth, unit.channel, "filter", 0, pictures.ext), tile)
