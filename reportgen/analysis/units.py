"""Which channels get a unit page, and how pure each one's top examples are in class.

A choice, not a fact: it lives beside the report. Per layer, at the point the pages show:

1. the channels named in findings (dead, duplicate, correlated …), at most a third of
   the layer's share, lowest index first;
2. then, in turn, the strongest (highest mean over every image and position) and the
   most class-selective (the highest class purity of its top examples, ties by mean;
   without labels, only the strongest);
3. until ``per_layer`` channels (``--units N``; ``None`` for ``--units all``);
4. plus every channel named with ``--unit LAYER:CHANNEL``.

Class purity: the share of a channel's top examples whose true class is the most
common one among them (unlabeled images count for no class). A channel of a layer that
separates the classes has top examples of one class; chance for ``c`` balanced classes
and ``k`` examples is about ``1/c`` (a little more, since the maximum of k draws).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..report.facts import Example, Finding, LayerRecord, PointName

__all__ = ["Mismatch", "UnitChoice", "UnitExample", "choose_units", "purity"]


@dataclass(frozen=True)
class UnitChoice:
    """A channel that gets a unit page, and why."""

    depth: int
    channel: int
    reasons: tuple[str, ...]  # "named in a finding", "strongest", "class-selective", "asked for"


@dataclass(frozen=True)
class UnitExample:
    """One example of one chosen channel: which list it is in, where, and what pass 1 saw."""

    depth: int
    channel: int
    kind: str  # "top", "bottom" or "quantile"
    rank: int  # its place in its list, from 0
    point: PointName
    example: Example


@dataclass(frozen=True)
class Mismatch:
    """An example not drawn: its map in pass 2 did not reach the value pass 1 recorded."""

    example: UnitExample
    recomputed: float


def purity(
    examples: Sequence[Example], labels: Mapping[int, int | None]
) -> tuple[float, int | None]:
    """Return the share of ``examples`` in their most common true class, and that class."""
    classes = Counter(labels.get(e.image) for e in examples)
    classes.pop(None, None)
    if not examples or not classes:
        return 0.0, None
    label, count = min(classes.items(), key=lambda kv: (-kv[1], kv[0]))
    return count / len(examples), label


def choose_units(
    layers: Sequence[LayerRecord],
    point: PointName,
    findings: Sequence[Finding],
    labels: Mapping[int, int | None],
    per_layer: int | None,
    asked: Sequence[tuple[int, int]] = (),
) -> tuple[UnitChoice, ...]:
    """Choose the unit pages of every layer, as the module docstring says, in depth order."""
    chosen: list[UnitChoice] = []
    for layer in layers:
        record = layer.at(point)
        units = record.units
        if units is None or units.top is None:
            continue
        top = units.top
        count = len(top)
        limit = count if per_layer is None else min(per_layer, count)
        reasons: dict[int, list[str]] = {}
        named = sorted(
            {c for f in findings if f.layer == layer.conv.name for c in f.channels if c < count}
        )
        for channel in named[: max(1, limit // 3)] if limit else []:
            reasons.setdefault(channel, []).append("named in a finding")
        mean = record.stats.channel_mean
        strongest = list(record.stats.by_mean)
        # Only channels with labeled top images can be called class-selective.
        purities = {c: purity(top[c], labels)[0] for c in range(count)}
        selective = sorted(
            (c for c in range(count) if purities[c] > 0), key=lambda c: (-purities[c], -mean[c], c)
        )
        # In turn: each list gives its next channel not chosen yet.
        queues = [iter(strongest), iter(selective)]
        open_queues = [0, 1]
        turn = 0
        while len(reasons) < limit and open_queues:
            which = open_queues[turn % len(open_queues)]
            pick = next((c for c in queues[which] if c not in reasons), None)
            if pick is None:
                open_queues.remove(which)
                continue
            reasons[pick] = [("strongest", "class-selective")[which]]
            turn += 1
        for depth, channel in asked:
            if depth == layer.depth and channel < count:
                reasons.setdefault(channel, []).append("asked for")
        chosen.extend(
            UnitChoice(layer.depth, channel, tuple(why)) for channel, why in sorted(reasons.items())
        )
    return tuple(chosen)
