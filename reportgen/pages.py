"""Page models: frozen dataclasses holding exactly what each template shows.

Builders here turn the build's facts into text, numbers and relative URLs. Templates
get these objects and nothing else: no tensors, no config, no arithmetic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from . import urls
from .report import Report
from .stats import DEFINITIONS, Prediction
from .urls import Linker

Sizes = Mapping[str, tuple[int, int]]
MAX_STRIP_LAYERS = 16
CONFUSION_LIMIT = 20
FILTERS_SHOWN = 64
MEAN_MAP_PX = 128
GRID_PX = 256
FILTER_GRID_PX = 240


# ---------------------------------------------------------------- shared pieces


@dataclass(frozen=True)
class Link:
    href: str
    text: str


@dataclass(frozen=True)
class NavItem:
    href: str
    text: str
    current: bool


@dataclass(frozen=True)
class Picture:
    src: str
    width: int
    height: int
    alt: str


@dataclass(frozen=True)
class Fact:
    label: str
    value: str


@dataclass(frozen=True)
class Verdict:
    text: str  # "correct", "wrong" or "unlabeled"
    css: str


@dataclass(frozen=True)
class Chrome:
    """What every page has: title, navigation, stylesheet and the untrained warning."""

    kind: str
    path: str
    title: str
    section_id: str
    style_href: str
    nav: tuple[NavItem, ...]
    untrained: str | None
    model_name: str


def pct(value: float | None) -> str:
    return "—" if value is None else f"{100.0 * value:.1f}%"


def num(value: float) -> str:
    return f"{value:.4g}"


def shape_text(shape: Sequence[int]) -> str:
    return "×".join(str(s) for s in shape)


def index_list(indices: Sequence[int], limit: int = 40) -> str:
    if not indices:
        return "none"
    shown = ", ".join(str(i) for i in indices[:limit])
    return shown + (f" … ({len(indices)} in all)" if len(indices) > limit else "")


def verdict(prediction: Prediction) -> Verdict:
    if prediction.correct is None:
        return Verdict("unlabeled", "unlabeled")
    return Verdict("correct", "correct") if prediction.correct else Verdict("wrong", "wrong")


class Builder:
    """Build every page of one site from a report and the pictures drawn for it."""

    def __init__(self, report: Report, sizes: Sizes, ext: str, linker: Linker) -> None:
        self.report = report
        self.sizes = sizes
        self.ext = ext
        self.base = linker
        self.showcase = set(report.selection.showcase)

    def picture(self, linker: Linker, asset: str, alt: str, at_least: int = 0) -> Picture:
        """Describe an asset; small ones are shown enlarged (by a whole factor, up to 4×)."""
        width, height = self.sizes[asset]
        zoom = min(4, max(1, -(-at_least // max(width, height))))
        return Picture(linker.src(asset), width * zoom, height * zoom, alt)

    def chrome(self, linker: Linker, kind: str, title: str) -> Chrome:
        items = [
            (urls.INDEX, "Overview", "index"),
            (urls.FILTERS, "Filters", "filters"),
            (urls.COMPARE, "Correct vs wrong", "compare"),
            (urls.layer_page(0), "Layers", "layer"),
        ]
        if self.report.selection.showcase:
            items.append((urls.image_page(self.report.selection.showcase[0]), "Images", "image"))
        untrained = None
        if self.report.model.untrained:
            untrained = (
                "This model was initialized at random (--weights none). Its predictions and "
                "feature maps show an untrained network, not a learned one."
            )
        return Chrome(
            kind=kind,
            path=linker.page,
            title=title,
            section_id=urls.section_id(linker.page),
            style_href=urls.relative(linker.page, urls.STYLE),
            nav=tuple(NavItem(linker.href(href), text, k == kind) for href, text, k in items),
            untrained=untrained,
            model_name=self.report.model.name,
        )

    def channel_text(self, index: int, depth: int) -> str:
        channels = self.report.channels_shown[index][depth]
        return "Channels shown, strongest first: " + index_list(channels, limit=64)

    def image_label(self, index: int) -> str:
        return self.report.files[index].rel

    def mean_map(
        self, linker: Linker, index: int, depth: int, at_least: int = MEAN_MAP_PX
    ) -> Picture:
        """The channel-mean map of layer ``depth`` for image ``index``."""
        layer = self.report.layers[depth].name
        return self.picture(
            linker,
            urls.mean_picture(index, depth, self.ext),
            f"Channel-mean map of {layer} for {self.image_label(index)}",
            at_least=at_least,
        )

    def grid(self, linker: Linker, index: int, depth: int) -> Picture:
        """The grid of layer ``depth``'s strongest channels for image ``index``."""
        info = self.report.layers[depth]
        count = min(self.report.max_channels, info.out_channels)
        return self.picture(
            linker,
            urls.grid_picture(index, depth, self.ext),
            f"{count} strongest channels of {info.name} for {self.image_label(index)}",
            at_least=GRID_PX,
        )

    def input_picture(self, linker: Linker, index: int) -> Picture:
        return self.picture(
            linker,
            urls.input_picture(index, self.ext),
            f"Input image {self.image_label(index)} as the model sees it",
        )


