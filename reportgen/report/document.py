"""``report.json``: the report's facts for machines, with sorted keys and a schema version."""

from __future__ import annotations

import json
import math
import statistics
import zlib
from collections.abc import Iterator
from typing import Any

from .facts import (
    PROPERTY_NAMES,
    CamMap,
    Cams,
    Example,
    Finding,
    ImageRecord,
    LayerRecord,
    PointRecord,
    Report,
    UnitExamples,
)

__all__ = ["IMAGES_FILE", "INLINE_IMAGES", "SCHEMA_VERSION", "images_lines", "json_text", "to_json"]

SCHEMA_VERSION = 2


def _finite(value: float) -> float | None:
    """Round for stable, compact JSON; NaN and infinities become null (JSON has neither)."""
    return round(value, 6) if math.isfinite(value) else None


def _image(report: Report, image: ImageRecord) -> dict[str, Any]:
    p = image.prediction
    return {
        "path": image.path,
        "label": report.class_name(p.label) if p.label is not None else None,
        "label_index": p.label,
        "prediction": report.class_name(p.predicted),
        "prediction_index": p.predicted,
        "confidence": _finite(p.confidence),
        "correct": p.correct,
        "top5": [
            {"class": report.class_name(c), "index": c, "probability": _finite(v)} for c, v in p.top
        ],
        "properties": {
            name: _finite(v) for name, v in zip(PROPERTY_NAMES, image.properties, strict=True)
        },
        "cams": _image_cams(report, image),
        "cam_randomized_rank_correlation": _randomized(report, image),
        "cam_energy_inside": _inside(report, image),
        "nearest_correct": [
            {"path": report.image(other).path, "similarity": _finite(similarity)}
            for other, similarity in report.nearest_by_index.get(image.index, ())
        ],
    }


def _inside(report: Report, image: ImageRecord) -> float | None:
    if report.cams is None:
        return None
    value = report.cams.inside_by_index.get(image.index)
    return None if value is None else _finite(value)


def _randomized(report: Report, image: ImageRecord) -> float | None:
    if report.cams is None:
        return None
    value = report.cams.randomized_by_index.get(image.index)
    return None if value is None else _finite(value)


def _image_cams(report: Report, image: ImageRecord) -> list[dict[str, Any]]:
    if report.cams is None:
        return []
    width = report.cams.layer.width
    return [_cam_map(report, m, width) for m in report.cams.by_index.get(image.index, ())]


def _cam_map(report: Report, cam: CamMap, width: int) -> dict[str, Any]:
    values = [_finite(v) for v in cam.values]
    return {
        "class": report.class_name(cam.label),
        "index": cam.label,
        "min": _finite(cam.min),
        "max": _finite(cam.max),
        "values": [values[row : row + width] for row in range(0, len(values), width)],
    }


def _median_of(values: list[float]) -> float | None:
    return _finite(statistics.median(values)) if values else None


def _cams(cams: Cams | None) -> dict[str, Any] | None:
    if cams is None:
        return None
    layer = cams.layer
    return {
        "method": cams.method,
        "layer": layer.name,
        "point": layer.point,
        "conv": layer.conv,
        "shape": [layer.channels, layer.height, layer.width],
        "images": len(cams.images),
        "masks": cams.masks,
        "images_with_masks": len(cams.inside),
        "randomized_layer": cams.randomized_layer,
        "median_randomized_rank_correlation": _median_of(
            [v for _, v in cams.randomized if v is not None]
        ),
    }


def _examples(report: Report, rows: tuple[tuple[Example, ...], ...]) -> list[list[list[Any]]]:
    """Write each channel's examples as ``[path, value, y, x]``."""
    return [[[report.image(e.image).path, _finite(e.value), e.y, e.x] for e in row] for row in rows]


