"""Analysis: pure functions from measured facts to verdicts, and the site's choices."""

from __future__ import annotations

__all__: list[str] = []
