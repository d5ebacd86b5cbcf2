"""Accuracy over the labeled images: overall, per true class, and the confusion counts."""

from __future__ import annotations

from collections.abc import Sequence

from ..report.facts import Accuracy, ClassAccuracy, Prediction

__all__ = ["accuracy"]


def accuracy(predictions: Sequence[Prediction]) -> Accuracy:
    """Count top-1 and top-5 hits, per class and overall, and how classes are confused."""
    labeled = [(p, p.label) for p in predictions if p.label is not None]
    if not labeled:
        return Accuracy(0, None, None, (), ())
    by_class: dict[int, list[Prediction]] = {}
    confusion: dict[tuple[int, int], int] = {}
    for p, label in labeled:
        by_class.setdefault(label, []).append(p)
        key = (label, p.predicted)
        confusion[key] = confusion.get(key, 0) + 1
    per_class = tuple(
        ClassAccuracy(
            index=c,
            images=len(ps),
            top1=sum(bool(p.correct) for p in ps) / len(ps),
            top5=sum(bool(p.in_top5) for p in ps) / len(ps),
            wrong=sum(p.correct is False for p in ps),
        )
        for c, ps in sorted(by_class.items())
    )
    return Accuracy(
        labeled=len(labeled),
        top1=sum(bool(p.correct) for p, _ in labeled) / len(labeled),
        top5=sum(bool(p.in_top5) for p, _ in labeled) / len(labeled),
        per_class=per_class,
        confusion=tuple((t, q, n) for (t, q), n in sorted(confusion.items())),
    )
