"""The site: file layout and links, pictures and pages by kind, templates, the atomic write."""

from __future__ import annotations

__all__: list[str] = []