def strip_depths(count: int) -> list[int]:
    """Pick up to MAX_STRIP_LAYERS depths spread evenly from the first to the last layer."""
    if count <= MAX_STRIP_LAYERS:
        return list(range(count))
    step = (count - 1) / (MAX_STRIP_LAYERS - 1)
    return sorted({round(i * step) for i in range(MAX_STRIP_LAYERS)})


# ---------------------------------------------------------------- index.html


@dataclass(frozen=True)
class StripTile:
    link: Link
    picture: Picture
    shape: str


@dataclass(frozen=True)
class LayerRow:
    depth: int
    link: Link
    type: str
    kernel: str
    stride: str
    groups: int
    shape: str
    dead_channels: int
    dead_filters: int
    duplicate_pairs: int


@dataclass(frozen=True)
class Card:
    """A small linked example: an image, what the model said, and whether it was right."""

    link: Link | None
    name: str
    picture: Picture
    predicted: str
    confidence: str
    truth: str
    verdict: Verdict
    strip: Picture | None = None


@dataclass(frozen=True)
class IndexPage:
    chrome: Chrome
    model: tuple[Fact, ...]
    data: tuple[Fact, ...]
    accuracy: tuple[Fact, ...]
    skipped: tuple[Fact, ...]
    warnings: tuple[str, ...]
    representative: Card | None
    strip: tuple[StripTile, ...]
    layers: tuple[LayerRow, ...]
    showcase: tuple[Card, ...]
    filters_link: Link
    compare_link: Link
    definitions: tuple[Fact, ...]
    not_called: str | None


def _card(b: Builder, linker: Linker, index: int, with_strip: bool = False) -> Card:
    p = b.report.predictions[index]
    assert p is not None
    link = (
        Link(linker.href(urls.image_page(index)), b.image_label(index))
        if index in b.showcase
        else None
    )
    strip = None
    if with_strip:
        strip = b.picture(
            linker,
            urls.strip_picture(index, b.ext),
            f"Channel-mean maps of {len(strip_depths(len(b.report.layers)))} conv layers, shallow to deep, "
            f"for {b.image_label(index)}",
        )
    return Card(
        link=link,
        name=b.image_label(index),
        picture=b.input_picture(linker, index),
        predicted=b.report.class_name(p.predicted),
        confidence=pct(p.confidence),
        truth=b.report.class_name(p.label),
        verdict=verdict(p),
        strip=strip,
    )


