"""The build, stage by stage, with plain records between the stages.

files → model adapter → pass 1 (a tally of reducers) → analysis (facts into a report) →
selection → pass 2 over the selected images, streamed into drawing → page models, one
at a time, into templates → an atomic write of the site.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import webbrowser
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import torch
from PIL import Image
from tqdm import tqdm

from . import processes
from .analysis.accuracy import accuracy
from .analysis.channels import channel_stats, dead_and_silent
from .analysis.filters import filter_stats
from .analysis.findings import find
from .analysis.findings.preprocessing import first_norm, layer_divergence
from .analysis.ranking import Ranking, ranking
from .analysis.rules import DEFINITIONS
from .analysis.selection import Selection, select
from .analysis.units import Mismatch, UnitChoice, choose_units
from .config import BuildConfig, RunConfig
from .data.batches import Loading, chunks
from .data.files import ImageFile, collect_images
from .data.labels import name_classes, resolve_labels
from .data.masks import Masks, read_masks
from .drawing.encoder import Pictures
from .errors import ConfigError, FindingsError, ModelError
from .gather.cams import CamSettings, ImageCams, energy_inside, gather_cams
from .gather.maps import ImageMaps, LayerMaps, gather_maps
from .gather.units import Need, UnitMaps, gather_unit_batch, gather_units, unit_batches
from .models.load import LoadedModel, load_model
from .report.document import IMAGES_FILE, INLINE_IMAGES, images_lines, to_json
from .report.facts import (
    CamMap,
    Cams,
    ConvFacts,
    ImageRecord,
    LayerRecord,
    ModelFacts,
    PointRecord,
    Prediction,
    ReceptiveField,
    Report,
    Skipped,
)
from .report.provenance import built_at, versions
from .site import urls
from .site.choices import SiteChoices
from .site.layout import strongest_channels
from .site.pages import PageContext, iter_pages
from .site.pictures import Strips, draw_cams, draw_image, draw_layer
from .site.render import render_page, render_single, stylesheet
from .site.units import draw_unit_filters, draw_units, plan_units
from .site.writer import SiteWriter, check_output
from .tally.conventions import fit_conventions
from .tally.features import nearest_correct
from .tally.pass1 import LayerTally, Pass1, Pass1Options, Pass1States, Pass1Tally
from .timing import Timings

__all__ = ["build", "judge", "make_report"]

Echo = Callable[[str], None]
Progress = Callable[[int], None]

CAMS = "gradient pass: class activation maps"
DRAW_CAMS = "draw class activation maps"
PASS2 = "pass 2: feature maps of selected images"
FIELDS = "receptive fields"
GATHER = "pass 1: gather and merge the processes' statistics"
UNITS = "unit pages: pass 2 and drawing"
DRAW_MAPS = "draw and encode feature maps"
DRAW_LAYERS = "draw filters and charts"
PAGES = "render and write pages"
FINDINGS = "findings"
SEVERITY_RANK = {"info": 0, "warning": 1, "error": 2}
NEAREST = 3  # correct images of the predicted class shown beside each mistake


@contextmanager
def progress_bar(total: int, quiet: bool, stage: str, unit: str) -> Iterator[Progress]:
    """Show one stage's progress on stderr, only when it is a terminal and not quiet."""
    bar = tqdm(
        total=total,
        desc=stage,
        unit=unit,
        file=sys.stderr,
        disable=quiet or not sys.stderr.isatty(),
        leave=False,
    )
    try:
        yield bar.update
    finally:
        bar.close()


