"""What the site chose to show of the facts, kept apart from the facts themselves."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from ..analysis.ranking import Rank
from ..analysis.selection import Selection
from ..analysis.units import Mismatch, UnitChoice
from ..report.facts import PointName

__all__ = ["SiteChoices"]


@dataclass(frozen=True)
class SiteChoices:
    """The showcased images and compared mistakes, the channels each image's grids show, and
    where and how the pages measure and rank."""

    selection: Selection
    channels_shown: Mapping[int, tuple[tuple[int, ...], ...]]  # image → per depth, ranked
    max_channels: int
    point: PointName = "activation"  # --point: each layer's maps and charts, where it has it
    rank: Rank = "relative"  # --rank
    strip_scale: Literal["class", "tile"] = "class"  # --strip-scale
    units: tuple[UnitChoice, ...] = ()  # the channels with unit pages, in depth order
    mismatches: tuple[Mismatch, ...] = ()  # unit examples pass 2 could not reproduce
