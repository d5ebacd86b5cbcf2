"""Object masks (``--masks``): where the object is in each image, to weigh maps against.

``--masks`` names either a folder of mask images laid out like ``--images`` (the same
relative path, any image extension; a pixel above half brightness is the object), or a
CSV file of boxes ``path,x0,y0,x1,y1`` in the image's own pixels (several rows for one
path are joined). A mask is read in the image's geometry and goes through the same
resize and centre crop as the image (:meth:`reportgen.models.preprocess.Preprocess.mask`).
Images without a mask are left out of every share, and the report says how many.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from ..errors import ImagesError
from .files import ImageFile

__all__ = ["Masks", "read_masks"]

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Masks:
    """Where each image's object mask comes from: a mask file, or boxes."""

    source: str  # as the report states it
    files: dict[int, Path]  # image index → mask image
    boxes: dict[int, tuple[Box, ...]]  # image index → boxes in its pixels

    def __len__(self) -> int:
        return len(self.files) + len(self.boxes)

    def __contains__(self, index: object) -> bool:
        return index in self.files or index in self.boxes

    def image(self, index: int, size: tuple[int, int]) -> Image.Image | None:
        """Return image ``index``'s mask as an 8-bit picture of ``size`` (its image's), or None."""
        if index in self.boxes:
            mask = Image.new("L", size, 0)
            pen = ImageDraw.Draw(mask)
            for x0, y0, x1, y1 in self.boxes[index]:
                pen.rectangle((x0, y0, x1, y1), fill=255)
            return mask
        path = self.files.get(index)
        if path is None:
            return None
        try:
            with Image.open(path) as opened:
                read: Image.Image = opened.convert("L")
        except (OSError, ValueError) as exc:
            raise ImagesError(f"--masks: cannot read the mask {path}: {exc}") from None
        if read.size != size:
            raise ImagesError(
                f"--masks: the mask {path} is {read.size[0]}×{read.size[1]} px, its image "
                f"{size[0]}×{size[1]} px; a mask must have its image's size"
            )
        return read


def _boxes(path: Path, files: Sequence[ImageFile]) -> dict[int, tuple[Box, ...]]:
    index = {f.rel: i for i, f in enumerate(files)}
    found: dict[int, list[Box]] = {}
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError) as exc:
        raise ImagesError(f"cannot read --masks {path}: {exc}") from None
    first = 1
    if rows and rows[0] and rows[0][0].strip().lower() == "path":
        rows, first = rows[1:], 2
    for number, row in enumerate(rows, start=first):
        if not row or not "".join(row).strip():
            continue
        if len(row) != 5:
            raise ImagesError(
                f"--masks {path}, line {number}: expected path,x0,y0,x1,y1, got {len(row)} fields"
            )
        try:
            x0, y0, x1, y1 = (float(v) for v in row[1:])
        except ValueError:
            raise ImagesError(
                f"--masks {path}, line {number}: the box {','.join(row[1:])} is not four numbers"
            ) from None
        rel = row[0].strip().replace("\\", "/")
        if rel in index:
            found.setdefault(index[rel], []).append((x0, y0, x1, y1))
    return {i: tuple(b) for i, b in sorted(found.items())}


def read_masks(path: Path, files: Sequence[ImageFile]) -> Masks:
    """Match ``--masks`` to the collected images: a folder of masks, or a CSV of boxes."""
    if path.is_file():
        boxes = _boxes(path, files)
        return Masks(f"boxes from {path}", {}, boxes)
    if not path.is_dir():
        raise ImagesError(
            f"--masks {path}: no such folder or file; pass a folder of masks laid out like "
            "--images, or a CSV of boxes path,x0,y0,x1,y1"
        )
    by_stem: dict[str, Path] = {}
    for mask in sorted(path.rglob("*")):
        if mask.is_file():
            rel = mask.relative_to(path).with_suffix("").as_posix()
            by_stem.setdefault(rel, mask)
    matched = {
        i: by_stem[stem]
        for i, f in enumerate(files)
        if (stem := f.rel.rsplit(".", 1)[0]) in by_stem
    }
    return Masks(f"masks from {path}", matched, {})