def make_report(
    config: BuildConfig,
    files: Sequence[ImageFile],
    passed_over: Sequence[Skipped],
    loaded: LoadedModel,
    pass1: Pass1,
    fields: Mapping[str, ReceptiveField] | None = None,
) -> Report:
    """Turn what pass 1 measured into the report's facts: labels, accuracy, layer verdicts,
    and each layer's receptive field where ``fields`` has it."""
    names, names_source = name_classes(
        config.model.classes_file, loaded.categories, pass1.num_classes
    )
    labels = resolve_labels(files, names, loaded.imagenet_classes, config.data.labels_file)
    images = tuple(
        ImageRecord(i, files[i].rel, Prediction(top, labels.labels[i]), pass1.properties[i])
        for i, top in sorted(pass1.top.items())
    )
    fields = fields or {}
    layers = tuple(
        _layer_record(depth, layer, loaded, fields.get(layer.conv.name))
        for depth, layer in enumerate(pass1.layers)
    )
    nearest: dict[int, tuple[tuple[int, float], ...]] = {}
    if pass1.features is not None:
        wrong = {i.index: i.prediction.predicted for i in images if i.prediction.correct is False}
        right = [(i.index, i.prediction.predicted) for i in images if i.prediction.correct]
        nearest = nearest_correct(pass1.features, wrong, right, NEAREST)
    preprocess = loaded.preprocess
    return Report(
        model=ModelFacts(
            name=loaded.name,
            weights=loaded.weights,
            untrained=loaded.untrained,
            parameters=loaded.parameters,
            device=str(loaded.adapter.device),
            preprocessing=preprocess.describe(),
            preprocessing_source=preprocess.source,
            input_size=preprocess.crop,
            channels=preprocess.channels,
            class_source=names_source,
            logits_from=pass1.logits_from,
            precision=loaded.precision,
            decoding=_decoding(
                _loading(config.run, loaded.adapter.device), len(pass1.top), pass1.on_device
            ),
        ),
        versions=versions(),
        images_root=str(config.data.images),
        images=images,
        class_names=names,
        label_source=labels.source,
        skipped=tuple(sorted((*passed_over, *pass1.skipped), key=lambda s: s.rel)),
        warnings=labels.warnings,
        accuracy=accuracy([image.prediction for image in images]),
        layers=layers,
        not_called=pass1.not_called,
        definitions=tuple(DEFINITIONS.items()),
        built_at=built_at(),
        nearest=tuple(sorted(nearest.items())),
    )


def _layer_record(
    depth: int, layer: LayerTally, loaded: LoadedModel, field: ReceptiveField | None
) -> LayerRecord:
    """State one layer's facts and verdicts from what pass 1 measured."""
    points = tuple(
        PointRecord(
            point=p.point,
            label="conv output" if p.point == "conv" else layer.block.label,
            moments=p.moments,
            stats=channel_stats(p.moments),
            positive=p.positive,
            units=p.units,
        )
        for p in layer.points
    )
    after = points[1].moments if len(points) > 1 else None
    dead, silent = dead_and_silent(layer.block, points[0].stats, after)
    record = LayerRecord(
        depth=depth,
        conv=layer.conv,
        block=layer.block,
        points=points,
        filters=filter_stats(loaded.adapter.filters(layer.conv.name), layer.conv.groups),
        calls_per_forward=layer.calls_per_forward,
        correlations=layer.correlations,
        dead_channels=dead,
        silent=silent,
        fresh_norm_median=loaded.fresh_norm_medians.get(layer.conv.name),
        receptive_field=field,
    )
    return dataclasses.replace(record, norm_divergence=layer_divergence(record))


def judge(report: Report, files: Sequence[ImageFile], loaded: LoadedModel) -> Report:
    """Add the findings to a report, trying common input conventions when its preprocessing looks wrong."""
    findings = find(report)
    wrong = any(f.kind == "preprocessing_mismatch" and f.severity == "error" for f in findings)
    first = first_norm(report)
    if wrong and first is not None:
        indices = [image.index for image in report.images]
        fits = fit_conventions(loaded.adapter, files, loaded.preprocess, indices, first)
        report = dataclasses.replace(report, conventions=fits)
        findings = find(report)
    return dataclasses.replace(report, findings=findings)


