"""The report: the facts of one build as records, where they came from, and report.json."""

from __future__ import annotations

__all__: list[str] = []