def index_page(b: Builder) -> IndexPage:
    r = b.report
    linker = b.base.for_page(urls.INDEX)
    m = r.model
    model = [
        Fact("Model", m.name),
        Fact("Weights", m.weights),
        Fact("Parameters", f"{m.parameters:,}"),
        Fact("Conv layers", f"{len(r.layers)} hooked, in forward order"),
        Fact("Input", f"{m.channels} × {m.input_size} × {m.input_size}"),
        Fact("Preprocessing", f"{m.preprocessing} (from {m.preprocessing_source})"),
        Fact("Logits", m.logits_from),
        Fact("Device", m.device),
        Fact("Class names", m.class_source),
    ]
    model += [Fact(name, version) for name, version in r.versions]
    if r.built_at:
        model.append(Fact("Built", r.built_at))
    label_text = {
        "folders": "from the immediate subfolder of each image",
        "csv": "from the --labels CSV",
        "none": "none: no image has a known true class",
    }[r.label_source]
    data = [
        Fact("Image folder", r.images_root),
        Fact("Images", f"{r.image_count} read, {len(r.skipped)} skipped"),
        Fact("Classes", f"{len(r.class_names)}"),
        Fact("True labels", label_text),
        Fact("Labeled images", str(r.accuracy.labeled)),
    ]
    acc = r.accuracy
    accuracy: list[Fact] = []
    if acc.labeled:
        accuracy = [
            Fact("Top-1 accuracy", f"{pct(acc.top1)} of {acc.labeled} labeled images"),
            Fact("Top-5 accuracy", pct(acc.top5)),
            Fact(
                "Wrong predictions",
                str(sum(p is not None and p.correct is False for p in r.predictions)),
            ),
        ]
    representative = None
    strip: list[StripTile] = []
    if r.selection.showcase:
        first = r.selection.showcase[0]
        representative = _card(b, linker, first)
        for depth, (info, stats) in enumerate(zip(r.layers, r.stats, strict=True)):
            strip.append(
                StripTile(
                    link=Link(linker.href(urls.layer_page(depth)), info.name),
                    picture=b.mean_map(linker, first, depth, at_least=0),
                    shape=shape_text(stats.output_shape),
                )
            )
    layers = tuple(
        LayerRow(
            depth=depth + 1,
            link=Link(linker.href(urls.layer_page(depth)), info.name),
            type=info.type,
            kernel=shape_text(info.kernel_size),
            stride=shape_text(info.stride),
            groups=info.groups,
            shape=shape_text(stats.output_shape),
            dead_channels=len(stats.dead_channels),
            dead_filters=len(filters.dead),
            duplicate_pairs=len(filters.duplicates),
        )
        for depth, (info, stats, filters) in enumerate(
            zip(r.layers, r.stats, r.filters, strict=True)
        )
    )
    return IndexPage(
        chrome=b.chrome(linker, "index", f"featreport: {m.name}"),
        model=tuple(model),
        data=tuple(data),
        accuracy=tuple(accuracy),
        skipped=tuple(Fact(s.rel, s.reason) for s in r.skipped),
        warnings=r.warnings,
        representative=representative,
        strip=tuple(strip),
        layers=layers,
        showcase=tuple(_card(b, linker, i) for i in r.selection.showcase),
        filters_link=Link(linker.href(urls.FILTERS), "All filters"),
        compare_link=Link(linker.href(urls.COMPARE), "Correct vs wrong"),
        definitions=tuple(Fact(k.replace("_", " "), v) for k, v in sorted(DEFINITIONS.items())),
        not_called=(
            f"{len(r.not_called)} conv layer(s) were not called in eval mode and are not shown: "
            + ", ".join(r.not_called[:10])
            if r.not_called
            else None
        ),
    )


# ---------------------------------------------------------------- images/image-NNNN.html


@dataclass(frozen=True)
class TopEntry:
    name: str
    probability: str
    value: float  # 0–1, for the bar
    is_truth: bool


@dataclass(frozen=True)
class LayerView:
    anchor: str
    depth: int
    link: Link
    shape: str
    mean: Picture
    grid: Picture
    caption: str
    channels: str


@dataclass(frozen=True)
class ImagePage:
    chrome: Chrome
    name: str
    input: Picture
    verdict: Verdict
    predicted: str
    confidence: str
    truth: str
    top: tuple[TopEntry, ...]
    layers: tuple[LayerView, ...]
    toc: tuple[Link, ...]
    previous: Link | None
    next: Link | None
    scale_note: str


def grid_caption(b: Builder, depth: int, shown: int) -> str:
    info, stats = b.report.layers[depth], b.report.stats[depth]
    return (
        f"{info.name}: output {shape_text(stats.output_shape)}; {shown} of {info.out_channels} "
        "channels, ranked by mean activation on this image; each tile scaled to its own min–max"
    )


