"""Models: the spec and its sources, checkpoints, preprocessing, logits, and the adapter."""

from __future__ import annotations

__all__: list[str] = []
