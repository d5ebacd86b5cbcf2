"""What the site chose to show of the facts, kept apart from the facts themselves."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..analysis.selection import Selection

__all__ = ["SiteChoices"]


@dataclass(frozen=True)
class SiteChoices:
    """The showcased images and compared mistakes, and the channels each image's grids show."""

    selection: Selection
    channels_shown: Mapping[int, tuple[tuple[int, ...], ...]]  # image → per depth, strongest first
    max_channels: int
