"""``preprocessing_mismatch``: images prepared unlike the images the model was trained on.

A batch norm's running statistics record the mean and variance of its input over the
training data. When a conv feeds a batch norm directly, the conv's output over this
folder should look like that: the divergence of the folder's statistics from the running
ones, per channel, is the Gaussian KL divergence

    KL(folder ‖ running) = ½ (ln(σ²ᵣ / σ²_f) + (σ²_f + (μ_f − μᵣ)²) / σ²ᵣ − 1),

with the norm's ε added to both variances, and its median over the channels (constant
channels left out) summarizes one norm. Wrong normalization shifts the very first one.
The median over every norm is stated as evidence but judges nothing: a wrong input size
moved it from 0.016 to at most 0.021 on EfficientNet-Lite0, within what other folders of
right-sized images give (benchmarks/README.md).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ...report.facts import ConventionFit, Finding, LayerRecord, Report
from ..rules import PREPROCESS_FIRST, PREPROCESS_MIN_IMAGES

if TYPE_CHECKING:
    from .context import Context

__all__ = [
    "divergence",
    "first_norm",
    "layer_divergence",
    "norm_divergences",
    "preprocessing_mismatch",
]


def divergence(
    mean: Sequence[float],
    variance: Sequence[float],
    running_mean: Sequence[float],
    running_var: Sequence[float],
    eps: float,
    skip: Sequence[int] = (),
) -> float | None:
    """Return the median over channels of KL(folder ‖ running), or None without channels."""
    left_out = set(skip)
    values = []
    for c, (m, v, rm, rv) in enumerate(zip(mean, variance, running_mean, running_var, strict=True)):
        if c in left_out:
            continue
        vf, vr = v + eps, max(rv, 0.0) + eps
        if vf <= 0 or vr <= 0:
            continue
        values.append(0.5 * (math.log(vr / vf) + (vf + (m - rm) ** 2) / vr - 1.0))
    return statistics.median(values) if values else None


def layer_divergence(layer: LayerRecord) -> float | None:
    """Return a layer's divergence at the batch norm its conv feeds, or None without one."""
    norm = layer.block.norm
    if norm is None or norm.running_mean is None or norm.running_var is None:
        return None
    moments = layer.conv_point.moments
    return divergence(
        moments.mean,
        moments.variance,
        norm.running_mean,
        norm.running_var,
        norm.eps,
        layer.conv_point.stats.constant,
    )


def norm_divergences(report: Report) -> list[tuple[LayerRecord, float]]:
    """Return every conv layer that feeds a batch norm, in depth order, with its divergence."""
    found = []
    for layer in report.layers:
        value = layer_divergence(layer)
        if value is not None:
            found.append((layer, value))
    return found


def first_norm(report: Report) -> LayerRecord | None:
    """Return the first layer, in depth order, whose conv feeds a batch norm."""
    found = norm_divergences(report)
    return found[0][0] if found else None


def _classes(report: Report) -> int:
    labels = {i.prediction.label for i in report.images if i.prediction.label is not None}
    return len(labels) if labels else len({i.prediction.predicted for i in report.images})


def _suggestion(conventions: Sequence[ConventionFit]) -> str:
    if not conventions:
        return ""
    best = min(conventions, key=lambda c: (c.divergence, c.name))
    current = next((c for c in conventions if c.current), None)
    if best.current or current is None:
        return (
            " None of the common conventions tried fits the first batch norm better than "
            "this build's; check the input size, the colour order and the data."
        )
    flags = (
        f"--mean {','.join(f'{m:.4g}' for m in best.mean)} "
        f"--std {','.join(f'{s:.4g}' for s in best.std)}" + (" --bgr" if best.bgr else "")
    )
    return (
        f" Of the common conventions, {best.name} fits best (divergence {best.divergence:.3f} "
        f"against {current.divergence:.3f} for this build's): try {flags}."
    )


def preprocessing_mismatch(context: Context) -> list[Finding]:
    """Compare what the batch norms see on this folder with what they saw in training."""
    report = context.report
    found = norm_divergences(report)
    if context.untrained or not found or len(report.images) < PREPROCESS_MIN_IMAGES:
        return []
    if _classes(report) < 2:
        return []
    first, first_value = found[0]
    overall = statistics.median(value for _, value in found)
    evidence = (
        ("first_norm", first.block.norm.name if first.block.norm else ""),
        ("first_norm_divergence", round(first_value, 4)),
        ("median_divergence", round(overall, 4)),
        ("norms", len(found)),
        ("images", len(report.images)),
    )
    if first_value <= PREPROCESS_FIRST:
        return []
    message = (
        f"The input normalization looks wrong: at the first batch norm (after "
        f"{first.conv.name}), the folder's statistics diverge from the training "
        f"statistics by {first_value:.3f} (median KL over channels; a match is below "
        f"{PREPROCESS_FIRST:g}). Check --mean and --std (and the colour order)."
        + _suggestion(report.conventions)
    )
    return [
        Finding(
            kind="preprocessing_mismatch",
            severity="error",
            message=message,
            layer=first.conv.name,
            evidence=evidence,
        )
    ]