def _gate(report: Report, fail_on: str | None, index: Path) -> None:
    """Raise FindingsError when a finding is at least as severe as ``--fail-on``."""
    if fail_on is None:
        return
    reached = [f for f in report.findings if SEVERITY_RANK[f.severity] >= SEVERITY_RANK[fail_on]]
    if reached:
        kinds = ", ".join(sorted({f"{f.kind} ({f.severity})" for f in reached}))
        raise FindingsError(
            f"{len(reached)} finding(s) at or above --fail-on {fail_on}: {kinds}; the report "
            f"is at {index}",
            index,
        )


def cam_classes(report: Report, selection: Selection, mode: str) -> dict[int, tuple[int, ...]]:
    """Say which images need class activation maps, and for which classes.

    ``selected``: the showcased images and every image the mistakes page shows; ``all``:
    every image. Each gets its predicted class, and a mistake its true class too.
    """
    if mode == "all":
        indices = {image.index for image in report.images}
    else:
        indices = set(selection.showcase)
        indices.update(i for row in selection.mistakes for i in row.with_strips)
    wanted: dict[int, tuple[int, ...]] = {}
    for index in sorted(indices):
        p = report.image(index).prediction
        labels: tuple[int, ...] = (p.predicted,)
        # A true class the model has no logit for (a folder beyond its classes) has no map.
        if p.label is not None and p.label != p.predicted and p.label < len(report.class_names):
            labels = (p.predicted, p.label)
        wanted[index] = labels
    return wanted


def _cam_maps(image: ImageCams) -> tuple[CamMap, ...]:
    """State one image's maps as facts: raw values at the layer's resolution, and ranges."""
    return tuple(
        CamMap(
            label=label,
            values=tuple(float(v) for v in cam.flatten().tolist()),
            min=float(cam.min()),
            max=float(cam.max()),
        )
        for label, cam in zip(image.labels, image.maps, strict=True)
    )


def _inside(
    image: ImageCams, masks: Masks, files: Sequence[ImageFile], loaded: LoadedModel
) -> float | None:
    """Return the share of an image's first map inside its object mask, if it has a mask."""
    with Image.open(files[image.index].path) as opened:
        size = opened.size
    mask = masks.image(image.index, size)
    if mask is None:
        return None
    return energy_inside(image.maps[0], loaded.preprocess.mask(mask))


@dataclass(frozen=True)
class CamJob:
    """What the gradient pass is asked for: each image's classes, and the object masks."""

    wanted: dict[int, tuple[int, ...]]
    masks: Masks | None


def _cams(
    config: BuildConfig,
    first: _FirstPass,
    job: CamJob,
    pictures: Pictures,
    clock: Timings,
    group: processes.Group | None,
) -> Cams:
    """Run the gradient pass over the job's images, draw each map over its image, and state them."""
    files, loaded = first.files, first.loaded
    site, preprocess, wanted, masks = config.site, loaded.preprocess, job.wanted, job.masks
    layer = loaded.adapter.cam_layer(site.cam_layer)
    settings = CamSettings(site.cam_method, site.cam_layer, sanity=layer.randomized is not None)
    if group is None:
        stream: Generator[ImageCams, None, None] = gather_cams(
            loaded.adapter,
            files,
            preprocess,
            wanted,
            settings,
            config.run.batch_size,
            first.loading,
        )
    else:
        group.broadcast(("cams", (dict(wanted), settings)))
        device = loaded.adapter.device
        stream = (
            dataclasses.replace(c, input=c.input.to(device))
            for c in _spread_cams(config, first, group, wanted, settings)
        )
    images: list[tuple[int, tuple[CamMap, ...]]] = []
    randomized: list[tuple[int, float | None]] = []
    inside: list[tuple[int, float | None]] = []
    with (
        progress_bar(len(wanted), config.run.quiet, "class activation maps", "img") as progress,
        closing(stream),
    ):
        while True:
            with clock.stage(CAMS):
                image = next(stream, None)
            if image is None:
                break
            with clock.stage(DRAW_CAMS):
                draw_cams(pictures, image, preprocess.mean, preprocess.std)
                if masks is not None and image.index in masks:
                    inside.append((image.index, _inside(image, masks, files, loaded)))
            images.append((image.index, _cam_maps(image)))
            randomized.append((image.index, image.randomized))
            progress(1)
    return Cams(
        method=site.cam_method,
        layer=layer,
        images=tuple(images),
        randomized_layer=layer.randomized if settings.sanity else None,
        randomized=tuple(randomized) if settings.sanity else (),
        masks=None if masks is None else masks.source,
        inside=tuple(inside),
    )


