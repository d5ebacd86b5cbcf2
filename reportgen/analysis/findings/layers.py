"""Findings about a layer's units: dead channels, dead filters, near-copies of filters, and
channels whose activations move together."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...report.facts import Finding, LayerRecord, Severity
from ..channels import off_margins
from ..rules import (
    ACTIVE_SHARE,
    COPY_CORRELATION,
    DEAD_SHARE_ERROR,
    DEAD_SHARE_WARNING,
    DUPLICATE_CORRELATION,
    DUPLICATE_COSINE,
    GATING_ACTIVATIONS,
    OFF_MARGIN,
)
from .context import plural, signed

if TYPE_CHECKING:
    from .context import Context

__all__ = ["correlated_channels", "dead_channels", "dead_filters", "duplicate_filters"]

LISTED = 12


def _listed(items: tuple[int, ...]) -> str:
    shown = ", ".join(str(i) for i in items[:LISTED])
    return shown + (f" … ({len(items)} in all)" if len(items) > LISTED else "")


def _by_share(count: int, total: int) -> Severity:
    """Grade dead units by their share of the layer: a few are common and cost little."""
    share = count / total if total else 0.0
    if share > DEAD_SHARE_ERROR:
        return "error"
    return "warning" if share >= DEAD_SHARE_WARNING else "info"


def _dead_in(layer: LayerRecord) -> Finding | None:
    # A dead filter makes its channel constant: that is reported once, as a dead filter.
    dead_filters = set(layer.filters.dead)
    dead = tuple(c for c in layer.dead_channels if c not in dead_filters)
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
        severity=_by_share(len(dead), total),
        message=(
            f"{plural(len(dead), 'channel')} of {total} in {layer.conv.name} "
            f"{'is' if len(dead) == 1 else 'are'} dead ({'; '.join(parts)}): "
            f"{'channel' if len(dead) == 1 else 'channels'} {_listed(dead)}. "
            f"{'It passes' if len(dead) == 1 else 'They pass'} nothing to later layers; look "
            "for a collapsed batch norm or a training problem such as a too-high learning "
            f"rate, or prune {'it' if len(dead) == 1 else 'them'}."
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
                severity=_by_share(len(dead), layer.conv.out_channels),
                message=(
                    f"{plural(len(dead), 'filter')} of {layer.conv.out_channels} in "
                    f"{layer.conv.name} {'has' if len(dead) == 1 else 'have'} (almost) zero "
                    f"weights: {'filter' if len(dead) == 1 else 'filters'} {_listed(dead)}. "
                    + (
                        "Its channel carries only a bias, so it is constant; check how the "
                        "weights were trained, pruned or saved, or remove it."
                        if len(dead) == 1
                        else "Their channels carry only a bias, so they are constant; check how "
                        "the weights were trained, pruned or saved, or remove them."
                    )
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


def _copies(layer: LayerRecord) -> tuple[tuple[int, int, float], ...]:
    """Return a layer's functional copies: ρ ≥ COPY_CORRELATION, both firing where it matters."""
    corr = layer.correlations
    if corr is None:
        return ()
    record = layer.at(corr.point)
    gated = corr.point == "activation" and layer.block.activation_type in GATING_ACTIVATIONS
    share = record.positive or ()
    # Channels already reported dead vary only by rounding, which a norm can amplify into
    # a perfect correlation between two of them: that is one finding, not two.
    dead = set(layer.filters.dead) | set(layer.dead_channels)

    def active(c: int) -> bool:
        return c not in dead and (not gated or not share or share[c] >= ACTIVE_SHARE)

    return tuple(
        p for p in corr.pairs if p[2] >= COPY_CORRELATION and active(p[0]) and active(p[1])
    )


def _copies_in(layer: LayerRecord) -> Finding | None:
    corr, pairs = layer.correlations, _copies(layer)
    if corr is None or not pairs:
        return None
    where = layer.block.label if corr.point == "activation" else "at the conv output"
    a, b, rho = pairs[0]
    return Finding(
        kind="correlated_channels",
        severity="warning",
        message=(
            f"{plural(len(pairs), 'pair')} of channels in {layer.conv.name} "
            f"{'is a functional copy' if len(pairs) == 1 else 'are functional copies'} "
            f"(ρ ≥ {COPY_CORRELATION:g} over {corr.samples:,} samples, {where}), such as {a} "
            f"and {b} (ρ = {rho:.4f}): each pair carries the same signal, even where their "
            "filters differ. Check for copied units, or prune one of each pair."
        ),
        layer=layer.conv.name,
        pairs=tuple((i, j) for i, j, _ in pairs),
        evidence=(("pairs", len(pairs)), ("point", corr.point), ("samples", corr.samples)),
    )


def correlated_channels(context: Context) -> list[Finding]:
    """Report functional copies per layer, and count every strongly correlated pair in a note."""
    layers = context.report.layers
    found = [f for layer in layers if (f := _copies_in(layer)) is not None]
    counted = [(layer, layer.correlations) for layer in layers if layer.correlations]
    same = sum(sum(r > 0 for _, _, r in c.pairs) for _, c in counted)
    opposite = sum(sum(r < 0 for _, _, r in c.pairs) for _, c in counted)
    where = [layer.conv.name for layer, c in counted if c.total]
    if same + opposite:
        found.append(
            Finding(
                kind="correlated_channels",
                severity="info",
                message=(
                    f"{plural(same + opposite, 'pair')} of channels in "
                    f"{plural(len(where), 'layer')} correlate strongly (ρ ≥ "
                    f"{DUPLICATE_CORRELATION:g}: {same}; opposite phase, ρ ≤ "
                    f"−{DUPLICATE_CORRELATION:g}: {opposite}), most in "
                    f"{max(counted, key=lambda lc: (lc[1].total, -lc[0].depth))[0].conv.name}. "
                    "Strong correlation is common in trained networks and is not redundancy "
                    "by itself; each layer's page lists its pairs."
                ),
                evidence=tuple((layer.conv.name, c.total) for layer, c in counted if c.total),
            )
        )
    return found
