"""``featreport diff``: two models (or a training run) on the same images, as a site.

files → the models (A, B, A's random initialisation, checkpoints between) → the
comparison pass (:mod:`reportgen.diff.run`) → each model's report and findings, as a
build makes them → the comparison's facts (:mod:`reportgen.diff.facts`) → pictures →
the page model → template → an atomic write of the site, with report.json.
"""

from __future__ import annotations

import dataclasses
import os
import re
import webbrowser
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import click
import torch

from ..config import WEIGHT_SUFFIXES, BuildConfig
from ..data.batches import batches
from ..data.files import ImageFile, collect_images
from ..drawing import visuals
from ..drawing.encoder import Pictures
from ..errors import ConfigError, FeatreportError, ModelError
from ..gather.cams import CamSettings, gather_cams
from ..models.load import LoadedModel, load_model
from ..pipeline import judge, make_report, progress_bar
from ..site.render import CSP_MULTI_PAGE, environment, stylesheet
from ..site.writer import SiteWriter, check_output
from ..timing import Timings
from . import charts
from .document import diff_json
from .facts import Comparison, Setup, compare
from .page import diff_page
from .run import Models, run_diff_pass

__all__ = ["FLIPS_SHOWN", "DiffConfig", "checkpoint_files", "diff"]

Echo = Callable[[str], None]
FLIPS_SHOWN = 24  # cards per direction; the rest are listed
NOT_FOR_DIFF = {
    "single_file": "--single-file",
    "predictions": "--predictions",
    "fail_on": "--fail-on",
    "masks": "--masks",
}


@dataclass(frozen=True)
class DiffConfig:
    """A comparison: the build options that apply, and what B is."""

    build: BuildConfig
    model_b: str | None = None  # another architecture
    weights_b: str | None = None
    checkpoints: tuple[Path, ...] = ()


def _number(path: Path) -> tuple[int, str]:
    found = re.findall(r"\d+", path.stem)
    return (int(found[-1]) if found else -1, path.name)


def checkpoint_files(given: Sequence[Path]) -> tuple[Path, ...]:
    """Return the checkpoints in training order: files as given, or a folder's weight
    files sorted by the last number in their names."""
    if len(given) == 1 and given[0].is_dir():
        found = [p for p in given[0].iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES)]
        files = sorted(found, key=_number)
    else:
        files = list(given)
    for path in files:
        if not path.is_file():
            raise ConfigError(f"--checkpoints {path}: no such file; give weight files or a folder")
    if len(files) < 2:
        raise ConfigError(
            f"--checkpoints: found {len(files)} checkpoint(s); give at least two weight files "
            f"({', '.join(WEIGHT_SUFFIXES)}) or a folder holding them"
        )
    return tuple(files)


def _check(config: DiffConfig) -> None:
    """Refuse options that do not apply to a comparison, and a B that is not given."""
    defaults = BuildConfig(model=config.build.model, data=config.build.data)
    given = config.build.options()
    for name, flag in NOT_FOR_DIFF.items():
        if given[name] != defaults.options()[name]:
            raise ConfigError(f"{flag} does not apply to featreport diff; leave it out")
    if int(os.environ.get("WORLD_SIZE", "1") or "1") > 1:
        raise ConfigError("featreport diff runs in one process; start it without torchrun")
    if not isinstance(config.build.model.model, str):
        raise ConfigError("featreport diff needs --model as a spec, not a module object")
    if config.checkpoints:
        if config.model_b is not None or config.weights_b is not None:
            raise ConfigError(
                "--checkpoints follows one model; leave out --model-b and --weights-b"
            )
    elif config.model_b is None and config.weights_b is None:
        raise ConfigError(
            "give what to compare model A with: --weights-b W (none: its untrained "
            "initialisation), --model-b SPEC, or --checkpoints c1.pt c2.pt ..."
        )


def _label(loaded: LoadedModel) -> str:
    return f"{loaded.name}, {loaded.weights}"


