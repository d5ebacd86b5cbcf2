"""The site's layout: every generated file name, and links between them.

Names are built from indices only (image 7 is ``images/image-0007.html``), never from
user file, class or module names, so nothing a user names can escape ``--out`` or
break a URL. In single-file mode every page becomes a section of one document and
links become fragment links; the :class:`Linker` hides that difference from pages.
"""

from __future__ import annotations

import base64
import dataclasses
import posixpath
from dataclasses import dataclass
from pathlib import PurePosixPath

__all__ = [
    "FILTERS",
    "INDEX",
    "MARKER",
    "MIME",
    "MISTAKES",
    "STYLE",
    "Linker",
    "accuracy_anchor",
    "cam_picture",
    "channel_chart_picture",
    "class_anchor",
    "class_page",
    "filter_picture",
    "grid_picture",
    "image_page",
    "input_picture",
    "layer_anchor",
    "layer_page",
    "mean_picture",
    "norm_chart_picture",
    "relative",
    "section_id",
    "strip_picture",
    "taken_anchor",
    "unit_page",
    "unit_picture",
]

INDEX = "index.html"
FILTERS = "filters.html"
MISTAKES = "mistakes.html"
STYLE = "assets/style.css"
MARKER = ".featreport-site"
MIME = {".webp": "image/webp", ".png": "image/png", ".svg": "image/svg+xml"}


def image_page(index: int) -> str:
    """Name the page of the image at file index ``index``."""
    return f"images/image-{index + 1:04d}.html"


def layer_page(depth: int) -> str:
    """Name the page of the layer at ``depth``."""
    return f"layers/layer-{depth + 1:03d}.html"


def layer_anchor(depth: int) -> str:
    """Name the anchor of a layer's section on a page."""
    return f"layer-{depth + 1:03d}"


def class_anchor(label: int) -> str:
    """Name the anchor of a class's section on the mistakes page."""
    return f"class-{label}"


def accuracy_anchor(label: int) -> str:
    """Name the anchor of a class's row in the mistakes page's per-class accuracy table."""
    return f"accuracy-{label}"


def input_picture(index: int, ext: str) -> str:
    """Name the picture of an image as the model sees it."""
    return f"img/inputs/image-{index + 1:04d}.{ext}"


def strip_picture(index: int, depth: int, ext: str) -> str:
    """Name one tile of an image's shallow-to-deep strip: its channel-mean map at ``depth``."""
    return f"img/strips/image-{index + 1:04d}/layer-{depth + 1:03d}.{ext}"


def unit_page(depth: int, channel: int) -> str:
    """Name the page of one channel of the layer at ``depth``: its examples over the folder."""
    return f"units/layer-{depth + 1:03d}/channel-{channel:04d}.html"


def unit_picture(depth: int, channel: int, kind: str, rank: int, ext: str) -> str:
    """Name a unit page's example picture: ``kind`` is top, bottom, quantile or field."""
    return f"img/units/layer-{depth + 1:03d}/channel-{channel:04d}/{kind}-{rank + 1:02d}.{ext}"


def class_page(label: int) -> str:
    """Name the page of every mistake of the true class ``label``."""
    return f"mistakes/class-{label + 1:04d}.html"


def taken_anchor(predicted: int) -> str:
    """Name the anchor of the mistakes taken for class ``predicted`` on a class's page."""
    return f"taken-for-{predicted + 1}"


def cam_picture(index: int, label: int, ext: str) -> str:
    """Name an image's class activation map for one class, laid over the image."""
    return f"img/cams/image-{index + 1:04d}-class-{label + 1:04d}.{ext}"


def mean_picture(index: int, depth: int, ext: str) -> str:
    """Name an image's channel-mean map at one layer."""
    return f"img/maps/image-{index + 1:04d}/layer-{depth + 1:03d}-mean.{ext}"


def grid_picture(index: int, depth: int, ext: str) -> str:
    """Name an image's grid of strongest channels at one layer."""
    return f"img/maps/image-{index + 1:04d}/layer-{depth + 1:03d}-grid.{ext}"


def filter_picture(depth: int, ext: str) -> str:
    """Name a layer's filter grid."""
    return f"img/filters/layer-{depth + 1:03d}.{ext}"


def norm_chart_picture(depth: int) -> str:
    """Name a layer's chart of filter norms."""
    return f"img/charts/layer-{depth + 1:03d}-norms.svg"


def channel_chart_picture(depth: int) -> str:
    """Name a layer's chart of channel statistics."""
    return f"img/charts/layer-{depth + 1:03d}-channels.svg"


def relative(from_page: str, target: str) -> str:
    """Return the relative URL from the page at ``from_page`` to the site path ``target``."""
    start = posixpath.dirname(from_page) or "."
    return posixpath.relpath(target, start)


def section_id(page: str) -> str:
    """Name the section that holds ``page`` in a single-file site."""
    return "p-" + page.removesuffix(".html").replace("/", "-")


@dataclass(frozen=True)
class Linker:
    """Make hrefs, anchors and image sources for one page, for either site mode."""

    page: str
    single_file: bool
    inline: dict[str, bytes] | None = None  # asset bytes by path, in single-file mode

    def href(self, target: str, fragment: str | None = None) -> str:
        """Link to ``target`` (a site path), optionally to an anchor on it."""
        if self.single_file:
            return "#" + (self.anchor(fragment, target) if fragment else section_id(target))
        url = relative(self.page, target)
        return f"{url}#{fragment}" if fragment else url

    def anchor(self, local: str, page: str | None = None) -> str:
        """Return the id for ``local``: page-prefixed in single-file mode, where ids share one document."""
        if self.single_file:
            return f"{section_id(page or self.page)}--{local}"
        return local

    def src(self, asset: str) -> str:
        """Return an asset's URL, or its data URI in single-file mode."""
        if self.single_file and self.inline is not None:
            data = base64.b64encode(self.inline[asset]).decode("ascii")
            return f"data:{MIME[PurePosixPath(asset).suffix]};base64,{data}"
        return relative(self.page, asset)

    def for_page(self, page: str) -> Linker:
        """Return the linker of another page of the same site."""
        return dataclasses.replace(self, page=page)
