"""Choose the images the site shows in full, and the mistakes it puts beside correct ones.

These are choices, not facts: they live beside the report, never inside it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import zip_longest

from ..report.facts import ImageRecord

__all__ = ["ClassMistakes", "Selection", "select"]

MISTAKES_SUMMARY = 4  # mistakes per class on the mistakes page itself
MISTAKES_DRAWN = 8  # mistakes per class drawn as cards on the class's own page
CORRECT_PER_CLASS = 2


@dataclass(frozen=True)
class ClassMistakes:
    """One true class with mistakes: which of them are drawn, beside which correct images.

    Every class with a mistake gets a page of its own that lists all of them; ``drawn``
    are the ones shown as cards there, ``summary`` those on the mistakes page itself.
    """

    label: int
    wrong: tuple[int, ...]  # every wrong prediction of the class, most confident first
    drawn: tuple[int, ...]  # one per confused class in turn, most frequent confusion first
    correct: tuple[int, ...]  # image indices, most confident first
    correct_total: int

    @property
    def summary(self) -> tuple[int, ...]:
        """Return the mistakes the mistakes page shows for this class."""
        return self.drawn[:MISTAKES_SUMMARY]

    @property
    def with_strips(self) -> tuple[int, ...]:
        """Return the images drawn with depth strips, which share one scale per layer."""
        return (*self.drawn, *self.correct)


@dataclass(frozen=True)
class Selection:
    """Which images get full pages, and which mistakes are compared, per class."""

    showcase: tuple[int, ...]  # image indices; the first one is the representative image
    mistakes: tuple[ClassMistakes, ...]  # classes with the most mistakes first


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


def _spread(wrong: Sequence[int], images: Mapping[int, ImageRecord], count: int) -> tuple[int, ...]:
    """Take ``count`` mistakes: the most confident one of each predicted class in turn,
    classes taken for most often first, so that every common confusion gets a card."""
    taken: dict[int, list[int]] = {}
    for index in wrong:
        taken.setdefault(images[index].prediction.predicted, []).append(index)
    order = sorted(taken, key=lambda q: (-len(taken[q]), q))
    rounds = zip_longest(*(taken[q] for q in order))
    return tuple(i for layer in rounds for i in layer if i is not None)[:count]


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

    by_index = {image.index: image for image in images}
    classes = sorted(wrong_by_class, key=lambda c: (-len(wrong_by_class[c]), c))
    rows = tuple(
        ClassMistakes(
            label=c,
            wrong=tuple(wrong_by_class[c]),
            drawn=_spread(wrong_by_class[c], by_index, MISTAKES_DRAWN),
            correct=tuple(right_by_class.get(c, [])[:CORRECT_PER_CLASS]),
            correct_total=len(right_by_class.get(c, [])),
        )
        for c in classes
    )
    return Selection(showcase=tuple(showcase), mistakes=rows)