def image_page(b: Builder, position: int) -> ImagePage:
    r = b.report
    showcase = r.selection.showcase
    index = showcase[position]
    page = urls.image_page(index)
    linker = b.base.for_page(page)
    p = r.predictions[index]
    assert p is not None
    name = b.image_label(index)
    views = []
    for depth, info in enumerate(r.layers):
        count = min(r.max_channels, info.out_channels)
        views.append(
            LayerView(
                anchor=linker.anchor(urls.layer_anchor(depth)),
                depth=depth + 1,
                link=Link(linker.href(urls.layer_page(depth)), info.name),
                shape=shape_text(r.stats[depth].output_shape),
                mean=b.mean_map(linker, index, depth),
                grid=b.grid(linker, index, depth),
                caption=grid_caption(b, depth, count),
                channels=b.channel_text(index, depth),
            )
        )
    top = tuple(TopEntry(r.class_name(c), pct(v), round(v, 4), c == p.label) for c, v in p.top)

    def neighbour(offset: int, text: str) -> Link | None:
        other = position + offset
        if 0 <= other < len(showcase):
            return Link(
                linker.href(urls.image_page(showcase[other])),
                f"{text}: {b.image_label(showcase[other])}",
            )
        return None

    return ImagePage(
        chrome=b.chrome(linker, "image", f"{name} — featreport"),
        name=name,
        input=b.input_picture(linker, index),
        verdict=verdict(p),
        predicted=r.class_name(p.predicted),
        confidence=pct(p.confidence),
        truth=r.class_name(p.label),
        top=top,
        layers=tuple(views),
        toc=tuple(
            Link(linker.href(page, urls.layer_anchor(d)), info.name)
            for d, info in enumerate(r.layers)
        ),
        previous=neighbour(-1, "Previous image"),
        next=neighbour(1, "Next image"),
        scale_note=(
            "Colours use viridis: dark purple is a channel's lowest value on this image, yellow "
            "its highest. Every tile is scaled on its own, so brightness compares positions "
            "within a tile, never between tiles."
        ),
    )


# ---------------------------------------------------------------- layers/layer-NNN.html


@dataclass(frozen=True)
class FilterView:
    anchor: str
    link: Link
    picture: Picture
    caption: str
    norm_chart: Picture
    dead: str
    duplicates: str


@dataclass(frozen=True)
class ExampleMaps:
    link: Link
    verdict: Verdict
    summary: str
    input: Picture
    mean: Picture
    grid: Picture
    channels: str


@dataclass(frozen=True)
class LayerPage:
    chrome: Chrome
    name: str
    depth: int
    facts: tuple[Fact, ...]
    filters: FilterView
    chart: Picture
    dead: str
    strongest: str
    examples: tuple[ExampleMaps, ...]
    grid_note: str
    previous: Link | None
    next: Link | None


def filter_view(b: Builder, linker: Linker, depth: int) -> FilterView:
    info, filters = b.report.layers[depth], b.report.filters[depth]
    shown = min(info.out_channels, FILTERS_SHOWN)
    kernel = shape_text(info.kernel_size)
    if info.rgb_filters:
        how = "colour tiles: each filter's three input-channel kernels as RGB, scaled to its own min–max"
    elif info.in_channels // info.groups == 1:
        how = f"gray tiles: each filter has a single {kernel} kernel (depthwise or one input channel); mid-gray is zero"
    else:
        how = (
            f"gray tiles: each filter's {kernel} kernel averaged over its "
            f"{info.in_channels // info.groups} input channels; mid-gray is zero, white positive, black negative"
        )
    dup_text = (
        "not compared: filters have too few weights"
        if not filters.compared
        else (
            "none"
            if not filters.duplicates
            else "; ".join(f"{a}–{c} (cos {s:.3f})" for a, c, s in filters.duplicates[:30])
            + (f" … ({len(filters.duplicates)} pairs)" if len(filters.duplicates) > 30 else "")
        )
    )
    return FilterView(
        anchor=linker.anchor(urls.layer_anchor(depth)),
        link=Link(linker.href(urls.layer_page(depth)), info.name),
        picture=b.picture(
            linker,
            urls.filter_picture(depth, b.ext),
            f"Filters of {info.name}",
            at_least=FILTER_GRID_PX,
        ),
        caption=(
            f"{info.name}: {shown} of {info.out_channels} filters (by index, row by row), {how}. "
            "Red frame: dead filter; orange frame: near-duplicate of another filter."
        ),
        norm_chart=b.picture(
            linker,
            urls.norm_chart_picture(depth),
            f"Weight L2 norm of each of the {info.out_channels} filters of {info.name}",
        ),
        dead=index_list(filters.dead),
        duplicates=dup_text,
    )


