"""Choose which images the report shows in full and which go on the comparison page."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import zip_longest

from .stats import Prediction

COMPARE_CLASSES = 24
COMPARE_WRONG = 4
COMPARE_CORRECT = 2


@dataclass(frozen=True)
class CompareRow:
    """One true class on the comparison page."""

    label: int
    wrong: tuple[int, ...]  # image indices, most confident mistake first
    correct: tuple[int, ...]  # image indices, most confident first
    wrong_total: int
    correct_total: int


@dataclass(frozen=True)
class Selection:
    showcase: tuple[int, ...]  # the first one is the representative image
    compare: tuple[CompareRow, ...]
    compare_classes_omitted: int


def _by_class(
    predictions: Sequence[Prediction | None], keep: Sequence[int], key_of: str
) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {}
    for i in keep:
        p = predictions[i]
        assert p is not None
        cls = p.label if key_of == "label" and p.label is not None else p.predicted
        groups.setdefault(cls, []).append(i)
    for members in groups.values():
        members.sort(key=lambda i: (-predictions[i].confidence, i))  # type: ignore[union-attr]
    return groups


def _round_robin(groups: dict[int, list[int]]) -> list[int]:
    """Take the best of each class in class order, then the second best of each, and so on."""
    columns = [groups[c] for c in sorted(groups)]
    return [i for layer in zip_longest(*columns) for i in layer if i is not None]


def select(predictions: Sequence[Prediction | None], examples: int) -> Selection:
    valid = [i for i, p in enumerate(predictions) if p is not None]
    correct = [i for i in valid if predictions[i].correct is True]  # type: ignore[union-attr]
    wrong = [i for i in valid if predictions[i].correct is False]  # type: ignore[union-attr]
    unlabeled = [i for i in valid if predictions[i].label is None]  # type: ignore[union-attr]

    right_queue = _round_robin(_by_class(predictions, correct, "label"))
    wrong_queue = _round_robin(_by_class(predictions, wrong, "label"))
    rest_queue = _round_robin(_by_class(predictions, unlabeled, "predicted"))
    showcase: list[int] = []
    for pair in zip_longest(right_queue, wrong_queue):
        showcase.extend(i for i in pair if i is not None)
    showcase.extend(rest_queue)
    showcase = showcase[: max(examples, 0)]

    wrong_by_class = _by_class(predictions, wrong, "label")
    right_by_class = _by_class(predictions, correct, "label")
    classes = sorted(wrong_by_class, key=lambda c: (-len(wrong_by_class[c]), c))
    rows = tuple(
        CompareRow(
            label=c,
            wrong=tuple(wrong_by_class[c][:COMPARE_WRONG]),
            correct=tuple(right_by_class.get(c, [])[:COMPARE_CORRECT]),
            wrong_total=len(wrong_by_class[c]),
            correct_total=len(right_by_class.get(c, [])),
        )
        for c in classes[:COMPARE_CLASSES]
    )
    return Selection(
        showcase=tuple(showcase),
        compare=rows,
        compare_classes_omitted=max(len(classes) - COMPARE_CLASSES, 0),
    )
