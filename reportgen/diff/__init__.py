"""``featreport diff``: two checkpoints, or a model over its training, compared on one folder."""

from __future__ import annotations

__all__: list[str] = []