def layer_page(b: Builder, depth: int) -> LayerPage:
    r = b.report
    page = urls.layer_page(depth)
    linker = b.base.for_page(page)
    info, stats = r.layers[depth], r.stats[depth]
    facts = [
        Fact("Depth", f"{depth + 1} of {len(r.layers)} (forward order)"),
        Fact("Type", info.type),
        Fact("Kernel", shape_text(info.kernel_size)),
        Fact("Stride", shape_text(info.stride)),
        Fact("Padding", info.padding),
        Fact("Dilation", shape_text(info.dilation)),
        Fact("Groups", f"{info.groups}" + (" (depthwise)" if info.depthwise else "")),
        Fact("In / out channels", f"{info.in_channels} / {info.out_channels}"),
        Fact(
            "Output shape",
            f"{shape_text(stats.output_shape)} (channels × height × width, one image)",
        ),
        Fact(
            "Activation range",
            f"{num(stats.activation_min)} to {num(stats.activation_max)} over all images",
        ),
        Fact("Dead channels", f"{len(stats.dead_channels)} of {info.out_channels}"),
    ]
    calls = r.calls_per_forward[depth]
    if calls > 1:
        facts.append(
            Fact("Calls per forward", f"{calls}; statistics and maps record the first call only")
        )
    examples = []
    for index in r.selection.showcase:
        p = r.predictions[index]
        assert p is not None
        name = b.image_label(index)
        examples.append(
            ExampleMaps(
                link=Link(linker.href(urls.image_page(index), urls.layer_anchor(depth)), name),
                verdict=verdict(p),
                summary=f"predicted {r.class_name(p.predicted)} ({pct(p.confidence)}), true {r.class_name(p.label)}",
                input=b.input_picture(linker, index),
                mean=b.mean_map(linker, index, depth),
                grid=b.grid(linker, index, depth),
                channels=b.channel_text(index, depth),
            )
        )

    def neighbour(other: int, text: str) -> Link | None:
        if 0 <= other < len(r.layers):
            return Link(linker.href(urls.layer_page(other)), f"{text}: {r.layers[other].name}")
        return None

    count = min(r.max_channels, info.out_channels)
    return LayerPage(
        chrome=b.chrome(linker, "layer", f"{info.name} — featreport"),
        name=info.name,
        depth=depth + 1,
        facts=tuple(facts),
        filters=filter_view(b, linker, depth),
        chart=b.picture(
            linker,
            urls.channel_chart_picture(depth),
            f"Mean and maximum activation of each of the {info.out_channels} channels of {info.name}",
        ),
        dead=index_list(stats.dead_channels),
        strongest=index_list(stats.strongest_channels),
        examples=tuple(examples),
        grid_note=(
            f"Each grid: {count} of {info.out_channels} channels, ranked by mean activation on that "
            "image; each tile scaled to its own min–max (viridis: dark low, yellow high)."
        ),
        previous=neighbour(depth - 1, "Shallower"),
        next=neighbour(depth + 1, "Deeper"),
    )


# ---------------------------------------------------------------- filters.html


@dataclass(frozen=True)
class FiltersPage:
    chrome: Chrome
    layers: tuple[FilterView, ...]
    toc: tuple[Link, ...]
    definitions: tuple[Fact, ...]


def filters_page(b: Builder) -> FiltersPage:
    linker = b.base.for_page(urls.FILTERS)
    views = tuple(filter_view(b, linker, d) for d in range(len(b.report.layers)))
    return FiltersPage(
        chrome=b.chrome(linker, "filters", f"Filters — {b.report.model.name}"),
        layers=views,
        toc=tuple(
            Link(linker.href(urls.FILTERS, urls.layer_anchor(d)), info.name)
            for d, info in enumerate(b.report.layers)
        ),
        definitions=tuple(
            Fact(k.replace("_", " "), DEFINITIONS[k]) for k in ("dead_filter", "duplicate_filters")
        ),
    )


# ---------------------------------------------------------------- compare.html


@dataclass(frozen=True)
class CompareRow:
    anchor: str
    name: str
    summary: str
    wrong: tuple[Card, ...]
    correct: tuple[Card, ...]
    more: str | None


@dataclass(frozen=True)
class ConfusionCell:
    count: int
    css: str  # "diag", "off" or "zero"
    title: str


@dataclass(frozen=True)
class ConfusionRow:
    name: str
    cells: tuple[ConfusionCell, ...]


@dataclass(frozen=True)
class ClassRow:
    name: str
    images: int
    top1: str
    top5: str
    wrong: int


