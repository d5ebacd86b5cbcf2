"""Batches of decoded, preprocessed images, for a whole folder or a subset of it (a shard)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, cast

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from .decode import load_image
from .files import ImageFile

__all__ = ["Batch", "Loading", "Prepare", "Unnormalize", "batches", "chunks"]


class Prepare(Protocol):
    """Turn a decoded picture into the model's input tensor."""

    @property
    def mode(self) -> str:
        """Return the Pillow mode the picture must have: "RGB" or "L"."""
        ...

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """Return the ``[C, H, W]`` input tensor for ``image``."""
        ...


class Unnormalize(Prepare, Protocol):
    """Prepare a picture, and say how the input maps back to 0..1 pixels (as Preprocess does)."""

    @property
    def mean(self) -> tuple[float, ...]:
        """Return the normalization mean, per channel."""
        ...

    @property
    def std(self) -> tuple[float, ...]:
        """Return the normalization std, per channel."""
        ...

    @property
    def bgr(self) -> bool:
        """Say whether the channels are in BGR order."""
        ...


@dataclass(frozen=True)
class Batch:
    """Images ready for the model, with their indices among the files, and those that failed."""

    indices: tuple[int, ...]  # the images in ``pixels``, by their index in the file list
    pixels: torch.Tensor | None  # [N, C, H, W]; None when every file failed
    failed: tuple[tuple[int, str], ...]  # (file index, reason) of files that could not be read
    on_device: int = 0  # of the images, how many were decoded on the model's device

    def pin_memory(self) -> Batch:
        """Return the batch with its pixels in page-locked memory (the DataLoader calls it)."""
        pixels = None if self.pixels is None else self.pixels.pin_memory()
        return Batch(self.indices, pixels, self.failed, self.on_device)


@dataclass(frozen=True)
class Loading:
    """How batches are loaded: worker processes, and page-locked memory for a GPU."""

    workers: int = 0  # 0: decode on the main thread, between forward passes
    pin: bool = False  # only worth it when the model is on CUDA
    decode_on: torch.device | None = None  # --decode gpu: JPEGs decoded on this device


Item = tuple[int, torch.Tensor | None, str | None]


class _Images(Dataset[Item]):
    """Decode and preprocess images; a file that fails yields its reason instead."""

    def __init__(
        self, files: Sequence[ImageFile], indices: Sequence[int], prepare: Prepare
    ) -> None:
        self.files = files
        self.indices = list(indices)
        self.prepare = prepare

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Item:
        index = self.indices[i]
        image = load_image(self.files[index].path, self.prepare.mode)
        if isinstance(image, str):
            return index, None, image
        return index, self.prepare(image), None


def _collate(items: list[Item]) -> Batch:
    good = [(i, t) for i, t, _ in items if t is not None]
    bad = tuple((i, r) for i, t, r in items if t is None and r is not None)
    pixels = torch.stack([t for _, t in good]) if good else None
    return Batch(tuple(i for i, _ in good), pixels, bad)


def chunks(indices: Sequence[int], size: int) -> list[list[int]]:
    """Cut ``indices`` into runs of ``size`` (the last shorter): the batches of ``batches``."""
    return [list(indices[i : i + size]) for i in range(0, len(indices), size)]


def batches(
    files: Sequence[ImageFile],
    prepare: Prepare,
    batch_size: int,
    indices: Sequence[int] | None = None,
    loading: Loading | None = None,
) -> Iterator[Batch]:
    """Yield the files at ``indices`` (default: all, in order) as batches of ``batch_size``.

    With ``loading.workers``, worker processes decode and preprocess the next batches
    while the model runs; batches still come in order, and a file a worker cannot read
    is reported with its reason as on the main thread.
    """
    loading = loading or Loading()
    if loading.decode_on is not None:
        from .device_decode import Placement, device_batches

        placement = cast("Placement", prepare)  # the pipeline passes a Preprocess
        yield from device_batches(files, placement, batch_size, loading.decode_on, indices)
        return
    chosen = range(len(files)) if indices is None else indices
    loader: DataLoader[Item] = DataLoader(
        _Images(files, chosen, prepare),
        batch_size=batch_size,
        shuffle=False,
        collate_fn=_collate,
        num_workers=loading.workers,
        pin_memory=loading.pin,
        prefetch_factor=2 if loading.workers else None,
    )
    yield from loader
