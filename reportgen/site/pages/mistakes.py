"""The mistakes pages: ``mistakes.html``, the overview of wrong predictions beside correct
ones, and one page per true class with mistakes that lists every one of them."""

from __future__ import annotations

from dataclasses import dataclass

from ...analysis.selection import ClassMistakes
from .. import urls
from ..layout import CONFUSION_LIMIT, MISTAKE_CLASSES_SHOWN, PAIRS_SHOWN, strip_depths
from ..urls import Linker
from .common import Card, Chrome, Link, PageContext, pct

__all__ = [
    "CardsKey",
    "ClassPage",
    "ClassRow",
    "ConfusedPair",
    "ConfusionCell",
    "ConfusionRow",
    "MistakeLine",
    "MistakesPage",
    "MistakesRow",
    "TakenFor",
    "class_page",
    "mistakes_page",
]


@dataclass(frozen=True)
class CardsKey:
    """What the cards of the mistakes pages show, for the sentences that explain them."""

    strip_layers: int  # layers in each card's strip
    layer_count: int
    strip_depths: str  # which depths the strip shows, when not all
    strip_scale: str  # --strip-scale: "class" or "tile"
    cam_rule: str  # method, layer, point and resolution; empty without maps
    has_nearest: bool  # whether mistakes show their nearest correct images


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
    page: Link  # the class's own page, with every mistake
    inside: str  # with masks: how much of the maps lies on the object, wrong vs correct


@dataclass(frozen=True)
class MistakeLine:
    """A mistake listed in words on its class's page, where it is not drawn."""

    name: str
    link: Link | None  # its image page, when it has one
    confidence: str
    top: str


@dataclass(frozen=True)
class TakenFor:
    """The mistakes of one true class that were taken for one other class."""

    anchor: str
    predicted: str
    count: int
    cards: tuple[Card, ...]  # the drawn ones, most confident first
    listed: tuple[MistakeLine, ...]  # the rest, most confident first


@dataclass(frozen=True)
class ClassPage:
    """One true class's page: every wrong prediction of it, by the class it was taken for."""

    chrome: Chrome
    name: str
    images: int
    wrong_total: int
    top1: str
    drawn: int
    correct: tuple[Card, ...]
    correct_total: int
    groups: tuple[TakenFor, ...]  # most frequent confusion first
    inside: str
    key: CardsKey
    back: Link  # to the mistakes page's overview


@dataclass(frozen=True)
class ConfusionCell:
    """One cell of the confusion matrix."""

    count: int
    css: str  # "diag", "off" or "zero"
    predicted: str
    href: str | None  # a mistake cell links to those mistakes on the true class's page


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
    href: str | None  # the class's page of mistakes, when it has any
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
    key: CardsKey
    omitted: int  # classes with mistakes without cards here (each has its own page)
    pairs: tuple[ConfusedPair, ...]  # the most confused pairs, most mistakes first
    pairs_total: int
    confusion_labels: tuple[str, ...]
    confusion: tuple[ConfusionRow, ...]
    confusion_classes: int  # classes in the matrix
    involved: int  # classes with any image, as true or predicted class
    per_class: tuple[ClassRow, ...]
    all_correct: bool


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
            href=ctx.pair_href(linker, t, q),
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
                    href=ctx.pair_href(linker, t, q) if t != q and counts.get((t, q)) else None,
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


def _key(ctx: PageContext) -> CardsKey:
    layers = len(ctx.report.layers)
    depths = strip_depths(layers)
    return CardsKey(
        strip_layers=len(depths),
        layer_count=layers,
        strip_depths=", ".join(str(d + 1) for d in depths),
        strip_scale=ctx.choices.strip_scale,
        cam_rule=ctx.cam_rule(),
        has_nearest=bool(ctx.report.nearest),
    )


def _class_link(ctx: PageContext, linker: Linker, row: ClassMistakes) -> Link:
    name = ctx.report.class_name(row.label)
    return Link(
        linker.href(urls.class_page(row.label)),
        f"Every mistake of {name} ({len(row.wrong)}), by the class it was taken for",
    )


def mistakes_page(ctx: PageContext) -> MistakesPage:
    """Build the mistakes page."""
    r = ctx.report
    linker = ctx.base.for_page(urls.MISTAKES)
    per_class = {c.index: c for c in r.accuracy.per_class}
    mistakes = ctx.choices.selection.mistakes
    rows = tuple(
        MistakesRow(
            anchor=linker.anchor(urls.class_anchor(row.label)),
            name=r.class_name(row.label),
            wrong_total=len(row.wrong),
            images=per_class[row.label].images,
            top1=pct(per_class[row.label].top1),
            wrong=tuple(ctx.card(linker, i, with_strip=True) for i in row.summary),
            correct=tuple(ctx.card(linker, i, with_strip=True) for i in row.correct),
            page=_class_link(ctx, linker, row),
            inside=_inside(ctx, row.label),
        )
        for row in mistakes[:MISTAKE_CLASSES_SHOWN]
    )
    chosen, confusion = _confusion(ctx, linker)
    pairs, pairs_total = _pairs(ctx, linker)
    acc = r.accuracy
    pages = {row.label for row in mistakes}
    return MistakesPage(
        chrome=ctx.chrome(linker, "mistakes", f"Correct vs wrong — {r.model.name}"),
        needs_labels=acc.labeled == 0,
        rows=rows,
        key=_key(ctx),
        omitted=max(len(mistakes) - MISTAKE_CLASSES_SHOWN, 0),
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
                linker.href(urls.class_page(c.index)) if c.index in pages else None,
                c.images,
                pct(c.top1),
                pct(c.top5),
                c.wrong,
            )
            for c in acc.per_class
        ),
        all_correct=acc.labeled > 0 and not rows,
    )


def _line(ctx: PageContext, linker: Linker, index: int) -> MistakeLine:
    p = ctx.report.image(index).prediction
    name = ctx.image_label(index)
    return MistakeLine(name, ctx.image_link(linker, index), pct(p.confidence), ctx.top_text(p))


def class_page(ctx: PageContext, row: ClassMistakes) -> ClassPage:
    """Build the page of every mistake of one true class."""
    r = ctx.report
    linker = ctx.base.for_page(urls.class_page(row.label))
    name = r.class_name(row.label)
    drawn = set(row.drawn)
    taken: dict[int, list[int]] = {}
    for index in row.wrong:
        taken.setdefault(r.image(index).prediction.predicted, []).append(index)
    groups = tuple(
        TakenFor(
            anchor=linker.anchor(urls.taken_anchor(q)),
            predicted=r.class_name(q),
            count=len(taken[q]),
            cards=tuple(ctx.card(linker, i, with_strip=True) for i in taken[q] if i in drawn),
            listed=tuple(_line(ctx, linker, i) for i in taken[q] if i not in drawn),
        )
        for q in sorted(taken, key=lambda q: (-len(taken[q]), q))
    )
    stats = {c.index: c for c in r.accuracy.per_class}[row.label]
    return ClassPage(
        chrome=ctx.chrome(linker, "class", f"Mistakes of {name} — {r.model.name}"),
        name=name,
        images=stats.images,
        wrong_total=len(row.wrong),
        top1=pct(stats.top1),
        drawn=len(row.drawn),
        correct=tuple(ctx.card(linker, i, with_strip=True) for i in row.correct),
        correct_total=row.correct_total,
        groups=groups,
        inside=_inside(ctx, row.label),
        key=_key(ctx),
        back=Link(linker.href(urls.MISTAKES), "Correct vs wrong"),
    )