def _units(report: Report, units: UnitExamples | None) -> dict[str, Any] | None:
    if units is None:
        return None
    return {
        "rule": "each image's spatial maximum per channel, highest first (bottom: spatial "
        "minimum, lowest first), ties by image order; quantiles of the maxima over a fixed "
        "sample of images",
        "map_size": [units.height, units.width],
        "top": None if units.top is None else _examples(report, units.top),
        "bottom": None if units.bottom is None else _examples(report, units.bottom),
        "quantile_levels": list(units.levels),
        "quantiles": None if units.quantiles is None else _examples(report, units.quantiles),
        "sample_size": units.sample_size,
    }


def _point(report: Report, record: PointRecord) -> dict[str, Any]:
    stats, moments = record.stats, record.moments
    return {
        "units": _units(report, record.units),
        "label": record.label,
        "activation_min": _finite(stats.activation_min),
        "activation_max": _finite(stats.activation_max),
        "channel_mean": [_finite(v) for v in stats.channel_mean],
        "channel_max": [_finite(v) for v in stats.channel_max],
        "channel_min": [_finite(v) for v in moments.min],
        "channel_std": [_finite(math.sqrt(v)) for v in moments.variance],
        "channel_image_spread": [_finite(v) for v in moments.image_spread],
        "positive_share": None
        if record.positive is None
        else [_finite(v) for v in record.positive],
        "constant_channels": list(stats.constant),
    }


def _layer(report: Report, layer: LayerRecord) -> dict[str, Any]:
    block, norm, corr = layer.block, layer.block.norm, layer.correlations
    return {
        "name": layer.conv.name,
        "type": layer.conv.type,
        "conv_note": layer.conv.note,
        "depth": layer.depth,
        "in_channels": layer.conv.in_channels,
        "out_channels": layer.conv.out_channels,
        "kernel_size": list(layer.conv.kernel_size),
        "stride": list(layer.conv.stride),
        "groups": layer.conv.groups,
        "calls_per_forward": layer.calls_per_forward,
        "output_shape": list(layer.conv_point.stats.output_shape),
        "block": {
            "norm": norm.name if norm else None,
            "norm_type": norm.type if norm else None,
            "activation": block.activation,
            "activation_type": block.activation_type,
        },
        "points": {record.point: _point(report, record) for record in layer.points},
        "receptive_field": None
        if layer.receptive_field is None
        else {
            "height": layer.receptive_field.height,
            "width": layer.receptive_field.width,
            "at_least": layer.receptive_field.at_least,
        },
        "norm_divergence": None
        if layer.norm_divergence is None
        else _finite(layer.norm_divergence),
        "dead_channels": list(layer.dead_channels),
        "silent_channels": list(layer.silent),
        "filter_norms": [_finite(v) for v in layer.filters.norms],
        "filter_smoothness": None
        if layer.filters.smoothness is None
        else _finite(layer.filters.smoothness),
        "dead_filters": list(layer.filters.dead),
        "duplicate_filters": [[a, b] for a, b, _ in layer.filters.duplicates],
        "correlated_channels": None
        if corr is None
        else {
            "point": corr.point,
            "samples": corr.samples,
            "positions_per_image": corr.positions,
            "pairs": [[a, b, _finite(r)] for a, b, r in corr.pairs],
            "total": corr.total,
        },
    }


def _finding(finding: Finding) -> dict[str, Any]:
    return {
        "kind": finding.kind,
        "severity": finding.severity,
        "message": finding.message,
        "layer": finding.layer,
        "channels": list(finding.channels),
        "pairs": [list(p) for p in finding.pairs],
        "classes": list(finding.classes),
        "evidence": {
            key: _finite(value) if isinstance(value, float) else value
            for key, value in finding.evidence
        },
    }


INLINE_IMAGES = 10_000  # above this many images, their records go to a JSON-lines file
IMAGES_FILE = "predictions.jsonl.gz"


