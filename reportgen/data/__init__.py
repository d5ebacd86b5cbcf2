"""Data: finding image files, decoding them, their labels, and batches for the model."""

from __future__ import annotations

__all__: list[str] = []
