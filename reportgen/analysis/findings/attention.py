"""Findings about where the model looked: mistakes whose maps lie on the background."""

from __future__ import annotations

from statistics import fmean
from typing import TYPE_CHECKING

from ...report.facts import Finding
from ..rules import BACKGROUND_MIN_MISTAKES, BACKGROUND_SHARE

if TYPE_CHECKING:
    from .context import Context

__all__ = ["background_attention", "inside_by_class"]


def inside_by_class(context: Context) -> dict[int, tuple[list[float], list[float]]]:
    """Group the maps' shares inside the object by true class: (wrong ones, correct ones)."""
    report = context.report
    cams = report.cams
    if cams is None or cams.masks is None:
        return {}
    groups: dict[int, tuple[list[float], list[float]]] = {}
    for index, share in cams.inside:
        p = report.image(index).prediction
        if share is None or p.label is None:
            continue
        wrong, right = groups.setdefault(p.label, ([], []))
        (right if p.correct else wrong).append(share)
    return groups


def background_attention(context: Context) -> list[Finding]:
    """Find classes whose mistakes' maps put most of their energy on the background."""
    found = []
    for label, (wrong, right) in sorted(inside_by_class(context).items()):
        if len(wrong) < BACKGROUND_MIN_MISTAKES or fmean(wrong) >= BACKGROUND_SHARE:
            continue
        name = context.report.class_name(label)
        correct = f"{fmean(right):.0%}" if right else "no correct image with a mask"
        found.append(
            Finding(
                kind="background_attention",
                severity="warning",
                message=(
                    f"Mistakes on class '{name}' look at the background: on average "
                    f"{fmean(wrong):.0%} of the predicted class's map lies inside the object "
                    f"over {len(wrong)} mistakes (correct images of the class: {correct}). "
                    "The model may decide these by their surroundings; compare them on the "
                    "mistakes page, and check whether the background gives the class away."
                ),
                classes=(label,),
                evidence=(
                    ("mistakes", len(wrong)),
                    ("inside_wrong", round(fmean(wrong), 4)),
                    ("inside_correct", round(fmean(right), 4) if right else "none"),
                ),
            )
        )
    return found
