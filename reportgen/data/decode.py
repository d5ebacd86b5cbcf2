"""Decode one image file into an upright 8-bit picture, or say why it cannot be.

Decoding never raises for a bad file: it returns the reason, and the build lists that
file as skipped.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["load_image"]


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
