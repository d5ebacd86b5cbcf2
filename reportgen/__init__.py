"""featreport: static HTML reports of what a PyTorch CNN sees, shallow to deep."""

from __future__ import annotations

from collections.abc import Sequence
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
    *,
    weights: str = "DEFAULT",
    allow_pickle: bool = False,
    output_key: str | None = None,
    seed: int = 0,
    classes: str | Path | None = None,
    labels: str | Path | None = None,
    input_size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    device: str = "auto",
    batch_size: int = 16,
    layers: Sequence[str] = (),
    max_channels: int = 16,
    examples: int = 12,
    image_format: str = "webp",
    single_file: bool = False,
    open_browser: bool = False,
    quiet: bool = True,
) -> Path:
    """Build a report site and return the path of its ``index.html``.

    ``model`` is a torchvision model name, ``path/to/file.py:Name``,
    ``package.module:Name`` or an ``nn.Module`` you built; the other arguments are the
    options of ``featreport build``. Failures raise subclasses of
    :class:`reportgen.errors.FeatreportError`.
    """
    from .config import BuildConfig
    from .pipeline import build

    config = BuildConfig(
        model=model,
        images=Path(images),
        out=Path(out),
        weights=weights,
        allow_pickle=allow_pickle,
        output_key=output_key,
        seed=seed,
        classes_file=None if classes is None else Path(classes),
        labels_file=None if labels is None else Path(labels),
        input_size=input_size,
        mean=None if mean is None else tuple(float(m) for m in mean),
        std=None if std is None else tuple(float(s) for s in std),
        device=device,  # type: ignore[arg-type]
        batch_size=batch_size,
        layers=tuple(layers),
        max_channels=max_channels,
        examples=examples,
        image_format=image_format,  # type: ignore[arg-type]
        single_file=single_file,
        open_browser=open_browser,
        quiet=quiet,
    )
    return build(config)
