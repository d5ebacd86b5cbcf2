"""The facts of one build, gathered as plain data, and ``report.json`` made from them."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from .collect import ImageFile, Skipped
from .hooks import ConvInfo
from .select import Selection
from .stats import DEFINITIONS, Accuracy, FilterStats, LayerStats, Prediction

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class ModelFacts:
    name: str
    weights: str
    untrained: bool
    parameters: int
    device: str
    preprocessing: str
    preprocessing_source: str
    input_size: int
    channels: int
    class_source: str
    logits_from: str


@dataclass(frozen=True)
class Report:
    """Everything the pages and report.json state, and nothing they do not."""

    model: ModelFacts
    versions: tuple[tuple[str, str], ...]
    images_root: str
    files: tuple[ImageFile, ...]
    predictions: tuple[Prediction | None, ...]  # per file; None where skipped
    class_names: tuple[str, ...]
    label_source: str
    skipped: tuple[Skipped, ...]
    warnings: tuple[str, ...]
    accuracy: Accuracy
    layers: tuple[ConvInfo, ...]
    stats: tuple[LayerStats, ...]
    filters: tuple[FilterStats, ...]
    calls_per_forward: tuple[int, ...]
    not_called: tuple[str, ...]
    selection: Selection
    channels_shown: dict[int, tuple[tuple[int, ...], ...]]  # image → per depth, strongest first
    max_channels: int
    built_at: str | None

    def class_name(self, index: int | None) -> str:
        if index is None:
            return "—"
        return self.class_names[index] if index < len(self.class_names) else str(index)

    @property
    def image_count(self) -> int:
        return sum(p is not None for p in self.predictions)


def _finite(value: float) -> float | None:
    """Round for stable, compact JSON; NaN and infinities become null (JSON has neither)."""
    return round(value, 6) if math.isfinite(value) else None


def to_json(report: Report) -> str:
    """Serialize the report's facts with sorted keys, for machines."""
    images = [
        {
            "path": f.rel,
            "label": report.class_name(p.label) if p.label is not None else None,
            "label_index": p.label,
            "prediction": report.class_name(p.predicted),
            "prediction_index": p.predicted,
            "confidence": _finite(p.confidence),
            "correct": p.correct,
            "top5": [
                {"class": report.class_name(c), "index": c, "probability": _finite(v)}
                for c, v in p.top
            ],
        }
        for f, p in zip(report.files, report.predictions, strict=True)
        if p is not None
    ]
    layers = [
        {
            "name": info.name,
            "type": info.type,
            "depth": depth,
            "in_channels": info.in_channels,
            "out_channels": info.out_channels,
            "kernel_size": list(info.kernel_size),
            "stride": list(info.stride),
            "groups": info.groups,
            "calls_per_forward": calls,
            "output_shape": list(stats.output_shape),
            "activation_min": _finite(stats.activation_min),
            "activation_max": _finite(stats.activation_max),
            "channel_mean": [_finite(v) for v in stats.channel_mean],
            "channel_max": [_finite(v) for v in stats.channel_max],
            "dead_channels": list(stats.dead_channels),
            "filter_norms": [_finite(v) for v in filters.norms],
            "dead_filters": list(filters.dead),
            "duplicate_filters": [[a, b] for a, b, _ in filters.duplicates],
        }
        for depth, (info, stats, filters, calls) in enumerate(
            zip(report.layers, report.stats, report.filters, report.calls_per_forward, strict=True)
        )
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
        "definitions": dict(DEFINITIONS),
    }
    return (
        json.dumps(document, sort_keys=True, indent=1, ensure_ascii=False, allow_nan=False) + "\n"
    )
