"""featreport: static HTML reports of what a PyTorch CNN sees, shallow to deep."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from torch import nn

__all__ = ["__version__", "build_report"]


def build_report(
    model: str | nn.Module,
    images: str | Path,
    out: str | Path = "featreport-site",
    **options: object,
) -> Path:
    """Build a report site and return the path of its ``index.html``.

    ``model`` is a torchvision model name, ``path/to/file.py:Name``,
    ``package.module:Name`` or an ``nn.Module`` you built. ``options`` are the options of
    ``featreport build`` by name, with underscores (``batch_size=4``, ``classes="c.txt"``,
    ``weights="none"``); an unknown name raises :class:`reportgen.errors.ConfigError`.
    ``quiet`` defaults to True here. Failures raise subclasses of
    :class:`reportgen.errors.FeatreportError`.
    """
    from .config import BuildConfig
    from .pipeline import build

    values: dict[str, object] = {"quiet": True, **options}
    values.update(model=model, images=Path(images), out=Path(out))
    return build(BuildConfig.from_options(values, source="build_report"))
