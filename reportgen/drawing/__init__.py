"""Drawing: pure functions from tensors to pictures and numbers to SVG, and the encoder."""

from __future__ import annotations

__all__: list[str] = []