def _with_cams(
    config: BuildConfig,
    first: _FirstPass,
    report: Report,
    job: CamJob,
    pictures: Pictures,
    clock: Timings,
    group: processes.Group | None,
) -> Report:
    """Add class activation maps to the report; with the layer chosen for the user, a model
    whose logits do not depend on it gets a warning instead of a failed build."""
    try:
        cams = _cams(config, first, job, pictures, clock, group)
    except ModelError as exc:
        if config.site.cam_layer is not None:
            raise
        return dataclasses.replace(
            report, warnings=(*report.warnings, f"no class activation maps: {exc}")
        )
    report = dataclasses.replace(report, cams=cams)
    # Findings about the maps (with --masks) can only be judged now.
    return dataclasses.replace(report, findings=find(report))


def _draw(
    config: BuildConfig,
    first: _FirstPass,
    report: Report,
    selection: Selection,
    pictures: Pictures,
    clock: Timings,
    group: processes.Group | None,
) -> dict[int, tuple[tuple[int, ...], ...]]:
    """Run pass 2 over the selected images and draw every picture; return the channels shown."""
    files, loaded = first.files, first.loaded
    wanted = {i: False for row in selection.mistakes for i in row.with_strips}
    # The nearest correct images of the class each drawn mistake was taken for.
    nearest = report.nearest_by_index
    wanted.update(
        (n, False) for row in selection.mistakes for i in row.drawn for n, _ in nearest.get(i, ())
    )
    wanted.update(dict.fromkeys(selection.showcase, True))
    preprocess, quiet = loaded.preprocess, config.run.quiet
    shown: dict[int, tuple[tuple[int, ...], ...]] = {}
    site = config.site
    rankings = [ranking(layer, site.point, site.rank) for layer in report.layers]
    job = _MapsJob(rankings, wanted, site.max_channels)
    if group is None:
        stream: Generator[ImageMaps, None, None] = gather_maps(
            loaded.adapter,
            files,
            preprocess,
            rankings,
            wanted,
            site.max_channels,
            config.run.batch_size,
            first.loading,
        )
    else:
        group.broadcast(("maps", job))
        stream = (_on(m, loaded.adapter.device) for m in _spread_maps(config, first, group, job))
    groups = [row.with_strips for row in selection.mistakes]
    strips = Strips(pictures, groups, len(report.layers), shared=site.strip_scale == "class")
    with progress_bar(len(wanted), quiet, "feature maps", "img") as progress, closing(stream):
        while True:
            with clock.stage(PASS2):
                maps = next(stream, None)
            if maps is None:
                break
            with clock.stage(DRAW_MAPS):
                draw_image(pictures, maps, preprocess.mean, preprocess.std)
                strips.add(maps)
            shown[maps.index] = tuple(layer.channels for layer in maps.layers)
            progress(1)
        with clock.stage(DRAW_MAPS):
            pictures.flush()
    with (
        progress_bar(len(report.layers), quiet, "drawing layers", "layer") as progress,
        clock.stage(DRAW_LAYERS),
    ):
        for layer in report.layers:
            stats = layer.at(site.point).stats
            strongest = strongest_channels(stats, site.max_channels)
            draw_layer(pictures, layer, loaded.adapter.filters(layer.conv.name), stats, strongest)
            progress(1)
        pictures.flush()
    return shown


