"""The build, stage by stage: collect → model → infer → select → draw → pages → write."""

from __future__ import annotations

import os
import platform
import sys
import webbrowser
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import click
import PIL
import torch
import torchvision
from tqdm import tqdm

from . import __version__, urls
from .collect import collect_images
from .config import BuildConfig
from .errors import FeatreportError, LabelsError
from .hooks import find_conv_layers
from .infer import capture_maps, run_inference
from .labels import read_class_names, resolve_labels
from .model import LoadedModel, load_model
from .pages import Builder, build_pages
from .pictures import Pictures, draw_images, draw_layers
from .render import render_page, render_single, stylesheet
from .report import ModelFacts, Report, to_json
from .select import select
from .site import SiteWriter, check_output
from .stats import Prediction, accuracy, filter_stats
from .timing import Timings
from .urls import Linker

Echo = Callable[[str], None]


def built_at() -> str | None:
    """Return the build time from ``SOURCE_DATE_EPOCH``, or None: sites carry no clock time."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not epoch:
        return None
    try:
        moment = datetime.fromtimestamp(int(epoch), tz=timezone.utc)
    except (ValueError, OverflowError, OSError):
        return None
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def versions() -> tuple[tuple[str, str], ...]:
    return (
        ("featreport", __version__),
        ("PyTorch", torch.__version__),
        ("torchvision", torchvision.__version__),
        ("Pillow", PIL.__version__),
        ("Python", platform.python_version()),
    )


def class_names(
    config: BuildConfig, loaded: LoadedModel, num_classes: int
) -> tuple[tuple[str, ...], str]:
    """Name the model's outputs, and say where the names came from."""
    if config.classes_file is not None:
        names = read_class_names(config.classes_file)
        if len(names) != num_classes:
            raise LabelsError(
                f"--classes {config.classes_file} has {len(names)} names but the model has "
                f"{num_classes} outputs; give one name per output, in output order"
            )
        return names, f"from {config.classes_file}"
    if loaded.categories and len(loaded.categories) == num_classes:
        return loaded.categories, "from the torchvision weights' metadata"
    return tuple(
        str(i) for i in range(num_classes)
    ), "class indices (no names given; see --classes)"


@contextmanager
def progress_bar(total: int, quiet: bool, stage: str, unit: str) -> Iterator[Callable[[int], None]]:
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


def build(config: BuildConfig, echo: Echo | None = None) -> Path:
    """Build the whole site for ``config`` and return the path of its index.html."""
    if echo is None:
        echo = (lambda message: None) if config.quiet else (lambda m: click.echo(m, err=True))
    if config.examples < 0 or config.max_channels < 1 or config.batch_size < 1:
        raise FeatreportError(
            "--examples must be 0 or more, --max-channels and --batch-size 1 or more"
        )
    check_output(config.out)
    clock = Timings()

    with clock.stage("find image files"):
        files, passed_over = collect_images(config.images, exclude=config.out)
    with clock.stage("load model"):
        loaded = load_model(config)
        layers = find_conv_layers(loaded.module, config.layers)
    with progress_bar(len(files), config.quiet, "inference", "img") as progress:
        result = run_inference(
            loaded, files, layers, config.batch_size, config.max_channels, progress, clock
        )
    names, names_source = class_names(config, loaded, result.num_classes)
    labels = resolve_labels(files, names, loaded.imagenet_classes, config.labels_file)
    for warning in labels.warnings:
        echo(f"Warning: {warning}")
    predictions = tuple(
        None if top is None else Prediction(top, label)
        for top, label in zip(result.top, labels.labels, strict=True)
    )

    selection = select(predictions, config.examples)
    wanted = {i: False for row in selection.compare for i in (*row.wrong, *row.correct)}
    wanted.update(dict.fromkeys(selection.showcase, True))
    with (
        progress_bar(len(wanted), config.quiet, "feature maps", "img") as progress,
        clock.stage("pass 2: feature maps of selected images"),
    ):
        captured = capture_maps(
            loaded, files, wanted, result, config.max_channels, config.batch_size, progress
        )

    preprocess = loaded.preprocess
    report = Report(
        model=ModelFacts(
            name=loaded.name,
            weights=loaded.weights,
            untrained=loaded.untrained,
            parameters=loaded.parameters,
            device=str(loaded.device),
            preprocessing=preprocess.describe(),
            preprocessing_source=preprocess.source,
            input_size=preprocess.crop,
            channels=preprocess.channels,
            class_source=names_source,
            logits_from=result.logits_from,
        ),
        versions=versions(),
        images_root=str(config.images),
        files=tuple(files),
        predictions=predictions,
        class_names=names,
        label_source=labels.source,
        skipped=tuple(sorted((*passed_over, *result.skipped), key=lambda s: s.rel)),
        warnings=labels.warnings,
        accuracy=accuracy([p for p in predictions if p is not None]),
        layers=result.layers,
        stats=result.stats,
        filters=tuple(filter_stats(m) for m in result.modules),
        calls_per_forward=result.calls_per_forward,
        not_called=result.not_called,
        selection=selection,
        channels_shown={i: tuple(m.channels for m in item.layers) for i, item in captured.items()},
        max_channels=config.max_channels,
        built_at=built_at(),
    )

    with SiteWriter(config.out) as site:
        pictures = Pictures(site.write_bytes, config.image_format, config.single_file)
        with pictures:
            with (
                progress_bar(len(captured), config.quiet, "drawing maps", "img") as progress,
                clock.stage("draw and encode feature maps"),
            ):
                draw_images(pictures, captured, preprocess, len(report.layers), progress)
                pictures.flush()
            with (
                progress_bar(
                    len(report.layers), config.quiet, "drawing layers", "layer"
                ) as progress,
                clock.stage("draw filters and charts"),
            ):
                draw_layers(pictures, report, result.modules, progress)
                pictures.flush()
        with clock.stage("render and write pages"):
            linker = Linker(urls.INDEX, config.single_file, pictures.inline)
            pages = build_pages(Builder(report, pictures.sizes, pictures.ext, linker))
            if config.single_file:
                title = f"featreport: {report.model.name}"
                site.write_text(urls.INDEX, render_single(pages, title, stylesheet()))
            else:
                site.write_text(urls.STYLE, stylesheet())
                for page in pages:
                    site.write_text(page.chrome.path, render_page(page))
            site.write_text("report.json", to_json(report))
        with clock.stage("move the site into place"):
            out = site.publish()
    if config.profile:
        click.echo(clock.table(), err=True)

    index = out / urls.INDEX
    if config.open_browser:
        webbrowser.open(index.absolute().as_uri())
    return index
