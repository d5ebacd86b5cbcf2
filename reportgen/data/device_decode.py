"""JPEG decoding on the model's device, for ``--decode gpu``.

File bytes are read on a few threads. JPEGs are decoded in one batched call of
``torchvision.io.decode_jpeg`` on the device (nvJPEG on CUDA), upright by their EXIF
orientation, then resized, centre cropped and normalized there with the settings of the
CPU path: torchvision's antialiased resize of tensors, where the CPU path resizes Pillow
images, so pixels differ by a few levels of 255 along edges. Every other file, and any
JPEG the device's decoder refuses, takes the CPU path (Pillow) on its own, with the same
reasons for files that cannot be read. Batches come in index order, as from ``batches``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, cast

import torch
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as tvf

from .batches import Batch, Unnormalize, chunks
from .decode import load_image
from .files import ImageFile

__all__ = ["JPEG_MAGIC", "Placement", "device_batches", "normalize_pixels", "prepare_on_device"]

JPEG_MAGIC = b"\xff\xd8\xff"
READERS = 4  # threads reading file bytes: enough to keep a GPU decoder fed from a local disk


class Placement(Unnormalize, Protocol):
    """The preprocessing settings the device path repeats (as ``Preprocess`` holds them)."""

    @property
    def resize(self) -> int:
        """Return the shorter side's length after resizing."""
        ...

    @property
    def crop(self) -> int:
        """Return the side of the centre crop."""
        ...

    @property
    def interpolation(self) -> str:
        """Return the resize's interpolation, as torchvision names it."""
        ...


def normalize_pixels(pixels: torch.Tensor, placement: Unnormalize) -> torch.Tensor:
    """Turn placed ``uint8 [C, H, W]`` pixels into the model's input, where they are."""
    x = pixels.to(torch.float32).div_(255.0)
    if placement.bgr and int(x.shape[0]) == 3:
        x = x.flip(0)
    return cast("torch.Tensor", tvf.normalize(x, list(placement.mean), list(placement.std)))


def prepare_on_device(image: torch.Tensor, placement: Placement) -> torch.Tensor:
    """Resize, centre crop and normalize one ``uint8 [C, H, W]`` image where it is."""
    mode = InterpolationMode(placement.interpolation)
    x = tvf.resize(image, [placement.resize], interpolation=mode, antialias=True)
    return normalize_pixels(tvf.center_crop(x, [placement.crop, placement.crop]), placement)


def _read(path: ImageFile) -> bytes | None:
    try:
        return path.path.read_bytes()
    except OSError:
        return None  # the CPU path reads it again and says why it cannot


def _decode(
    blobs: dict[int, bytes], mode: ImageReadMode, device: torch.device
) -> dict[int, torch.Tensor]:
    """Decode JPEG bytes on ``device``, all at once; one by one when the batch call fails."""
    if not blobs:
        return {}
    keys = sorted(blobs)
    data = [torch.frombuffer(bytearray(blobs[k]), dtype=torch.uint8) for k in keys]
    try:
        images = decode_jpeg(data, mode=mode, device=device, apply_exif_orientation=True)
        return dict(zip(keys, images, strict=True))
    except Exception:  # any refusal: find the files, leave them to Pillow
        decoded: dict[int, torch.Tensor] = {}
        for key, one in zip(keys, data, strict=True):
            try:
                decoded[key] = decode_jpeg(
                    one, mode=mode, device=device, apply_exif_orientation=True
                )
            except Exception:
                continue  # left to the CPU path
        return decoded


def device_batches(
    files: Sequence[ImageFile],
    placement: Placement,
    batch_size: int,
    device: torch.device,
    indices: Sequence[int] | None = None,
) -> Iterator[Batch]:
    """Yield the files at ``indices`` as batches on ``device``, JPEGs decoded there."""
    chosen = list(range(len(files)) if indices is None else indices)
    runs = chunks(chosen, batch_size)
    mode = ImageReadMode.GRAY if placement.mode == "L" else ImageReadMode.RGB
    with ThreadPoolExecutor(READERS) as pool:
        ahead = iter(runs)
        reading = pool.map(_read, [files[i] for i in next(ahead, [])])
        for chunk in runs:
            blobs = list(reading)
            following = next(ahead, None)
            if following is not None:  # read the next batch's bytes while this one decodes
                reading = pool.map(_read, [files[i] for i in following])
            jpegs = {
                i: blob
                for i, blob in zip(chunk, blobs, strict=True)
                if blob is not None and blob.startswith(JPEG_MAGIC)
            }
            decoded = _decode(jpegs, mode, device)
            good: list[int] = []
            pixels: list[torch.Tensor] = []
            failed: list[tuple[int, str]] = []
            for i in chunk:
                if i in decoded:
                    good.append(i)
                    pixels.append(prepare_on_device(decoded[i], placement))
                    continue
                image = load_image(files[i].path, placement.mode)
                if isinstance(image, str):
                    failed.append((i, image))
                else:
                    good.append(i)
                    pixels.append(placement(image).to(device))
            stacked = torch.stack(pixels) if pixels else None
            yield Batch(tuple(good), stacked, tuple(failed), on_device=len(decoded))
