"""Commands: the click group, its options derived from the config, and config files."""

from __future__ import annotations

__all__: list[str] = []
