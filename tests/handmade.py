"""Reports made by hand, without torch: facts for page and detector tests.

Every builder takes only what a test cares about and fills the rest with plain values.
This module must not import torch (tests/test_layout.py imports it where torch is barred).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from reportgen.analysis.accuracy import accuracy
from reportgen.analysis.channels import channel_stats
from reportgen.report.facts import (
    PROPERTY_NAMES,
    BlockFacts,
    ChannelMoments,
    ConvFacts,
    Correlations,
    FilterStats,
    ImageRecord,
    LayerRecord,
    ModelFacts,
    NormFacts,
    PointRecord,
    Prediction,
    Report,
    Skipped,
)

NO_PROPERTIES = (0.0,) * len(PROPERTY_NAMES)


def moments(
    means: Sequence[float],
    spreads: Sequence[float] | None = None,
    low: Sequence[float] | None = None,
    high: Sequence[float] | None = None,
    shape: tuple[int, int] = (8, 8),
    images: int = 10,
) -> ChannelMoments:
    """Moments of channels with these means and standard deviations over images and positions."""
    spreads = spreads if spreads is not None else [1.0] * len(means)
    count = images * shape[0] * shape[1]
    return ChannelMoments(
        output_shape=(len(means), *shape),
        count=count,
        sum=tuple(m * count for m in means),
        sum_squares=tuple((s * s + m * m) * count for m, s in zip(means, spreads, strict=True)),
        min=tuple(
            low if low is not None else [m - 3 * s for m, s in zip(means, spreads, strict=True)]
        ),
        max=tuple(
            high if high is not None else [m + 3 * s for m, s in zip(means, spreads, strict=True)]
        ),
        images=images,
        image_mean_squares=tuple(
            (m * m + (s / 4) ** 2) * images for m, s in zip(means, spreads, strict=True)
        ),
    )


def bn(
    channels: int,
    name: str = "bn",
    running_mean: Sequence[float] | None = None,
    running_var: Sequence[float] | None = None,
    gamma: Sequence[float] | None = None,
    beta: Sequence[float] | None = None,
) -> NormFacts:
    """A BatchNorm2d's facts, trained-looking unless told otherwise."""
    return NormFacts(
        name=name,
        type="BatchNorm2d",
        eps=1e-5,
        running_mean=tuple(running_mean if running_mean is not None else [0.1] * channels),
        running_var=tuple(running_var if running_var is not None else [0.9] * channels),
        weight=tuple(gamma if gamma is not None else [1.0] * channels),
        bias=tuple(beta if beta is not None else [0.0] * channels),
    )


def layer(
    name: str = "conv",
    depth: int = 0,
    conv_moments: ChannelMoments | None = None,
    after: ChannelMoments | None = None,
    block: BlockFacts | None = None,
    filters: FilterStats | None = None,
    correlations: Correlations | None = None,
    dead: Sequence[int] = (),
    silent: Sequence[int] = (),
    fresh_norm_median: float | None = None,
    in_channels: int = 3,
    groups: int = 1,
) -> LayerRecord:
    """A conv layer's record: conv output moments and, with ``after``, a point after its block."""
    conv_moments = conv_moments or moments([0.5, 0.1, 0.2, 0.0])
    channels = conv_moments.output_shape[0]
    block = block or BlockFacts(None, None, None)
    points = [
        PointRecord(
            "conv", "conv output", conv_moments, channel_stats(conv_moments), (0.5,) * channels
        )
    ]
    if after is not None:
        points.append(
            PointRecord("activation", block.label, after, channel_stats(after), (0.3,) * channels)
        )
    return LayerRecord(
        depth=depth,
        conv=ConvFacts(
            name, "Conv2d", in_channels, channels, (3, 3), (1, 1), "1×1", (1, 1), groups, False
        ),
        block=block,
        points=tuple(points),
        filters=filters or FilterStats((1.0,) * channels, (), (), True, 0.5),
        calls_per_forward=1,
        correlations=correlations,
        dead_channels=tuple(dead),
        silent=tuple(silent),
        fresh_norm_median=fresh_norm_median,
    )


def image(
    index: int,
    predicted: int,
    label: int | None,
    confidence: float = 0.9,
    properties: Sequence[float] = NO_PROPERTIES,
    path: str | None = None,
) -> ImageRecord:
    """An image predicted as ``predicted`` with true class ``label``."""
    other = 1 if predicted == 0 else 0
    top = ((predicted, confidence), (other, round(1 - confidence, 6)))
    return ImageRecord(
        index, path or f"c{label}/{index}.png", Prediction(top, label), tuple(properties)
    )


def report(
    layers: Sequence[LayerRecord] = (),
    images: Sequence[ImageRecord] = (),
    class_names: Sequence[str] = ("cat", "dog"),
    untrained: bool = False,
    **changes: object,
) -> Report:
    """A report of these layers and images; ``changes`` replace any other field."""
    layers = tuple(layers) or (layer(),)
    images = tuple(images) or (image(0, 0, 0), image(2, 0, 1))
    made = Report(
        model=ModelFacts(
            "HandNet",
            "by hand",
            untrained,
            123,
            "cpu",
            "none",
            "a test",
            8,
            3,
            "here",
            "the output tensor",
        ),
        versions=(("featreport", "0"),),
        images_root="imgs",
        images=images,
        class_names=tuple(class_names),
        label_source="folders",
        skipped=(Skipped("notes.txt", "not an image"),),
        warnings=(),
        accuracy=accuracy([i.prediction for i in images]),
        layers=layers,
        not_called=(),
        definitions=(
            ("depth", "forward order"),
            ("dead_filter", "tiny"),
            ("duplicate_filters", "alike"),
        ),
        built_at=None,
    )
    return dataclasses.replace(made, **changes)  # type: ignore[arg-type]
