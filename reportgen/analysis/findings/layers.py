"""Findings about a layer's units: dead channels, dead filters, near-copies of filters, and
channels whose activations move together."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...report.facts import Finding, LayerRecord
from ..channels import off_margins
from ..rules import DUPLICATE_CORRELATION, DUPLICATE_COSINE, OFF_MARGIN
from .context import plural, signed

if TYPE_CHECKING:
    from .context import Context

__all__ = ["correlated_channels", "dead_channels", "dead_filters", "duplicate_filters"]

LISTED = 12


def _listed(items: tuple[int, ...]) -> str:
    shown = ", ".join(str(i) for i in items[:LISTED])
    return shown + (f" … ({len(items)} in all)" if len(items) > LISTED else "")


def _dead_in(layer: LayerRecord) -> Finding | None:
    dead = layer.dead_channels
    if not dead:
        return None
    constant = set(layer.conv_point.stats.constant)
    off = [c for c in dead if c not in constant]
    margins = off_margins(layer.block) or ()
    parts = []
    if constant & set(dead):
        parts.append(f"{len(constant & set(dead))} constant at the conv output")
    if off:
        lowest = f" (lowest {signed(min(margins[c] for c in off), '.1f')})" if margins else ""
        parts.append(
            f"{len(off)} never positive after {layer.block.activation_type} with β/|γ| ≤ "
            f"{signed(OFF_MARGIN)}{lowest}"
        )
    total = layer.conv.out_channels
    return Finding(
        kind="dead_channels",
        severity="error" if len(dead) * 2 > total else "warning",
        message=(
            f"{plural(len(dead), 'channel')} of {total} in {layer.conv.name} "
            f"{'is' if len(dead) == 1 else 'are'} dead ({'; '.join(parts)}): channels "
            f"{_listed(dead)}. They pass nothing to later layers; look for a collapsed "
            "batch norm or a training problem such as a too-high learning rate, or prune them."
        ),
        layer=layer.conv.name,
        channels=dead,
        evidence=(("dead", len(dead)), ("constant", len(constant)), ("off", len(off))),
    )


def dead_channels(context: Context) -> list[Finding]:
    """Report each layer's dead channels, and how many channels were silent on these images."""
    found = [f for layer in context.report.layers if (f := _dead_in(layer)) is not None]
    silent = [
        (layer, set(layer.silent) - set(layer.dead_channels)) for layer in context.report.layers
    ]
    silent = [(layer, s) for layer, s in silent if s]
    count = sum(len(s) for _, s in silent)
    if count:
        worst = max(silent, key=lambda item: (len(item[1]), -item[0].depth))[0]
        found.append(
            Finding(
                kind="silent_channels",
                severity="info",
                message=(
                    f"{plural(count, 'channel')} in {plural(len(silent), 'layer')} never fired "
                    f"({'was' if count == 1 else 'were'} never positive after the activation) on these "
                    f"{len(context.report.images)} images, most in {worst.conv.name}. That "
                    "alone does not make them dead: other images may make them fire. Run "
                    "a larger, more varied folder before pruning."
                ),
                evidence=tuple((layer.conv.name, len(s)) for layer, s in silent),
            )
        )
    return found


def dead_filters(context: Context) -> list[Finding]:
    """Report each layer's dead filters."""
    found = []
    for layer in context.report.layers:
        dead = layer.filters.dead
        if not dead:
            continue
        found.append(
            Finding(
                kind="dead_filters",
                severity="warning",
                message=(
                    f"{plural(len(dead), 'filter')} of {layer.conv.out_channels} in "
                    f"{layer.conv.name} {'has' if len(dead) == 1 else 'have'} (almost) zero "
                    f"weights: filters {_listed(dead)}. Their channels carry only a bias; "
                    "check how the weights were pruned or saved."
                ),
                layer=layer.conv.name,
                channels=dead,
                evidence=(("dead", len(dead)),),
            )
        )
    return found


def duplicate_filters(context: Context) -> list[Finding]:
    """Report each layer's near-duplicate filter pairs (within a group)."""
    found = []
    for layer in context.report.layers:
        pairs = layer.filters.duplicates
        if not pairs:
            continue
        found.append(
            Finding(
                kind="duplicate_filters",
                severity="warning",
                message=(
                    f"{plural(len(pairs), 'pair')} of filters in {layer.conv.name} "
                    f"{'is a near-copy' if len(pairs) == 1 else 'are near-copies'} (cosine "
                    f"above {DUPLICATE_COSINE:g}), such as {pairs[0][0]} and {pairs[0][1]}: "
                    "each pair computes nearly the same feature. Check for copied weights, "
                    "or prune one of each pair."
                ),
                layer=layer.conv.name,
                pairs=tuple((a, b) for a, b, _ in pairs),
                evidence=(("pairs", len(pairs)), ("highest_cosine", max(c for _, _, c in pairs))),
            )
        )
    return found


def _correlated(layer: LayerRecord, opposite: bool) -> Finding | None:
    corr = layer.correlations
    if corr is None:
        return None
    pairs = tuple(p for p in corr.pairs if (p[2] < 0) == opposite)
    if not pairs:
        return None
    where = layer.block.label if corr.point == "activation" else "at the conv output"
    a, b, rho = pairs[0]
    if opposite:
        before = corr.point == "conv"
        message = (
            f"{plural(len(pairs), 'pair')} of channels in {layer.conv.name} "
            f"{'moves' if len(pairs) == 1 else 'move'} in opposite "
            f"phase (ρ ≤ −{DUPLICATE_CORRELATION:g} {where}), such as {a} and {b} "
            f"(ρ = {rho:.3f})."
            + (
                " Before an activation that is expected (one fires where the other does "
                "not) and is not redundant."
                if before
                else " After the activation each carries what the other lacks; not redundant "
                "by itself."
            )
        )
        severity = "info"
    else:
        message = (
            f"{plural(len(pairs), 'pair')} of channels in {layer.conv.name} "
            f"{'carries' if len(pairs) == 1 else 'carry'} the same "
            f"signal (ρ ≥ {DUPLICATE_CORRELATION:g} over {corr.samples:,} samples, {where}), "
            f"such as {a} and {b} (ρ = {rho:.3f}): functional duplicates, even where their "
            "filters differ. Check for copied units, or prune one of each pair."
        )
        severity = "warning"
    return Finding(
        kind="correlated_channels",
        severity="info" if severity == "info" else "warning",
        message=message,
        layer=layer.conv.name,
        pairs=tuple((i, j) for i, j, _ in pairs),
        evidence=(
            ("pairs", len(pairs)),
            ("point", corr.point),
            ("samples", corr.samples),
            ("opposite_phase", int(opposite)),
        ),
    )


def correlated_channels(context: Context) -> list[Finding]:
    """Report each layer's strongly correlated channel pairs, same phase and opposite."""
    found = []
    for layer in context.report.layers:
        for opposite in (False, True):
            finding = _correlated(layer, opposite)
            if finding is not None:
                found.append(finding)
    return found
