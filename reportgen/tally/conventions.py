"""Which common input convention fits the model: a few images through the first batch norm.

Run only when the preprocessing looks wrong. A sample of the images is prepared under
each convention (and under this build's own), fed to the model only as far as the first
conv that feeds a batch norm (the recording's ``probe`` stops there), and the conv
output's statistics are compared with the norm's running statistics exactly as the
preprocessing detector compares them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from ..analysis.findings.preprocessing import divergence
from ..data.batches import batches
from ..data.files import ImageFile
from ..models.adapter import ModelAdapter, Tap
from ..models.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from ..report.facts import ConventionFit, LayerRecord
from .moments import ChannelMomentsReducer

__all__ = ["CONVENTIONS", "SAMPLE", "fit_conventions"]

SAMPLE = 32
CAFFE_MEAN = (103.939 / 255, 116.779 / 255, 123.68 / 255)  # B, G, R

CONVENTIONS: tuple[tuple[str, tuple[float, ...], tuple[float, ...], bool], ...] = (
    ("ImageNet's mean and std", IMAGENET_MEAN, IMAGENET_STD, False),
    ("scaling to −1..1", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), False),
    ("0..1 pixels, unnormalized", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), False),
    ("0..255 pixels, unnormalized", (0.0, 0.0, 0.0), (1 / 255, 1 / 255, 1 / 255), False),
    ("Caffe's BGR with the mean subtracted, 0..255", CAFFE_MEAN, (1 / 255,) * 3, True),
)


def _for_channels(values: tuple[float, ...], channels: int) -> tuple[float, ...]:
    return (sum(values) / len(values),) if channels == 1 else values


def _same(a: Preprocess, b: Preprocess) -> bool:
    close = all(
        abs(x - y) < 1e-6 for x, y in zip((*a.mean, *a.std), (*b.mean, *b.std), strict=True)
    )
    return close and a.bgr == b.bgr


@torch.no_grad()
def _fit(
    adapter: ModelAdapter,
    files: Sequence[ImageFile],
    prepare: Preprocess,
    sample: Sequence[int],
    layer: LayerRecord,
) -> float | None:
    norm = layer.block.norm
    if norm is None or norm.running_mean is None or norm.running_var is None:
        return None
    tap = Tap(layer.conv.name)
    moments = ChannelMomentsReducer()
    with adapter.recording([tap], lambda _, x: moments.update(x, torch.zeros(0))) as recording:
        for batch in batches(files, prepare, 8, sample):
            if batch.pixels is not None:
                recording.probe(batch.pixels)
    result = moments.finish(moments.state())
    return divergence(result.mean, result.variance, norm.running_mean, norm.running_var, norm.eps)


def fit_conventions(
    adapter: ModelAdapter,
    files: Sequence[ImageFile],
    current: Preprocess,
    images: Sequence[int],
    first: LayerRecord,
) -> tuple[ConventionFit, ...]:
    """Score each common convention, and this build's, at the first batch norm ``first``."""
    step = max(1, len(images) // SAMPLE)
    sample = list(images)[::step][:SAMPLE]
    channels = current.channels
    tried = [(current.describe(), current, True)]
    for name, mean, std, bgr in CONVENTIONS:
        if bgr and channels != 3:
            continue
        prepare = dataclasses.replace(
            current,
            mean=_for_channels(mean, channels),
            std=_for_channels(std, channels),
            bgr=bgr,
            source=name,
        )
        if _same(prepare, current):
            tried[0] = (name, current, True)
        else:
            tried.append((name, prepare, False))
    fits = []
    for name, prepare, is_current in tried:
        value = _fit(adapter, files, prepare, sample, first)
        if value is not None:
            fits.append(
                ConventionFit(
                    name="this build's" if is_current and name == current.describe() else name,
                    mean=prepare.mean,
                    std=prepare.std,
                    bgr=prepare.bgr,
                    divergence=round(value, 6),
                    current=is_current,
                )
            )
    return tuple(fits)