def units_asked(convs: Sequence[ConvFacts], per_layer: str, asked: Sequence[str]) -> UnitsAsked:
    """Read ``--units`` and ``--unit``, or say which value is wrong and what would be right.

    Checked against the model's conv layers before pass 1, so a typo costs no inference.
    """
    count: int | None = None
    if per_layer.strip().lower() != "all":
        try:
            count = int(per_layer)
        except ValueError:
            count = -1
        if count < 0:
            raise ConfigError(f"--units {per_layer!r}: give a number of channels per layer, or all")
    by_name = {conv.name: conv for conv in convs}
    named: list[tuple[str, int]] = []
    for item in asked:
        name, _, channel = item.rpartition(":")
        conv = by_name.get(name)
        if conv is None or not channel.isdigit():
            known = ", ".join(list(by_name)[:5])
            raise ConfigError(
                f"--unit {item!r}: give LAYER:CHANNEL with a conv layer of the report ({known}, …)"
            )
        if int(channel) >= conv.out_channels:
            raise ConfigError(f"--unit {item!r}: {name} has channels 0 to {conv.out_channels - 1}")
        named.append((name, int(channel)))
    return UnitsAsked(count, tuple(named))


@dataclass(frozen=True)
class UnitsAsked:
    """``--units`` (None for all) and the channels ``--unit`` names, as (layer, channel)."""

    per_layer: int | None
    named: tuple[tuple[str, int], ...]


def _units(
    config: BuildConfig,
    first: _FirstPass,
    report: Report,
    pictures: Pictures,
    clock: Timings,
    group: processes.Group | None,
) -> tuple[tuple[UnitChoice, ...], tuple[Mismatch, ...]]:
    """Choose the unit pages, run pass 2 over their examples' images, and draw them.

    Under torchrun, rank 0 sends the plan to every process and the batches are shared out.
    """
    files, loaded, asked = first.files, first.loaded, first.asked
    site, preprocess = config.site, loaded.preprocess
    labels = {image.index: image.prediction.label for image in report.images}
    depths = {layer.conv.name: layer.depth for layer in report.layers}
    # A named layer the forward pass never called has no examples; the report lists it.
    named = tuple((depths[name], c) for name, c in asked.named if name in depths)
    chosen = choose_units(
        report.layers, site.point, report.findings, labels, asked.per_layer, named
    )
    plan = plan_units(report, chosen, site.point)
    if group is not None:
        group.broadcast(("units", (plan.needs, depths)))
    if not plan.needs:
        return chosen, ()
    if group is None:
        stream = gather_units(
            loaded.adapter,
            files,
            preprocess,
            plan.needs,
            depths,
            config.run.batch_size,
            first.loading,
        )
    else:
        device = loaded.adapter.device
        stream = (
            UnitMaps(m.index, m.input.to(device), {k: v.to(device) for k, v in m.maps.items()})
            for m in _spread_units(config, first, group, plan.needs, depths)
        )
    with (
        progress_bar(len(plan.needs), config.run.quiet, "unit examples", "img") as progress,
        closing(stream),
        clock.stage(UNITS),
    ):

        def counted() -> Iterator[UnitMaps]:
            for image in stream:
                yield image
                progress(1)

        mismatches = draw_units(pictures, report, plan, counted(), preprocess.mean, preprocess.std)
        draw_unit_filters(pictures, report, chosen, loaded.adapter.filters)
        pictures.flush()
    return chosen, mismatches


def _spread_units(
    config: BuildConfig,
    first: _FirstPass,
    group: processes.Group,
    needs: Mapping[int, Sequence[Need]],
    depths: Mapping[str, int],
) -> Iterator[UnitMaps]:
    """Run the unit pages' pass 2 across the processes (on rank 0: yield every image's maps)."""
    loaded, files, loading = first.loaded, first.files, first.loading

    def run(batch: list[int]) -> list[UnitMaps]:
        return gather_unit_batch(loaded.adapter, files, loaded.preprocess, needs, batch, loading)

    return processes.spread(group, unit_batches(needs, depths, config.run.batch_size), run)


