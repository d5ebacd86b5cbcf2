"""Pass 1: pluggable reducers, fed by taps, that tally the whole image set."""

from __future__ import annotations

__all__: list[str] = []
