"""Where a report came from: the versions that made it, and a build time only when asked."""

from __future__ import annotations

import os
import platform
from datetime import datetime, timezone

import PIL
import torch
import torchvision

from .. import __version__

__all__ = ["built_at", "versions"]


def built_at() -> str | None:
    """Return the build time from ``SOURCE_DATE_EPOCH``, or None: sites carry no clock time."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not epoch:
        return None
    try:
        moment = datetime.fromtimestamp(int(epoch), tz=timezone.utc)
    except (ValueError, OverflowError, OSError):
        return None
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def versions() -> tuple[tuple[str, str], ...]:
    """Name the versions of featreport and of what it ran on."""
    return (
        ("featreport", __version__),
        ("PyTorch", torch.__version__),
        ("torchvision", torchvision.__version__),
        ("Pillow", PIL.__version__),
        ("Python", platform.python_version()),
    )
