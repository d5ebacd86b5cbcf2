"""Find the image files under ``--images`` and decode them for the model.

The walk is sorted and never follows directory links, so the same folder always gives
the same list. Decoding never raises for a bad file: it returns the reason, and the
build lists that file as skipped.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImagesError


@dataclass(frozen=True)
class ImageFile:
    """One file found under the image folder."""

    path: Path
    rel: str  # relative to --images, '/'-separated
    folder_label: str | None  # the immediate subfolder, or None for files at the top


@dataclass(frozen=True)
class Skipped:
    """A file that is not part of the report, and why."""

    rel: str
    reason: str


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


def _to_8bit(image: Image.Image) -> Image.Image:
    """Scale 16-bit and float images to 8 bits instead of letting ``convert`` clip them."""
    if image.mode not in ("I", "I;16", "I;16B", "I;16L", "F"):
        return image
    array = np.asarray(image, dtype=np.float64)
    low, high = float(array.min()), float(array.max())
    if image.mode.startswith("I;16") and high <= 65535:
        low, high = 0.0, 65535.0
    scale = 255.0 / (high - low) if high > low else 0.0
    return Image.fromarray(((array - low) * scale).round().astype(np.uint8), mode="L")


def load_image(path: Path, mode: str) -> Image.Image | str:
    """Decode ``path`` as a ``mode`` ("RGB" or "L") image upright, or return why it cannot be."""
    try:
        if path.stat().st_size == 0:
            return "empty file (0 bytes)"
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.seek(0)
                image.load()
                upright = ImageOps.exif_transpose(image) or image
                upright = _to_8bit(upright)
                if upright.mode == "P" and "transparency" in upright.info:
                    upright = upright.convert("RGBA")
                if upright.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
                    # Transparent pixels hold arbitrary colours (often black): show them
                    # the way a browser shows the image on a white page.
                    upright = Image.alpha_composite(
                        Image.new("RGBA", upright.size, (255, 255, 255, 255)),
                        upright.convert("RGBA"),
                    )
                return upright.convert(mode)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return f"refused: too many pixels, possibly a decompression bomb ({exc})"
    except UnidentifiedImageError:
        return "not an image Pillow can identify"
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        return f"cannot be decoded: {exc}"
