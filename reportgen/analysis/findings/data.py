"""Findings about labels and predictions: swapped names, classes never right, predictions
distributed unlike the labels, and accuracy below chance."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from ...report.facts import Finding
from ..rules import (
    CHANCE_MIN_IMAGES,
    NEVER_RIGHT_MIN_IMAGES,
    SKEW_DISTANCE,
    SKEW_MIN_IMAGES,
    SWAP_GAIN,
    SWAP_RATE,
)
from .context import plural

if TYPE_CHECKING:
    from .context import Context

__all__ = ["below_chance", "class_never_right", "label_swap", "prediction_skew"]


def label_swap(context: Context) -> list[Finding]:
    """Find two classes mostly predicted as each other, where swapping names fixes much."""
    report, acc = context.report, context.report.accuracy
    if context.untrained or not acc.labeled:
        return []
    counts = {(t, q): n for t, q, n in acc.confusion}
    sizes = {c.index: c.images for c in acc.per_class}
    found = []
    for a in sorted(sizes):
        for b in sorted(sizes):
            if b <= a:
                continue
            ab, ba = counts.get((a, b), 0), counts.get((b, a), 0)
            rate_ab, rate_ba = ab / sizes[a], ba / sizes[b]
            gain = (ab + ba - counts.get((a, a), 0) - counts.get((b, b), 0)) / acc.labeled
            if min(rate_ab, rate_ba) < SWAP_RATE or gain < SWAP_GAIN:
                continue
            na, nb = report.class_name(a), report.class_name(b)
            found.append(
                Finding(
                    kind="label_swap",
                    severity="error",
                    message=(
                        f"Classes '{na}' and '{nb}' look swapped: {rate_ab:.0%} of '{na}' "
                        f"images are predicted as '{nb}' and {rate_ba:.0%} of '{nb}' as "
                        f"'{na}'; swapping the two names would raise top-1 accuracy by "
                        f"{gain:.0%}. Check the class order (--classes) or the folder names."
                    ),
                    classes=(a, b),
                    evidence=(
                        ("rate_a_as_b", round(rate_ab, 4)),
                        ("rate_b_as_a", round(rate_ba, 4)),
                        ("accuracy_gain", round(gain, 4)),
                    ),
                )
            )
    return found


def class_never_right(context: Context) -> list[Finding]:
    """Find classes with enough labeled images and not one correct prediction."""
    report, acc = context.report, context.report.accuracy
    if context.untrained:
        return []
    never = [c for c in acc.per_class if c.images >= NEVER_RIGHT_MIN_IMAGES and c.top1 == 0.0]
    if not never:
        return []
    names = ", ".join(
        f"'{report.class_name(c.index)}' ({plural(c.images, 'image')})" for c in never[:10]
    )
    more = f" and {len(never) - 10} more" if len(never) > 10 else ""
    return [
        Finding(
            kind="class_never_right",
            severity="warning",
            message=(
                f"{plural(len(never), 'class', 'classes')} never predicted correctly: "
                f"{names}{more}. Check their labels and class names, and whether the model "
                "was trained on them."
            ),
            classes=tuple(c.index for c in never),
            evidence=(("classes", len(never)),),
        )
    ]


def prediction_skew(context: Context) -> list[Finding]:
    """Find predictions distributed far from the true labels."""
    report = context.report
    labeled = [i.prediction for i in report.images if i.prediction.label is not None]
    if context.untrained or len(labeled) < SKEW_MIN_IMAGES:
        return []
    truth = Counter(p.label for p in labeled if p.label is not None)
    said = Counter(p.predicted for p in labeled)
    distance = 0.5 * sum(abs(said[c] - truth[c]) for c in set(truth) | set(said)) / len(labeled)
    if distance < SKEW_DISTANCE:
        return []
    top, n = min(said.items(), key=lambda item: (-item[1], item[0]))
    return [
        Finding(
            kind="prediction_skew",
            severity="warning",
            message=(
                f"The predictions are distributed far from the labels (total variation "
                f"distance {distance:.2f}): '{report.class_name(top)}' is predicted for "
                f"{n / len(labeled):.0%} of the labeled images but is the true class of "
                f"{truth[top] / len(labeled):.0%}. Check the preprocessing, the class order "
                "and whether these images are like the training images."
            ),
            classes=(top,),
            evidence=(("distance", round(distance, 4)), ("images", len(labeled))),
        )
    ]


def below_chance(context: Context) -> list[Finding]:
    """Find top-1 accuracy below what guessing would reach."""
    report, acc = context.report, context.report.accuracy
    classes = len(report.class_names)
    if context.untrained or acc.top1 is None or acc.labeled < CHANCE_MIN_IMAGES or classes < 2:
        return []
    chance = 1.0 / classes
    if acc.top1 >= chance:
        return []
    return [
        Finding(
            kind="below_chance",
            severity="error",
            message=(
                f"Top-1 accuracy is {acc.top1:.1%}, below chance ({chance:.1%} for "
                f"{classes} classes) over {acc.labeled} labeled images. The labels, the class "
                "order or the preprocessing are probably wrong."
            ),
            evidence=(("top1", round(acc.top1, 4)), ("chance", round(chance, 4))),
        )
    ]
