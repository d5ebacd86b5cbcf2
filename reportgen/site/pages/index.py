"""The overview page, ``index.html``: the model, the data, the depth overview, the layers."""

from __future__ import annotations

from dataclasses import dataclass

from .. import urls
from .common import Card, Chrome, Fact, Link, PageContext, StripTile, pct, shape_text
from .findings import FindingGroup, finding_groups, severity_counts

__all__ = ["IndexPage", "LayerRow", "index_page"]

NOT_CALLED_NAMED = 10

LABEL_SOURCES = {
    "folders": "from the immediate subfolder of each image",
    "csv": "from the --labels CSV",
    "none": "none: no image has a known true class",
}


@dataclass(frozen=True)
class LayerRow:
    """One row of the conv-layer table."""

    depth: int
    link: Link
    type: str
    kernel: str
    stride: str
    groups: int
    shape: str
    block: str  # the norm and activation after the conv, or "—"
    dead_channels: int
    silent_channels: int
    dead_filters: int
    duplicate_pairs: int
    correlated_pairs: int
    findings: int


@dataclass(frozen=True)
class IndexPage:
    """The overview page."""

    chrome: Chrome
    findings: tuple[FindingGroup, ...]
    finding_counts: tuple[Fact, ...]
    findings_anchor: str
    definitions_anchor: str
    model: tuple[Fact, ...]
    data: tuple[Fact, ...]
    accuracy: tuple[Fact, ...]
    skipped: tuple[Fact, ...]
    warnings: tuple[str, ...]
    representative: Card | None
    strip: tuple[StripTile, ...]
    strip_point: str  # "activation" or "conv": where the strip's maps are measured
    layers: tuple[LayerRow, ...]
    showcase: tuple[Card, ...]
    filters_link: Link
    mistakes_link: Link
    definitions: tuple[Fact, ...]
    not_called: tuple[str, ...]  # the first few conv layers the forward pass never called
    not_called_count: int


def _model_facts(ctx: PageContext) -> list[Fact]:
    r, m = ctx.report, ctx.report.model
    facts = [
        Fact("Model", m.name),
        Fact("Weights", m.weights),
        Fact("Parameters", f"{m.parameters:,}"),
        Fact("Conv layers", f"{len(r.layers)} hooked, in forward order"),
        Fact("Input", f"{m.channels} × {m.input_size} × {m.input_size}"),
        Fact("Preprocessing", f"{m.preprocessing} (from {m.preprocessing_source})"),
        Fact("Logits", m.logits_from),
        Fact("Device", m.device),
        Fact("Precision", m.precision),
        Fact("Decoding", m.decoding),
        Fact("Class names", m.class_source),
    ]
    facts += [Fact(name, version) for name, version in r.versions]
    if r.built_at:
        facts.append(Fact("Built", r.built_at))
    return facts


def _data_facts(ctx: PageContext) -> tuple[list[Fact], list[Fact]]:
    r, acc = ctx.report, ctx.report.accuracy
    data = [
        Fact("Image folder", r.images_root),
        Fact("Images", f"{len(r.images)} read, {len(r.skipped)} skipped"),
        Fact("Classes", f"{len(r.class_names)}"),
        Fact("True labels", LABEL_SOURCES[r.label_source]),
        Fact("Labeled images", str(acc.labeled)),
    ]
    accuracy: list[Fact] = []
    if acc.labeled:
        accuracy = [
            Fact("Top-1 accuracy", f"{pct(acc.top1)} of {acc.labeled} labeled images"),
            Fact("Top-5 accuracy", pct(acc.top5)),
            Fact("Wrong predictions", str(acc.wrong)),
        ]
    return data, accuracy


def index_page(ctx: PageContext) -> IndexPage:
    """Build the overview page."""
    r = ctx.report
    linker = ctx.base.for_page(urls.INDEX)
    showcase = ctx.choices.selection.showcase
    representative = None
    strip: list[StripTile] = []
    if showcase:
        first = showcase[0]
        representative = ctx.card(linker, first)
        strip = [
            ctx.strip_tile(
                linker, layer.depth, ctx.mean_map(linker, first, layer.depth, at_least=0)
            )
            for layer in r.layers
        ]
    rows = tuple(
        LayerRow(
            depth=layer.depth + 1,
            link=Link(linker.href(urls.layer_page(layer.depth)), layer.conv.name),
            type=layer.conv.type,
            kernel=shape_text(layer.conv.kernel_size),
            stride=shape_text(layer.conv.stride),
            groups=layer.conv.groups,
            shape=shape_text(layer.conv_point.stats.output_shape),
            block=", ".join(
                t
                for t in (layer.block.norm and layer.block.norm.type, layer.block.activation_type)
                if t
            )
            or "—",
            dead_channels=len(layer.dead_channels),
            silent_channels=len(set(layer.silent) - set(layer.dead_channels)),
            dead_filters=len(layer.filters.dead),
            duplicate_pairs=len(layer.filters.duplicates),
            correlated_pairs=sum(
                rho > 0 for _, _, rho in (layer.correlations.pairs if layer.correlations else ())
            ),
            findings=sum(f.layer == layer.conv.name and f.severity != "info" for f in r.findings),
        )
        for layer in r.layers
    )
    data, accuracy = _data_facts(ctx)
    return IndexPage(
        chrome=ctx.chrome(linker, "index", f"featreport: {r.model.name}"),
        findings=finding_groups(ctx, linker, r.findings),
        finding_counts=severity_counts(r.findings),
        findings_anchor=linker.anchor("findings"),
        definitions_anchor=linker.anchor("definitions"),
        model=tuple(_model_facts(ctx)),
        data=tuple(data),
        accuracy=tuple(accuracy),
        skipped=tuple(Fact(s.rel, s.reason) for s in r.skipped),
        warnings=r.warnings,
        representative=representative,
        strip=tuple(strip),
        strip_point=ctx.choices.point,
        layers=rows,
        showcase=tuple(ctx.card(linker, i) for i in showcase),
        filters_link=Link(linker.href(urls.FILTERS), "All filters"),
        mistakes_link=Link(linker.href(urls.MISTAKES), "Correct vs wrong"),
        definitions=tuple(Fact(k.replace("_", " "), v) for k, v in sorted(r.definitions)),
        not_called=r.not_called[:NOT_CALLED_NAMED],
        not_called_count=len(r.not_called),
    )