def _spread_cams(
    config: BuildConfig,
    first: _FirstPass,
    group: processes.Group,
    wanted: Mapping[int, tuple[int, ...]],
    settings: CamSettings,
) -> Iterator[ImageCams]:
    """Run the gradient pass across the processes (on rank 0: yield every image's maps)."""
    loaded, files, loading = first.loaded, first.files, first.loading
    batches = chunks(sorted(wanted), config.run.batch_size)

    def run(batch: list[int]) -> list[ImageCams]:
        asked = {i: wanted[i] for i in batch}
        stream = gather_cams(
            loaded.adapter, files, loaded.preprocess, asked, settings, len(batch), loading
        )
        return [dataclasses.replace(c, input=c.input.cpu()) for c in stream]

    return processes.spread(group, batches, run)


@dataclass(frozen=True)
class _MapsJob:
    """What pass 2 for the pages needs: each layer's ranking, the images, how many channels."""

    rankings: list[Ranking]
    wanted: dict[int, bool]
    max_channels: int


def _on(image: ImageMaps, device: torch.device) -> ImageMaps:
    """Move one image's maps to ``device`` (the host, to send them; back, to draw them)."""
    layers = tuple(
        LayerMaps(m.mean_map.to(device), m.channels, None if m.maps is None else m.maps.to(device))
        for m in image.layers
    )
    return ImageMaps(image.index, image.input.to(device), layers)


def _spread_maps(
    config: BuildConfig, first: _FirstPass, group: processes.Group, job: _MapsJob
) -> Iterator[ImageMaps]:
    """Run the pages' pass 2 across the processes (on rank 0: yield every image's maps)."""
    loaded, files, loading = first.loaded, first.files, first.loading
    batches = chunks(sorted(job.wanted), config.run.batch_size)
    host = torch.device("cpu")

    def run(batch: list[int]) -> list[ImageMaps]:
        asked = {i: job.wanted[i] for i in batch}
        stream = gather_maps(
            loaded.adapter,
            files,
            loaded.preprocess,
            job.rankings,
            asked,
            job.max_channels,
            len(batch),
            loading,
        )
        return [_on(m, host) for m in stream]

    return processes.spread(group, batches, run)


_NO_JOB: tuple[str, Any] = ("", None)


def _serve(config: BuildConfig, first: _FirstPass, group: processes.Group) -> None:
    """On a process other than rank 0: take a share of each job rank 0 sends, until the
    unit pages' pass 2, the last. A failure is sent to rank 0, which decides."""
    while True:
        kind, payload = group.broadcast(_NO_JOB)
        if kind == "cams":
            wanted, settings = payload
            for _ in _spread_cams(config, first, group, wanted, settings):
                pass  # the results go to rank 0
            continue
        if kind == "maps":
            for _ in _spread_maps(config, first, group, payload):
                pass
            continue
        needs, depths = payload
        for _ in _spread_units(config, first, group, needs, depths):
            pass
        return


def _write_pages(site: SiteWriter, ctx: PageContext, single_file: bool) -> None:
    """Build each page model, render it and write it, one page at a time."""
    if single_file:
        title = f"featreport: {ctx.report.model.name}"
        chunks = render_single(iter_pages(ctx), title, stylesheet())
        site.write_chunks(urls.INDEX, (chunk.encode("utf-8") for chunk in chunks))
        return
    site.write_text(urls.STYLE, stylesheet())
    for page in iter_pages(ctx):
        site.write_text(page.chrome.path, render_page(page))


def build(config: BuildConfig, echo: Echo | None = None, timings: Timings | None = None) -> Path:
    """Build the whole site for ``config`` and return the path of its index.html.

    ``timings``, when given, receives the seconds of every stage (as ``--profile`` prints).
    Started by torchrun in several processes, each runs pass 1 over its share of the
    images and rank 0 builds the site from the merged statistics (see ``processes``).
    """
    group = processes.from_environment(config.run.device)
    if group is None:
        return _build(config, echo, timings, None)
    with group:
        if group.rank != 0:
            quiet = dataclasses.replace(config.run, quiet=True, profile=False)
            site = dataclasses.replace(config.site, open_browser=False)
            config = dataclasses.replace(config, run=quiet, site=site)
        return _build(config, echo, timings, group)


