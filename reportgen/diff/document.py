"""The diff's ``report.json``: the comparison's facts for machines, sorted keys, versioned."""

from __future__ import annotations

from typing import Any

from ..report.document import json_text
from ..report.facts import Report
from .cka import Estimate
from .facts import Comparison, Flip

__all__ = ["DIFF_SCHEMA_VERSION", "diff_json"]

DIFF_SCHEMA_VERSION = 1


def _estimate(e: Estimate | None) -> dict[str, Any] | None:
    return None if e is None else {"value": e.value, "low": e.low, "high": e.high}


def _model(label: str, report: Report) -> dict[str, Any]:
    acc = report.accuracy
    return {
        "label": label,
        "name": report.model.name,
        "weights": report.model.weights,
        "untrained": report.model.untrained,
        "parameters": report.model.parameters,
        "top1": acc.top1,
        "top5": acc.top5,
        "per_class_top1": {report.class_name(c.index): c.top1 for c in acc.per_class},
        "findings": [
            {"kind": f.kind, "severity": f.severity, "layer": f.layer} for f in report.findings
        ],
    }


def _flip(report: Report, flip: Flip) -> dict[str, Any]:
    return {
        "path": flip.path,
        "true": report.class_name(flip.label),
        "a": [report.class_name(flip.a[0]), flip.a[1]],
        "b": [report.class_name(flip.b[0]), flip.b[1]],
    }


def diff_json(c: Comparison) -> str:
    """Serialize the comparison with sorted keys, one layer a record."""
    document: dict[str, Any] = {
        "schema_version": DIFF_SCHEMA_VERSION,
        "kind": "featreport diff",
        "generator": dict(c.a.versions),
        "built_at": c.a.built_at,
        "a": _model(c.label_a, c.a),
        "b": _model(c.label_b, c.b),
        "images": len(c.a.images),
        "skipped": [{"path": s.rel, "reason": s.reason} for s in c.a.skipped],
        "estimator": c.estimator,
        "aligned": c.aligned,
        "interval": {"level": c.level, "replicates": c.replicates, "groups": c.groups},
        "floor": c.floor_note,
        "shuffled_pairs": c.pairs_null,
        "layers": [
            {
                "depth": layer.depth,
                "name": layer.name,
                "point": layer.point,
                "cka": _estimate(layer.cka),
                "shuffled": layer.null,
                "floor": layer.floor,
                "samples": layer.samples,
                "mean_cosine_drift": layer.mean_cosine_drift,
                "channels": [
                    [
                        ch.channel,
                        ch.cosine_drift,
                        ch.relative_change,
                        ch.correlation,
                        ch.top_overlap,
                    ]
                    for ch in layer.channels
                ],
                "dead_a": list(layer.dead_a),
                "dead_b": list(layer.dead_b),
                "duplicate_pairs_a": layer.duplicates_a,
                "duplicate_pairs_b": layer.duplicates_b,
                "findings_a": list(layer.findings_a),
                "findings_b": list(layer.findings_b),
            }
            for layer in c.layers
        ],
        "channel_columns": [
            "channel",
            "cosine_drift",
            "relative_change",
            "correlation",
            "top_overlap",
        ],
        "heatmap": None
        if c.heatmap is None
        else {
            "rows": [layer.name for layer in c.layers],
            "columns": list(c.layers_b),
            "chunks": c.heatmap.chunks,
            "value": [list(r) for r in c.heatmap.value],
            "low": [list(r) for r in c.heatmap.low],
            "high": [list(r) for r in c.heatmap.high],
            "shuffled": [list(r) for r in c.heatmap.null],
        },
        "agreement": c.agreement,
        "flips": {
            "a_right_b_wrong": [_flip(c.a, f) for f in c.flips_ab],
            "a_wrong_b_right": [_flip(c.a, f) for f in c.flips_ba],
        },
        "checkpoints": [
            {
                "name": cp.name,
                "cka_to_final": list(cp.cka),
                "drift_to_final": list(cp.drift),
                "top1": cp.top1,
            }
            for cp in c.checkpoints
        ],
        "warnings": list(c.warnings),
    }
    return json_text(document)
