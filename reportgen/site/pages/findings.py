"""Findings as the pages show them: severity, message, links to what they name, evidence."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ...report.facts import Finding
from .. import urls
from ..urls import Linker
from .common import Fact, Link, PageContext, index_list

__all__ = [
    "SEVERITY_WORDS",
    "FindingGroup",
    "FindingView",
    "finding_groups",
    "finding_views",
    "severity_counts",
]

SEVERITY_WORDS = {"error": "Error", "warning": "Warning", "info": "Note"}
CHANNEL_ANCHOR = "channels"
UNIT_LINKS = 6  # unit pages a finding links to, at most
FINDINGS_ANCHOR = "findings"


@dataclass(frozen=True)
class FindingView:
    """One finding on a page."""

    severity: str  # "error", "warning" or "info": the CSS class
    word: str  # "Error", "Warning" or "Note"
    kind: str  # "dead channels"
    message: str
    links: tuple[Link, ...]  # the layer, channels and classes it names
    evidence: tuple[Fact, ...]


# Kinds about the predictions as a whole: with no class named, they point to the mistakes.
_ABOUT_PREDICTIONS = frozenset({"shortcut", "prediction_skew", "below_chance"})


def _class_link(ctx: PageContext, linker: Linker, label: int) -> Link:
    """Link a class to its row on the mistakes page, or to its per-class accuracy."""
    return Link(ctx.class_href(linker, label), f"class {ctx.report.class_name(label)}")


def _links(ctx: PageContext, linker: Linker, finding: Finding) -> list[Link]:
    links: list[Link] = []
    depth = next((r.depth for r in ctx.report.layers if r.conv.name == finding.layer), None)
    if depth is not None:
        page = urls.layer_page(depth)
        links.append(Link(linker.href(page, FINDINGS_ANCHOR), f"layer {finding.layer}"))
        if finding.channels:
            text = "channel" if len(finding.channels) == 1 else "channels"
            links.append(
                Link(
                    linker.href(page, CHANNEL_ANCHOR),
                    f"{text} {index_list(finding.channels, limit=12)}",
                )
            )
        named = sorted({c for c in finding.channels} | {c for pair in finding.pairs for c in pair})
        for channel in named[:UNIT_LINKS]:
            href = ctx.unit_href(linker, depth, channel)
            if href is not None:
                links.append(Link(href, f"unit page of channel {channel}"))
        if finding.pairs:
            shown = ", ".join(f"{a}–{b}" for a, b in finding.pairs[:8])
            more = f" … ({len(finding.pairs)} pairs)" if len(finding.pairs) > 8 else ""
            links.append(Link(linker.href(page, CHANNEL_ANCHOR), f"pairs {shown}{more}"))
    links.extend(_class_link(ctx, linker, c) for c in finding.classes[:12])
    if not links and finding.kind in _ABOUT_PREDICTIONS:
        links.append(Link(linker.href(urls.MISTAKES), "the correct vs wrong page"))
    return links


def _value(value: float | int | str) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return f"{value:,}" if isinstance(value, int) else value


def finding_views(
    ctx: PageContext, linker: Linker, findings: Sequence[Finding]
) -> tuple[FindingView, ...]:
    """Describe findings for a page, in the order given (most severe first)."""
    return tuple(
        FindingView(
            severity=f.severity,
            word=SEVERITY_WORDS[f.severity],
            kind=f.kind.replace("_", " "),
            message=f.message,
            links=tuple(_links(ctx, linker, f)),
            evidence=tuple(Fact(k.replace("_", " "), _value(v)) for k, v in f.evidence),
        )
        for f in findings
    )


def severity_counts(findings: Sequence[Finding]) -> tuple[Fact, ...]:
    """Count the findings of each severity as (severity, "2 errors"), leaving out those with none."""
    counts = {s: sum(f.severity == s for f in findings) for s in SEVERITY_WORDS}
    return tuple(
        Fact(s, f"{n} {SEVERITY_WORDS[s].lower()}{'' if n == 1 else 's'}")
        for s, n in counts.items()
        if n
    )


@dataclass(frozen=True)
class FindingGroup:
    """The findings of one kind, most severe first: errors and warnings (or the first note)
    shown, the remaining notes folded."""

    severity: str  # the most severe of the group
    word: str
    kind: str
    count: int
    shown: tuple[FindingView, ...]
    rest: tuple[FindingView, ...]
    layers: int  # layers the group's findings name


def finding_groups(
    ctx: PageContext, linker: Linker, findings: Sequence[Finding]
) -> tuple[FindingGroup, ...]:
    """Group findings by kind, in the order of each kind's most severe finding."""
    views = finding_views(ctx, linker, findings)
    kinds: dict[str, list[tuple[Finding, FindingView]]] = {}
    for finding, view in zip(findings, views, strict=True):
        kinds.setdefault(finding.kind, []).append((finding, view))
    groups = []
    for members in kinds.values():
        # A warning or an error is never folded away; notes beyond the first are.
        shown = max(1, sum(1 for f, _ in members if f.severity != "info"))
        groups.append(
            FindingGroup(
                severity=members[0][1].severity,
                word=members[0][1].word,
                kind=members[0][1].kind,
                count=len(members),
                shown=tuple(view for _, view in members[:shown]),
                rest=tuple(view for _, view in members[shown:]),
                layers=len({f.layer for f, _ in members if f.layer}),
            )
        )
    return tuple(groups)