def _loading(run: RunConfig, device: torch.device | None) -> Loading:
    """Read ``--workers`` and ``--decode`` for a model on ``device`` (None: check the values)."""
    value = run.workers.strip().lower()
    if value != "auto":
        try:
            count = int(value)
        except ValueError:
            count = -1
        if count < 0:
            raise ConfigError(
                f"--workers {run.workers!r}: give a number of processes (0 decodes between "
                "forward passes, on the main thread), or auto"
            )
    elif device is None or device.type == "cpu":
        count = 0
    else:
        available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        count = min(8, max(1, (available or os.cpu_count() or 2) - 1))
    if device is None:
        if run.decode == "gpu" and (run.device in ("cpu", "mps") or not torch.cuda.is_available()):
            raise ConfigError(
                "--decode gpu: JPEGs are decoded on a CUDA device only, and this build has "
                "none; use --decode cpu"
            )
        return Loading(count)
    cuda = device.type == "cuda"
    if run.decode == "gpu" and not cuda:
        raise ConfigError(
            f"--decode gpu: the model runs on {device}, and JPEGs are decoded on a CUDA "
            "device only; use --device cuda, or --decode cpu"
        )
    on_device = cuda and run.decode in ("gpu", "auto")
    return Loading(count, pin=cuda, decode_on=device if on_device else None)


def _images_file(asked: str | None, images: int) -> str | None:
    """Return the file the per-image records go to (``--predictions``, or by count), or None."""
    if asked is not None:
        name = asked.strip()
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*\.jsonl\.gz", name):
            raise ConfigError(
                f"--predictions {asked!r}: give a file name inside the site ending .jsonl.gz, "
                f"with no folder, such as {IMAGES_FILE}"
            )
        return name
    return IMAGES_FILE if images > INLINE_IMAGES else None


def _write_report(site: SiteWriter, report: Report, predictions: str | None) -> None:
    """Write report.json, with the images' records beside it when there are many."""
    images_file = _images_file(predictions, len(report.images))
    if images_file is not None:
        site.write_chunks(images_file, images_lines(report))
    site.write_text("report.json", to_json(report, images_file))


def _decoding(loading: Loading, read: int, on_device: int) -> str:
    """Say where the images were decoded, in aggregate, for the report."""
    if loading.decode_on is None:
        return "Pillow on the CPU"
    return (
        f"{on_device} of {read} images decoded on {loading.decode_on} "
        "(torchvision.io.decode_jpeg) and resized there; the rest with Pillow on the CPU "
        "(not JPEG, or refused by the device's decoder)"
    )


@dataclass(frozen=True)
class _FirstPass:
    """What every process has after its share of pass 1: inputs, model, the tally's states."""

    files: tuple[ImageFile, ...]
    passed_over: tuple[Skipped, ...]
    masks: Masks | None
    loaded: LoadedModel
    asked: UnitsAsked
    loading: Loading  # --workers and --decode, for every pass of this build
    tally: Pass1Tally
    states: Pass1States


def _first_pass(config: BuildConfig, clock: Timings, group: processes.Group | None) -> _FirstPass:
    """Check the inputs, load the model and run pass 1 over this process's images."""
    site_config, run = config.site, config.run
    _loading(run, None)  # a bad --workers or --decode fails before any work
    _images_file(site_config.predictions, 0)
    check_output(site_config.out)
    with clock.stage("find image files"):
        files, passed_over = collect_images(config.data.images, exclude=site_config.out)
        masks = None if config.data.masks is None else read_masks(config.data.masks, files)
    with clock.stage("load model"):
        loaded = load_model(config.model, run)
    asked = units_asked(loaded.adapter.conv_layers(), site_config.units, site_config.unit)
    shard = None if group is None else group.shard(len(files), run.batch_size)
    loading = _loading(run, loaded.adapter.device)
    options = Pass1Options(shard, site_config.unit_examples, site_config.point, loading)
    tally = Pass1Tally(loaded.adapter, files, loaded.preprocess, options)
    total = len(files) if shard is None else len(shard)
    with progress_bar(total, run.quiet, "inference", "img") as progress:
        states = tally.run(run.batch_size, progress, clock)
    return _FirstPass(
        tuple(files), tuple(passed_over), masks, loaded, asked, loading, tally, states
    )