def load_models(
    config: DiffConfig, clock: Timings
) -> tuple[Models, list[str], str, tuple[str, ...]]:
    """Load A, B, A's random initialisation and the checkpoints between.

    Returns the models, their labels, what the floor is, and the checkpoints' names.
    """
    spec, run = config.build.model, config.build.run
    names: tuple[str, ...] = ()
    with clock.stage("load models"):
        if config.checkpoints:
            specs = [dataclasses.replace(spec, weights=str(p)) for p in config.checkpoints]
            loaded = [load_model(s, run) for s in specs]
            a, b, middle, spec_b = loaded[0], loaded[-1], tuple(loaded[1:-1]), specs[-1]
            spec = specs[0]
            names = tuple(p.name for p in config.checkpoints)
        else:
            a = load_model(spec, run)
            spec_b = dataclasses.replace(
                spec,
                model=config.model_b or spec.model,
                weights=config.weights_b or "DEFAULT",
            )
            b, middle = load_model(spec_b, run), ()
        aligned = spec_b.model == spec.model
        floor_seed = spec.seed + 1 if a.untrained else spec.seed
        same_as_b = aligned and b.untrained and spec_b.seed == floor_seed
        floor, missing = None, None
        if not same_as_b:
            try:
                floor = load_model(dataclasses.replace(spec, weights="none", seed=floor_seed), run)
            except FeatreportError as exc:  # an ONNX or Keras file has no untrained form
                missing = exc.message
    if missing is not None:
        floor_note = f"not measured: A's architecture cannot be initialised at random ({missing})"
    elif same_as_b:
        floor_note = (
            f"B itself: A's architecture initialised at random with seed {floor_seed}, so "
            "the floor of each layer is its CKA above"
        )
    else:
        floor_note = f"A's architecture initialised at random with seed {floor_seed}"
    labels = [_label(a), _label(b)]
    models = Models(a, b, floor, middle, aligned)
    return models, labels, floor_note, names


def _filters(loaded: LoadedModel) -> dict[str, torch.Tensor]:
    return {
        c.name: loaded.adapter.filters(c.name).detach().cpu() for c in loaded.adapter.conv_layers()
    }


def _warnings(models: Models) -> list[str]:
    a, b = models.a.preprocess, models.b.preprocess
    found: list[str] = []
    if a.describe() != b.describe():
        found.append(
            f"model B's own preprocessing ({b.describe()}) differs from A's; both models "
            f"were fed A's ({a.describe()}), so the same tensors go into both"
        )
    if models.a.untrained and models.b.untrained:
        found.append("both models are untrained: the comparison shows initialisations only")
    return found


def diff(config: DiffConfig, echo: Echo | None = None, timings: Timings | None = None) -> Path:
    """Compare two models (or a training run) on a folder of images and write the site."""
    build, run, site = config.build, config.build.run, config.build.site
    if echo is None:
        echo = (lambda m: None) if run.quiet else (lambda m: click.echo(m, err=True))
    clock = timings if timings is not None else Timings()
    _check(config)
    check_output(site.out)
    with clock.stage("find image files"):
        files, passed_over = collect_images(build.data.images, exclude=site.out)
    models, labels, floor_note, names = load_models(config, clock)
    with progress_bar(len(files), run.quiet, "comparison", "img") as progress:
        measured = run_diff_pass(build, models, files, progress, clock)
    with clock.stage("findings"):
        report_a = judge(
            make_report(build, files, passed_over, models.a, measured.a), files, models.a
        )
        report_b = judge(
            make_report(build, files, passed_over, models.b, measured.b), files, models.b
        )
    filters_a, filters_b = _filters(models.a), _filters(models.b)
    history: tuple[tuple[str, dict[str, torch.Tensor]], ...] = ()
    if config.checkpoints:
        history = tuple(
            (name, _filters(m))
            for name, m in zip(names, (models.a, *models.middle, models.b), strict=True)
        )
    warnings = _warnings(models)
    for warning in warnings:
        echo(f"Warning: {warning}")
    with clock.stage("compare"):
        setup = Setup(
            (labels[0], labels[1]),
            models.aligned,
            floor_note,
            filters_a,
            filters_b,
            history,
            warnings,
        )
        comparison = compare(report_a, report_b, measured, setup)
    with SiteWriter(site.out) as writer:
        with Pictures(writer.write_bytes, site.image_format, False) as pictures:
            with clock.stage("draw charts and filters"):
                _draw_charts(comparison, filters_a, filters_b, history, pictures)
            _draw_flips(config, models, files, comparison, pictures, clock, echo)
        with clock.stage("render and write pages"):
            page = diff_page(comparison, pictures.ext, pictures.sizes)
            writer.write_text("style.css", stylesheet())
            html = environment().get_template("diff.html").render(page=page, csp=CSP_MULTI_PAGE)
            writer.write_text("index.html", html)
            writer.write_text("report.json", diff_json(comparison))
        with clock.stage("move the site into place"):
            out = writer.publish()
    if run.profile:
        click.echo(clock.table(), err=True)
    index = out / "index.html"
    if site.open_browser:
        webbrowser.open(index.absolute().as_uri())
    return index


