"""``untrained_weights``: weights that were never trained, whatever the file says."""

from __future__ import annotations

import math
from collections import Counter
from typing import TYPE_CHECKING

from ...report.facts import Evidence, Finding, Report
from ..rules import FLAT_SMOOTHNESS, FRESH_NORM_RATIO, ONE_CLASS_SHARE

if TYPE_CHECKING:
    from .context import Context

__all__ = ["untrained_evidence", "untrained_weights"]


def _identity_norms(report: Report) -> int:
    """Count the norms with running statistics; negative when any of them moved from (0, 1)."""
    count = 0
    for layer in report.layers:
        norm = layer.block.norm
        if norm is None or norm.running_mean is None or norm.running_var is None:
            continue
        if any(m != 0.0 for m in norm.running_mean) or any(v != 1.0 for v in norm.running_var):
            return -1
        count += 1
    return count


def _norm_ratios(report: Report) -> list[float]:
    """Return each layer's median filter norm over a fresh instance's, where one was measured."""
    ratios = []
    for layer in report.layers:
        fresh = layer.fresh_norm_median
        norms = sorted(layer.filters.norms)
        if fresh and norms:
            ratios.append(norms[(len(norms) - 1) // 2] / fresh)
    return ratios


def top_class_share(report: Report) -> tuple[int, float]:
    """Return the most predicted class and its share of the images."""
    counts = Counter(image.prediction.predicted for image in report.images)
    cls, n = min(counts.items(), key=lambda item: (-item[1], item[0]))
    return cls, n / len(report.images)


def untrained_evidence(report: Report) -> Evidence | None:
    """Return the numbers that say the weights are untrained, or None when they do not."""
    if not report.layers or not report.images:
        return None
    identity = _identity_norms(report)
    if identity > 0:
        return (("norms_at_identity", identity),)
    if identity < 0:
        return None  # running statistics move only in training: these weights were trained
    first = report.layers[0].filters.smoothness
    ratios = _norm_ratios(report)
    if first is None or abs(first) >= FLAT_SMOOTHNESS or not ratios:
        return None
    worst = max(abs(math.log(r)) if r > 0 else math.inf for r in ratios)
    if worst > math.log(FRESH_NORM_RATIO):
        return None
    return (
        ("first_layer_smoothness", round(first, 4)),
        ("layers_compared", len(ratios)),
        ("largest_norm_ratio", round(math.exp(worst), 4)),
    )


def untrained_weights(context: Context) -> list[Finding]:
    """Find weights that were never trained (not reported for --weights none, which says so)."""
    report = context.report
    if report.model.untrained:
        return []
    evidence = untrained_evidence(report)
    if evidence is None:
        return []
    cls, share = top_class_share(report)
    how = dict(evidence)
    if "norms_at_identity" in how:
        why = (
            f"every one of its {how['norms_at_identity']} batch norms still has the running "
            "statistics it was created with (mean 0, variance 1)"
        )
    else:
        why = (
            "its first layer's kernels have no spatial structure (neighbour correlation "
            f"{how['first_layer_smoothness']:.2f}) and every layer's filter norms are within "
            f"{how['largest_norm_ratio']:.2f}× of a freshly initialized instance"
        )
    corroborated = share >= ONE_CLASS_SHARE and len(report.images) >= 10
    also = (
        f"; {share:.0%} of the images are predicted as '{report.class_name(cls)}'"
        if corroborated
        else ""
    )
    certain = "norms_at_identity" in how or corroborated
    return [
        Finding(
            kind="untrained_weights",
            severity="error" if certain else "warning",
            message=(
                f"The weights look untrained: {why}{also}. Check that --weights names the "
                "trained checkpoint and that its keys matched the model's; the predictions, "
                "accuracy and maps in this report show an untrained network."
            ),
            classes=(cls,) if corroborated else (),
            evidence=(*evidence, ("top_class_share", round(share, 4))),
        )
    ]