@dataclass(frozen=True)
class ComparePage:
    chrome: Chrome
    needs_labels: bool
    rows: tuple[CompareRow, ...]
    strip_legend: str
    omitted: str | None
    confusion_labels: tuple[str, ...]
    confusion: tuple[ConfusionRow, ...]
    confusion_note: str
    per_class: tuple[ClassRow, ...]
    all_correct: bool


def compare_page(b: Builder) -> ComparePage:
    r = b.report
    linker = b.base.for_page(urls.COMPARE)
    chrome = b.chrome(linker, "compare", f"Correct vs wrong — {r.model.name}")
    depths = strip_depths(len(r.layers))
    legend = (
        "Each strip shows the channel-mean map of "
        + (
            f"all {len(depths)} conv layers"
            if len(depths) == len(r.layers)
            else f"{len(depths)} of {len(r.layers)} conv layers (depths {', '.join(str(d + 1) for d in depths)})"
        )
        + ", shallow (left) to deep (right), each scaled to its own min–max."
    )
    rows = []
    for row in r.selection.compare:
        name = r.class_name(row.label)
        total = row.wrong_total + row.correct_total
        more = None
        if row.wrong_total > len(row.wrong):
            more = f"{row.wrong_total - len(row.wrong)} more wrong predictions of this class are in report.json."
        rows.append(
            CompareRow(
                anchor=linker.anchor(urls.class_anchor(row.label)),
                name=name,
                summary=f"{row.wrong_total} of {total} wrong (top-1 {pct(row.correct_total / total)})",
                wrong=tuple(_card(b, linker, i, with_strip=True) for i in row.wrong),
                correct=tuple(_card(b, linker, i, with_strip=True) for i in row.correct),
                more=more,
            )
        )
    acc = r.accuracy
    wrong_counts: dict[int, int] = {}
    for t, q, n in acc.confusion:
        if t != q:
            wrong_counts[t] = wrong_counts.get(t, 0) + n
    involved: dict[int, int] = {}
    for t, q, n in acc.confusion:
        involved[t] = involved.get(t, 0) + n
        involved[q] = involved.get(q, 0) + n
    chosen = sorted(sorted(involved, key=lambda c: (-involved[c], c))[:CONFUSION_LIMIT])
    counts = {(t, q): n for t, q, n in acc.confusion}
    confusion = tuple(
        ConfusionRow(
            name=r.class_name(t),
            cells=tuple(
                ConfusionCell(
                    count=counts.get((t, q), 0),
                    css="zero" if not counts.get((t, q)) else ("diag" if t == q else "off"),
                    title=f"true {r.class_name(t)}, predicted {r.class_name(q)}: {counts.get((t, q), 0)}",
                )
                for q in chosen
            ),
        )
        for t in chosen
        if any(tt == t for tt, _, _ in acc.confusion)
    )
    note = "Rows: true class; columns: predicted class. Diagonal cells are correct predictions."
    if len(involved) > len(chosen):
        note += (
            f" Showing the {len(chosen)} classes with the most images of {len(involved)} involved."
        )
    per_class = tuple(
        ClassRow(
            r.class_name(c.index), c.images, pct(c.top1), pct(c.top5), wrong_counts.get(c.index, 0)
        )
        for c in acc.per_class
    )
    omitted = None
    if r.selection.compare_classes_omitted:
        omitted = (
            f"{r.selection.compare_classes_omitted} more classes with wrong predictions are not "
            "shown here; every prediction is in report.json."
        )
    return ComparePage(
        chrome=chrome,
        needs_labels=acc.labeled == 0,
        rows=tuple(rows),
        strip_legend=legend,
        omitted=omitted,
        confusion_labels=tuple(r.class_name(q) for q in chosen),
        confusion=confusion,
        confusion_note=note,
        per_class=per_class,
        all_correct=acc.labeled > 0 and not rows,
    )


Page = IndexPage | FiltersPage | ComparePage | LayerPage | ImagePage


def build_pages(b: Builder) -> list[Page]:
    """Build every page model of the site, index first."""
    pages: list[Page] = [index_page(b), filters_page(b), compare_page(b)]
    pages += [layer_page(b, d) for d in range(len(b.report.layers))]
    pages += [image_page(b, i) for i in range(len(b.report.selection.showcase))]
    return pages
