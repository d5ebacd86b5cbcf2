"""``report.json``: the report's facts for machines, with sorted keys and a schema version."""

from __future__ import annotations

import json
import math
from typing import Any

from .facts import ImageRecord, Report

__all__ = ["SCHEMA_VERSION", "to_json"]

SCHEMA_VERSION = 1


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
    }


def to_json(report: Report) -> str:
    """Serialize the report's facts with sorted keys, for machines."""
    images = [_image(report, image) for image in report.images]
    layers = [
        {
            "name": layer.conv.name,
            "type": layer.conv.type,
            "depth": layer.depth,
            "in_channels": layer.conv.in_channels,
            "out_channels": layer.conv.out_channels,
            "kernel_size": list(layer.conv.kernel_size),
            "stride": list(layer.conv.stride),
            "groups": layer.conv.groups,
            "calls_per_forward": layer.calls_per_forward,
            "output_shape": list(layer.stats.output_shape),
            "activation_min": _finite(layer.stats.activation_min),
            "activation_max": _finite(layer.stats.activation_max),
            "channel_mean": [_finite(v) for v in layer.stats.channel_mean],
            "channel_max": [_finite(v) for v in layer.stats.channel_max],
            "dead_channels": list(layer.stats.dead_channels),
            "filter_norms": [_finite(v) for v in layer.filters.norms],
            "dead_filters": list(layer.filters.dead),
            "duplicate_filters": [[a, b] for a, b, _ in layer.filters.duplicates],
        }
        for layer in report.layers
    ]
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
            "preprocessing": report.model.preprocessing,
            "logits": report.model.logits_from,
            "conv_layers": len(report.layers),
            "conv_layers_not_called": list(report.not_called),
        },
        "classes": list(report.class_names),
        "label_source": report.label_source,
        "images": images,
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
        "skipped": [{"path": s.rel, "reason": s.reason} for s in report.skipped],
        "warnings": list(report.warnings),
        "definitions": dict(report.definitions),
    }
    return (
        json.dumps(document, sort_keys=True, indent=1, ensure_ascii=False, allow_nan=False) + "\n"
    )
