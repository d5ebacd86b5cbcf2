"""Choose the images the site shows in full, and the mistakes it puts beside correct ones.

These are choices, not facts: they live beside the report, never inside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import zip_longest

from ..report.facts import ImageRecord

__all__ = ["ClassMistakes", "Selection", "select"]

MISTAKE_CLASSES = 24
MISTAKES_PER_CLASS = 4
CORRECT_PER_CLASS = 2


@dataclass(frozen=True)
class ClassMistakes:
    """One true class on the mistakes page: its wrong images beside some correct ones."""

    label: int
    wrong: tuple[int, ...]  # image indices, most confident mistake first
    correct: tuple[int, ...]  # image indices, most confident first
    wrong_total: int
    correct_total: int


@dataclass(frozen=True)
class Selection:
    """Which images get full pages, and which mistakes are compared, per class."""

    showcase: tuple[int, ...]  # image indices; the first one is the representative image
    mistakes: tuple[ClassMistakes, ...]
    mistake_classes_omitted: int


def _by_class(images: Sequence[ImageRecord], by_label: bool) -> dict[int, list[int]]:
    """Group images by true class (or predicted class), most confident first."""
    groups: dict[int, list[ImageRecord]] = {}
    for image in images:
        p = image.prediction
        cls = p.label if by_label and p.label is not None else p.predicted
        groups.setdefault(cls, []).append(image)
    return {
        cls: [m.index for m in sorted(members, key=lambda m: (-m.prediction.confidence, m.index))]
        for cls, members in groups.items()
    }


def _round_robin(groups: dict[int, list[int]]) -> list[int]:
    """Take the best of each class in class order, then the second best of each, and so on."""
    columns = [groups[c] for c in sorted(groups)]
    return [i for layer in zip_longest(*columns) for i in layer if i is not None]


def select(images: Sequence[ImageRecord], examples: int) -> Selection:
    """Showcase up to ``examples`` images across classes, right and wrong alternating."""
    correct = [m for m in images if m.prediction.correct is True]
    wrong = [m for m in images if m.prediction.correct is False]
    unlabeled = [m for m in images if m.prediction.label is None]

    right_by_class = _by_class(correct, by_label=True)
    wrong_by_class = _by_class(wrong, by_label=True)
    showcase: list[int] = []
    for pair in zip_longest(_round_robin(right_by_class), _round_robin(wrong_by_class)):
        showcase.extend(i for i in pair if i is not None)
    showcase.extend(_round_robin(_by_class(unlabeled, by_label=False)))
    showcase = showcase[: max(examples, 0)]

    classes = sorted(wrong_by_class, key=lambda c: (-len(wrong_by_class[c]), c))
    rows = tuple(
        ClassMistakes(
            label=c,
            wrong=tuple(wrong_by_class[c][:MISTAKES_PER_CLASS]),
            correct=tuple(right_by_class.get(c, [])[:CORRECT_PER_CLASS]),
            wrong_total=len(wrong_by_class[c]),
            correct_total=len(right_by_class.get(c, [])),
        )
        for c in classes[:MISTAKE_CLASSES]
    )
    return Selection(
        showcase=tuple(showcase),
        mistakes=rows,
        mistake_classes_omitted=max(len(classes) - MISTAKE_CLASSES, 0),
    )
