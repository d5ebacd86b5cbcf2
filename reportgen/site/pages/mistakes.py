"""The mistakes page, ``mistakes.html``: wrong predictions beside correct ones, per class."""

from __future__ import annotations

from dataclasses import dataclass

from .. import urls
from ..layout import CONFUSION_LIMIT, PAIRS_SHOWN, strip_depths
from ..urls import Linker
from .common import Card, Chrome, PageContext, pct

__all__ = [
    "ClassRow",
    "ConfusedPair",
    "ConfusionCell",
    "ConfusionRow",
    "MistakesPage",
    "MistakesRow",
    "mistakes_page",
]


@dataclass(frozen=True)
class MistakesRow:
    """One true class: its mistakes beside correct images of it."""

    anchor: str
    name: str
    wrong_total: int
    images: int
    top1: str
    wrong: tuple[Card, ...]
    correct: tuple[Card, ...]
    more: int  # wrong predictions of this class not shown
    inside: str  # with masks: how much of the maps lies on the object, wrong vs correct


@dataclass(frozen=True)
class ConfusionCell:
    """One cell of the confusion matrix."""

    count: int
    css: str  # "diag", "off" or "zero"
    predicted: str
    href: str | None  # a mistake cell links to its true class's mistakes


@dataclass(frozen=True)
class ConfusedPair:
    """A true class and the class it is most often mistaken for, with how often."""

    true: str
    predicted: str
    count: int
    share: str  # of the true class's labeled images
    href: str


@dataclass(frozen=True)
class ConfusionRow:
    """One true class's row of the confusion matrix."""

    name: str
    cells: tuple[ConfusionCell, ...]


@dataclass(frozen=True)
class ClassRow:
    """One row of the per-class accuracy table."""

    anchor: str
    name: str
    images: int
    top1: str
    top5: str
    wrong: int


@dataclass(frozen=True)
class MistakesPage:
    """The mistakes page."""

    chrome: Chrome
    needs_labels: bool
    rows: tuple[MistakesRow, ...]
    strip_layers: int  # layers in each card's strip
    layer_count: int
    strip_depths: str  # which depths the strip shows, when not all
    omitted: int  # classes with mistakes not shown
    pairs: tuple[ConfusedPair, ...]  # the most confused pairs, most mistakes first
    pairs_total: int
    confusion_labels: tuple[str, ...]
    confusion: tuple[ConfusionRow, ...]
    confusion_classes: int  # classes in the matrix
    involved: int  # classes with any image, as true or predicted class
    per_class: tuple[ClassRow, ...]
    all_correct: bool
    cam_rule: str  # method, layer, point and resolution; empty without maps
    has_nearest: bool  # whether mistakes show their nearest correct images


def _pairs(ctx: PageContext, linker: Linker) -> tuple[tuple[ConfusedPair, ...], int]:
    """List the most confused (true, predicted) pairs, most mistakes first, and count them all."""
    r = ctx.report
    sizes = {c.index: c.images for c in r.accuracy.per_class}
    wrong = sorted(
        ((t, q, n) for t, q, n in r.accuracy.confusion if t != q),
        key=lambda p: (-p[2], p[0], p[1]),
    )
    pairs = tuple(
        ConfusedPair(
            true=r.class_name(t),
            predicted=r.class_name(q),
            count=n,
            share=pct(n / sizes[t]) if sizes.get(t) else "—",
            href=ctx.class_href(linker, t),
        )
        for t, q, n in wrong[:PAIRS_SHOWN]
    )
    return pairs, len(wrong)


def _confusion(ctx: PageContext, linker: Linker) -> tuple[list[int], tuple[ConfusionRow, ...]]:
    r, acc = ctx.report, ctx.report.accuracy
    chosen = sorted(acc.by_involvement[:CONFUSION_LIMIT])
    counts = {(t, q): n for t, q, n in acc.confusion}
    true_classes = {t for t, _, _ in acc.confusion}
    rows = tuple(
        ConfusionRow(
            name=r.class_name(t),
            cells=tuple(
                ConfusionCell(
                    count=counts.get((t, q), 0),
                    css="zero" if not counts.get((t, q)) else ("diag" if t == q else "off"),
                    predicted=r.class_name(q),
                    href=ctx.class_href(linker, t) if t != q and counts.get((t, q)) else None,
                )
                for q in chosen
            ),
        )
        for t in chosen
        if t in true_classes
    )
    return chosen, rows


def _inside(ctx: PageContext, label: int) -> str:
    """Say how much of the maps of a class's images lies on the object, wrong vs correct."""
    cams = ctx.report.cams
    if cams is None or cams.masks is None:
        return ""
    sides: dict[bool, list[float]] = {False: [], True: []}
    for index, share in cams.inside:
        p = ctx.report.image(index).prediction
        if share is not None and p.label == label:
            sides[bool(p.correct)].append(share)
    parts = [
        f"{side} {sum(v) / len(v):.0%} (mean of {len(v)})" if v else f"{side}: no map with a mask"
        for side, v in (("mistakes", sides[False]), ("correct images", sides[True]))
    ]
    return "Predicted-class map energy inside the object: " + "; ".join(parts) + "."


def mistakes_page(ctx: PageContext) -> MistakesPage:
    """Build the mistakes page."""
    r = ctx.report
    linker = ctx.base.for_page(urls.MISTAKES)
    depths = strip_depths(len(r.layers))
    per_class = {c.index: c for c in r.accuracy.per_class}
    rows = tuple(
        MistakesRow(
            anchor=linker.anchor(urls.class_anchor(row.label)),
            name=r.class_name(row.label),
            wrong_total=row.wrong_total,
            images=per_class[row.label].images,
            top1=pct(per_class[row.label].top1),
            wrong=tuple(ctx.card(linker, i, with_strip=True) for i in row.wrong),
            correct=tuple(ctx.card(linker, i, with_strip=True) for i in row.correct),
            more=row.wrong_total - len(row.wrong),
            inside=_inside(ctx, row.label),
        )
        for row in ctx.choices.selection.mistakes
    )
    chosen, confusion = _confusion(ctx, linker)
    pairs, pairs_total = _pairs(ctx, linker)
    acc = r.accuracy
    return MistakesPage(
        chrome=ctx.chrome(linker, "mistakes", f"Correct vs wrong — {r.model.name}"),
        needs_labels=acc.labeled == 0,
        rows=rows,
        strip_layers=len(depths),
        layer_count=len(r.layers),
        strip_depths=", ".join(str(d + 1) for d in depths),
        omitted=ctx.choices.selection.mistake_classes_omitted,
        pairs=pairs,
        pairs_total=pairs_total,
        confusion_labels=tuple(r.class_name(q) for q in chosen),
        confusion=confusion,
        confusion_classes=len(chosen),
        involved=len(acc.by_involvement),
        per_class=tuple(
            ClassRow(
                linker.anchor(urls.accuracy_anchor(c.index)),
                r.class_name(c.index),
                c.images,
                pct(c.top1),
                pct(c.top5),
                c.wrong,
            )
            for c in acc.per_class
        ),
        all_correct=acc.labeled > 0 and not rows,
        cam_rule=ctx.cam_rule(),
        has_nearest=bool(r.nearest),
    )
