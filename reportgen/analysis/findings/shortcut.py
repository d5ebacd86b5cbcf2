"""``shortcut``: labels, or predictions, that one cheap image property alone predicts.

For each property (``PROPERTY_NAMES``, measured on every image as the model saw it), a
classifier that knows only that number is cross-validated: the images are split into
``SHORTCUT_FOLDS`` folds by their position in file order; on the other folds, the
property's range is cut at its quantiles into max(``SHORTCUT_BINS``, 2 × classes) bins
(with 8 bins for 15 classes, a property that gives every class away could not reach a lift
of 0.5), and each bin predicts its most common class. Its accuracy on the held-out fold, over all folds, is
compared with always guessing the most common class:
lift = (accuracy − majority rate) / (1 − majority rate). A lift near 1 means the
property alone gives the class away; near 0, it says nothing.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ...report.facts import PROPERTY_NAMES, Finding, ImageRecord
from ..rules import (
    SHORTCUT_BINS,
    SHORTCUT_FOLDS,
    SHORTCUT_GAP,
    SHORTCUT_LIFT,
    SHORTCUT_MIN_PER_CLASS,
)

if TYPE_CHECKING:
    from .context import Context

__all__ = ["PROPERTY_WORDS", "lift", "shortcut"]

PROPERTY_WORDS = {
    "brightness": "brightness",
    "contrast": "contrast",
    "hue": "hue of the mean colour",
    "saturation": "saturation of the mean colour",
    "border_brightness": "border brightness",
    "border_hue": "border colour (hue)",
    "centre_minus_border": "centre-minus-border brightness",
}


def _majority(classes: Sequence[int]) -> int:
    counts = Counter(classes)
    return min(counts, key=lambda c: (-counts[c], c))


def _bin_classifier(
    values: Sequence[float], classes: Sequence[int], bins: int
) -> tuple[list[float], dict[int, int], int]:
    """Fit: quantile edges, each bin's most common class, and the overall most common."""
    ordered = sorted(values)
    edges = sorted({ordered[(len(ordered) * k) // bins] for k in range(1, bins)})
    members: dict[int, list[int]] = {}
    for value, cls in zip(values, classes, strict=True):
        members.setdefault(bisect_right(edges, value), []).append(cls)
    return edges, {b: _majority(cs) for b, cs in members.items()}, _majority(classes)


def lift(values: Sequence[float], classes: Sequence[int]) -> float:
    """Cross-validate a one-property bin classifier; return its lift over the majority rate."""
    correct = 0
    bins = max(SHORTCUT_BINS, 2 * len(set(classes)))
    for fold in range(SHORTCUT_FOLDS):
        train = [i for i in range(len(values)) if i % SHORTCUT_FOLDS != fold]
        test = [i for i in range(len(values)) if i % SHORTCUT_FOLDS == fold]
        if not train or not test:
            continue
        edges, by_bin, fallback = _bin_classifier(
            [values[i] for i in train], [classes[i] for i in train], bins
        )
        correct += sum(
            by_bin.get(bisect_right(edges, values[i]), fallback) == classes[i] for i in test
        )
    majority = max(Counter(classes).values()) / len(classes)
    if majority >= 1.0:
        return 0.0
    return (correct / len(values) - majority) / (1.0 - majority)


def _eligible(images: Sequence[ImageRecord], target: str) -> tuple[list[ImageRecord], list[int]]:
    """Keep the images of classes with enough images; return them and their classes."""

    def cls(image: ImageRecord) -> int | None:
        p = image.prediction
        return p.label if target == "labels" else p.predicted

    counts = Counter(cls(i) for i in images if cls(i) is not None)
    kept = [i for i in images if (c := cls(i)) is not None and counts[c] >= SHORTCUT_MIN_PER_CLASS]
    classes = [c for i in kept if (c := cls(i)) is not None]
    return (kept, classes) if len(set(classes)) >= 2 else ([], [])


def lifts(images: Sequence[ImageRecord], target: str) -> dict[str, float]:
    """Score every property against the labels or the predictions; empty when too few images."""
    kept, classes = _eligible(images, target)
    if not kept:
        return {}
    return {
        name: lift([image.properties[k] for image in kept], classes)
        for k, name in enumerate(PROPERTY_NAMES)
    }


def _finding(
    target: str, scores: dict[str, float], other: dict[str, float], labeled: bool
) -> Finding:
    best = min(scores, key=lambda name: (-scores[name], name))
    word = PROPERTY_WORDS[best]
    if target == "labels":
        message = (
            f"The labels are predictable from the {word} alone (lift {scores[best]:.2f} over "
            "guessing the most common class): a model trained on such images can learn the "
            f"{word} instead of the objects. Check how the images of each class were collected."
        )
    else:
        compared = (
            f", while the labels are not (lift {other.get(best, 0.0):.2f})" if labeled else ""
        )
        message = (
            f"The model's predictions are predictable from the {word} alone (lift "
            f"{scores[best]:.2f}){compared}: the model may rely on the {word} rather than the "
            "objects. Compare correct and wrong images on the mistakes page."
        )
    evidence = tuple(
        (f"{target}_lift_{name}", round(scores[name], 4))
        for name in sorted(scores)
        if scores[name] >= SHORTCUT_LIFT
    )
    return Finding(
        kind="shortcut",
        severity="warning" if labeled else "info",
        message=message,
        evidence=(("property", best), *evidence),
    )


def shortcut(context: Context) -> list[Finding]:
    """Find labels, or predictions, that a single image property gives away."""
    images = context.report.images
    labels = lifts(images, "labels")
    if labels and max(labels.values()) >= SHORTCUT_LIFT:
        return [_finding("labels", labels, {}, labeled=True)]
    if context.untrained:
        return []
    predictions = lifts(images, "predictions")
    ahead = {
        name: score
        for name, score in predictions.items()
        if score >= SHORTCUT_LIFT and score - labels.get(name, 0.0) >= SHORTCUT_GAP
    }
    if not ahead:
        return []
    return [_finding("predictions", ahead, labels, labeled=bool(labels))]
