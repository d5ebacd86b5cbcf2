"""Pass 2: maps of the selected images only, gathered and streamed batch by batch."""

from __future__ import annotations

__all__: list[str] = []