def images_lines(report: Report) -> Iterator[bytes]:
    """Yield every image's record as gzip-compressed JSON lines (the fields of ``images[]``).

    The gzip header carries no time and no file name, so equal reports give equal bytes.
    """
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: a gzip container, mtime 0
    for image in report.images:
        line = json.dumps(
            _image(report, image), sort_keys=True, ensure_ascii=False, allow_nan=False
        )
        chunk = packer.compress((line + "\n").encode("utf-8"))
        if chunk:
            yield chunk
    yield packer.flush()


def to_json(report: Report, images_file: str | None = None) -> str:
    """Serialize the report's facts with sorted keys, for machines.

    With ``images_file``, the per-image records are left to that file (see
    :func:`images_lines`) and ``images`` is empty, so report.json stays a bounded summary.
    """
    images = [] if images_file else [_image(report, image) for image in report.images]
    layers = [_layer(report, layer) for layer in report.layers]
    acc = report.accuracy
    document: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "generator": dict(report.versions),
        "built_at": report.built_at,
        "model": {
            "name": report.model.name,
            "weights": report.model.weights,
            "untrained": report.model.untrained,
            "parameters": report.model.parameters,
            "device": report.model.device,
            "precision": report.model.precision,
            "decoding": report.model.decoding,
            "preprocessing": report.model.preprocessing,
            "logits": report.model.logits_from,
            "conv_layers": len(report.layers),
            "conv_layers_not_called": list(report.not_called),
        },
        "classes": list(report.class_names),
        "label_source": report.label_source,
        "images": images,
        "images_file": None
        if images_file is None
        else {"path": images_file, "images": len(report.images), "format": "gzip, JSON lines"},
        "layers": layers,
        "accuracy": {
            "labeled_images": acc.labeled,
            "top1": None if acc.top1 is None else _finite(acc.top1),
            "top5": None if acc.top5 is None else _finite(acc.top5),
            "per_class": [
                {
                    "class": report.class_name(c.index),
                    "index": c.index,
                    "images": c.images,
                    "top1": _finite(c.top1),
                    "top5": _finite(c.top5),
                }
                for c in acc.per_class
            ],
        },
        "findings": [_finding(f) for f in report.findings],
        "cam": _cams(report.cams),
        "conventions": [
            {
                "name": c.name,
                "mean": list(c.mean),
                "std": list(c.std),
                "bgr": c.bgr,
                "divergence": _finite(c.divergence),
                "current": c.current,
            }
            for c in report.conventions
        ],
        "skipped": [{"path": s.rel, "reason": s.reason} for s in report.skipped],
        "warnings": list(report.warnings),
        "definitions": dict(report.definitions),
    }
    return json_text(document)


def json_text(document: dict[str, Any]) -> str:
    """Return a document as featreport writes its JSON: sorted keys, compact lists."""
    out: list[str] = []
    _write(document, 0, out)
    return "".join(out) + "\n"


def _write(value: Any, depth: int, out: list[str]) -> None:
    """Write JSON with sorted keys, one key or nested value a line, and each list of plain
    values on one line: a list of 512 channel means, or an example ``[path, value, y, x]``,
    as one line keeps the file a third of its indented size. Pieces are appended to one
    list: generators nested as deep as the document cost a resume per level per piece."""
    if isinstance(value, dict) and value:
        inner = " " * (depth + 1)
        out.append("{\n")
        for i, key in enumerate(sorted(value)):
            out.append(f"{inner}{_plain(key)}: ")
            _write(value[key], depth + 1, out)
            out.append(",\n" if i < len(value) - 1 else "\n")
        out.append(" " * depth + "}")
    elif isinstance(value, list) and value and isinstance(value[0], (dict, list)):
        # The document's lists hold one kind of item each: the first says which.
        inner = " " * (depth + 1)
        out.append("[\n")
        for i, item in enumerate(value):
            out.append(inner)
            _write(item, depth + 1, out)
            out.append(",\n" if i < len(value) - 1 else "\n")
        out.append(" " * depth + "]")
    else:
        out.append(_plain(value))


def _plain(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, allow_nan=False)
