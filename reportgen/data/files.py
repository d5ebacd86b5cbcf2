"""Find the image files under ``--images``.

The walk is sorted and never follows directory links, so the same folder always gives
the same list.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..errors import ImagesError
from ..report.facts import Skipped

__all__ = ["ImageFile", "collect_images"]


@dataclass(frozen=True)
class ImageFile:
    """One file found under the image folder."""

    path: Path
    rel: str  # relative to --images, '/'-separated
    folder_label: str | None  # the immediate subfolder, or None for files at the top


def _image_extensions() -> frozenset[str]:
    Image.init()
    return frozenset(ext.lower() for ext in Image.registered_extensions())


def collect_images(
    root: Path, exclude: Path | None = None
) -> tuple[list[ImageFile], list[Skipped]]:
    """List the image files under ``root`` in sorted order, and the files passed over.

    ``exclude`` is the output folder: when it lies inside ``root``, neither it nor the
    temporary folders beside it are read, so a report never feeds on its own pictures.
    """
    if not root.exists():
        raise ImagesError(
            f"image folder {root} does not exist; pass an existing folder to --images"
        )
    if not root.is_dir():
        raise ImagesError(f"--images {root} is a file; pass the folder that holds the images")
    extensions = _image_extensions()
    found: list[ImageFile] = []
    skipped: list[Skipped] = []
    skip = exclude.absolute() if exclude is not None else None
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(dirpath)
        if skip is not None and base.absolute() == skip.parent:
            dirnames[:] = [
                d for d in dirnames if d != skip.name and not d.startswith(f".{skip.name}.")
            ]
        dirnames.sort()
        for name in sorted(filenames):
            path = base / name
            rel_parts = path.relative_to(root).parts
            rel = "/".join(rel_parts)
            if path.suffix.lower() not in extensions:
                skipped.append(
                    Skipped(
                        rel, f"not an image type Pillow reads ({path.suffix or 'no extension'})"
                    )
                )
                continue
            label = rel_parts[0] if len(rel_parts) > 1 else None
            found.append(ImageFile(path=path, rel=rel, folder_label=label))
    found.sort(key=lambda f: f.rel)
    skipped.sort(key=lambda s: s.rel)
    if not found:
        detail = f" ({len(skipped)} other files passed over)" if skipped else ""
        raise ImagesError(
            f"no image files found under {root}{detail}; featreport reads the formats Pillow "
            "reads (jpg, png, webp, bmp, gif, tiff) from the folder and its subfolders"
        )
    return found, skipped
