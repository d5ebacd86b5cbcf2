"""Findings: what the report says is wrong with the model or the data, most severe first.

Each detector is a pure function of the report's facts (:class:`Context`) that returns
findings of one kind (or two closely related ones); none of them needs torch. The rule
behind each kind is stated once, in :data:`reportgen.analysis.rules.DEFINITIONS`.
"""

from __future__ import annotations

from collections.abc import Callable

from ...report.facts import Finding, Report
from .attention import background_attention
from .context import SEVERITY_ORDER, Context
from .data import below_chance, class_never_right, label_swap, prediction_skew
from .layers import correlated_channels, dead_channels, dead_filters, duplicate_filters
from .preprocessing import preprocessing_mismatch
from .shortcut import shortcut
from .untrained import untrained_weights

__all__ = ["DETECTORS", "Context", "Detector", "find"]

Detector = Callable[[Context], list[Finding]]

DETECTORS: tuple[Detector, ...] = (
    untrained_weights,
    preprocessing_mismatch,
    label_swap,
    shortcut,
    below_chance,
    class_never_right,
    prediction_skew,
    background_attention,
    dead_channels,
    dead_filters,
    duplicate_filters,
    correlated_channels,
)


def find(report: Report) -> tuple[Finding, ...]:
    """Run every detector and order the findings: most severe first, then as detected."""
    context = Context.of(report)
    found = [f for detector in DETECTORS for f in detector(context)]
    order = {id(f): n for n, f in enumerate(found)}
    return tuple(sorted(found, key=lambda f: (SEVERITY_ORDER[f.severity], order[id(f)])))