def _draw_charts(
    comparison: Comparison,
    filters_a: dict[str, torch.Tensor],
    filters_b: dict[str, torch.Tensor],
    history: Sequence[tuple[str, dict[str, torch.Tensor]]],
    pictures: Pictures,
) -> None:
    """Draw the charts and the first layer's filters (of A, B and every checkpoint)."""
    ext = pictures.ext
    layers = comparison.layers
    if comparison.aligned:
        pictures.add_svg(
            "charts/cka.svg",
            charts.cka_chart(
                [row.cka.value if row.cka else None for row in layers],
                [row.cka.low if row.cka else None for row in layers],
                [row.cka.high if row.cka else None for row in layers],
                [row.null for row in layers],
                [row.floor for row in layers],
            ),
            (900, 220),
        )
    else:
        pictures.add_svg(
            "charts/floor.svg",
            charts.cka_chart(
                [None] * len(layers),
                [None] * len(layers),
                [None] * len(layers),
                [None] * len(layers),
                [row.floor for row in layers],
            ),
            (900, 220),
        )
    if comparison.heatmap is not None:
        svg, width, height = charts.heatmap_chart(comparison.heatmap.value)
        pictures.add_svg("charts/heatmap.svg", svg, (width, height))
    first = layers[0].name if layers else None
    rgb = first is not None and comparison.a.layers[0].conv.rgb_filters
    shown = 64
    if first is not None and first in filters_a:
        draw_grid = visuals.filter_grid_rgb if rgb else visuals.filter_grid_gray
        pictures.add(f"filters/a.{ext}", draw_grid(filters_a[first][:shown]))
        if first in filters_b and comparison.aligned:
            pictures.add(f"filters/b.{ext}", draw_grid(filters_b[first][:shown]))
        for i, (_, filters) in enumerate(history):
            pictures.add(f"filters/checkpoint-{i:03d}.{ext}", draw_grid(filters[first][:16]))
    if history:
        ticks = [str(i + 1) for i in range(len(history))]
        names = range(len(layers))
        pictures.add_svg(
            "charts/training-cka.svg",
            charts.lines_chart([[c.cka[n] for c in comparison.checkpoints] for n in names], ticks),
            (440, 200),
        )
        drifts = [v for c in comparison.checkpoints for v in c.drift if v is not None]
        pictures.add_svg(
            "charts/training-drift.svg",
            charts.lines_chart(
                [[c.drift[n] for c in comparison.checkpoints] for n in names],
                ticks,
                0.0,
                max(drifts, default=1.0) or 1.0,
            ),
            (440, 200),
        )


def _draw_flips(
    config: DiffConfig,
    models: Models,
    files: Sequence[ImageFile],
    comparison: Comparison,
    pictures: Pictures,
    clock: Timings,
    echo: Echo,
) -> None:
    """Draw the flipped images shown as cards, and where each model looked in them."""
    ext = pictures.ext
    flips = [
        f.index for f in (*comparison.flips_ab[:FLIPS_SHOWN], *comparison.flips_ba[:FLIPS_SHOWN])
    ]
    prepare = models.a.preprocess
    with clock.stage("draw the flipped images"):
        for batch in batches(files, prepare, config.build.run.batch_size, sorted(flips)):
            if batch.pixels is None:
                continue
            for index, pixels in zip(batch.indices, batch.pixels, strict=True):
                pictures.add(
                    f"images/img-{index:05d}.{ext}",
                    visuals.input_image(pixels, prepare.mean, prepare.std),
                )
    site = config.build.site
    if site.cam != "none" and flips:
        by_index = {f.index: f for f in (*comparison.flips_ab, *comparison.flips_ba)}
        for side, loaded in (("a", models.a), ("b", models.b)):
            wanted = {
                i: ((by_index[i].a if side == "a" else by_index[i].b)[0],) for i in sorted(flips)
            }
            settings = CamSettings(
                site.cam_method, site.cam_layer if side == "a" else None, sanity=False
            )
            try:
                with (
                    clock.stage("gradient pass: class activation maps"),
                    closing(
                        gather_cams(
                            loaded.adapter,
                            files,
                            prepare,
                            wanted,
                            settings,
                            config.build.run.batch_size,
                        )
                    ) as stream,
                ):
                    for image in stream:
                        pictures.add(
                            f"cams/{side}-{image.index:05d}.{ext}",
                            visuals.cam_overlay(
                                image.input, image.maps[0], prepare.mean, prepare.std
                            ),
                        )
            except ModelError as exc:
                echo(f"Warning: no class activation maps for model {side.upper()}: {exc}")