def _shared_first_pass(
    config: BuildConfig, clock: Timings, group: processes.Group
) -> _FirstPass | None:
    """Run this process's share of pass 1 and merge every share on rank 0 (None elsewhere)."""
    try:
        first = _first_pass(config, clock, group)
    except Exception as error:
        # Every process joins the gather, failed or not, so none waits for one that is gone.
        with suppress(processes.RankFailed):
            group.gather(processes.failure(group.rank, error))
        if group.rank != 0:
            raise SystemExit(getattr(error, "exit_code", 1)) from None  # rank 0 says why
        raise
    with clock.stage(GATHER):
        parts = group.gather(first.states)
    if parts is None:
        _serve(config, first, group)
        return None
    with clock.stage(GATHER):
        return dataclasses.replace(first, states=first.tally.merge(parts))


def _build(
    config: BuildConfig, echo: Echo | None, timings: Timings | None, group: processes.Group | None
) -> Path:
    site_config, run = config.site, config.run
    if echo is None:
        echo = (lambda message: None) if run.quiet else (lambda m: click.echo(m, err=True))
    clock = timings if timings is not None else Timings()
    if group is None:
        first = _first_pass(config, clock, None)
    else:
        shared = _shared_first_pass(config, clock, group)
        if shared is None:
            return site_config.out / urls.INDEX  # rank 0 builds the site
        first = shared
    files, passed_over, masks, loaded = first.files, first.passed_over, first.masks, first.loaded
    pass1 = first.tally.finish(first.states, clock)
    with clock.stage(FIELDS):
        # Twice the input's side: ResNet-18's deepest field (435 px) fits in 448.
        fields = loaded.adapter.receptive_fields(2 * loaded.preprocess.crop)
    report = make_report(config, files, passed_over, loaded, pass1, fields)
    with clock.stage(FINDINGS):
        report = judge(report, files, loaded)
    for warning in report.warnings:
        echo(f"Warning: {warning}")
    warnings = report.warnings
    selection = select(report.images, site_config.examples)

    with SiteWriter(site_config.out) as site:
        with Pictures(
            site.write_bytes, site_config.image_format, site_config.single_file
        ) as pictures:
            if config.site.cam != "none":
                job = CamJob(cam_classes(report, selection, site_config.cam), masks)
                report = _with_cams(config, first, report, job, pictures, clock, group)
                for warning in report.warnings[len(warnings) :]:
                    echo(f"Warning: {warning}")
            shown = _draw(config, first, report, selection, pictures, clock, group)
            units, mismatches = _units(config, first, report, pictures, clock, group)
            if mismatches:
                found = (
                    f"{len(mismatches)} unit example(s) were not drawn: pass 2 did not "
                    "reproduce the maximum pass 1 recorded (did the model or the images "
                    "change during the build?)"
                )
                echo(f"Warning: {found}")
                report = dataclasses.replace(report, warnings=(*report.warnings, found))
        with clock.stage(PAGES):
            choices = SiteChoices(
                selection,
                shown,
                site_config.max_channels,
                site_config.point,
                site_config.rank,
                site_config.strip_scale,
                units,
                mismatches,
            )
            linker = urls.Linker(urls.INDEX, site_config.single_file, pictures.inline)
            ctx = PageContext(report, choices, pictures.sizes, pictures.ext, linker)
            _write_pages(site, ctx, site_config.single_file)
            _write_report(site, report, site_config.predictions)
        with clock.stage("move the site into place"):
            out = site.publish()
    if run.profile:
        click.echo(clock.table(), err=True)

    index = out / urls.INDEX
    if site_config.open_browser:
        webbrowser.open(index.absolute().as_uri())
    _gate(report, run.fail_on, index)
    return index
