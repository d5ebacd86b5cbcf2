"""The facts a build establishes, as frozen records: one per layer, one per image.

Every stage speaks these records and none of them is imported from a stage, so this
module needs neither torch nor any other part of featreport: a report can be made by
hand (the tests do) and turned into pages without a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

__all__ = [
    "Accuracy",
    "ChannelMoments",
    "ChannelStats",
    "ClassAccuracy",
    "ConvFacts",
    "FilterStats",
    "ImageRecord",
    "LayerRecord",
    "ModelFacts",
    "Prediction",
    "Report",
    "Skipped",
]


@dataclass(frozen=True)
class Skipped:
    """A file that is not part of the report, and why."""

    rel: str
    reason: str


@dataclass(frozen=True)
class ConvFacts:
    """The static facts of one conv layer, as the model adapter states them."""

    name: str
    type: str
    in_channels: int
    out_channels: int
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: str
    dilation: tuple[int, ...]
    groups: int
    transposed: bool

    @property
    def depthwise(self) -> bool:
        """Say whether every filter reads exactly one input channel of its own."""
        return self.groups > 1 and self.groups == self.in_channels

    @property
    def rgb_filters(self) -> bool:
        """Say whether each filter sees exactly the three channels of an RGB input."""
        return self.in_channels == 3 and self.groups == 1 and not self.transposed


@dataclass(frozen=True)
class ChannelMoments:
    """Per-channel sums and extremes of one tap over every image and position."""

    output_shape: tuple[int, ...]  # (C, H, W) for one image
    count: int  # values per channel: images × positions
    sum: tuple[float, ...]
    sum_squares: tuple[float, ...]
    min: tuple[float, ...]
    max: tuple[float, ...]

    @property
    def mean(self) -> tuple[float, ...]:
        """Return each channel's mean over every image and position."""
        return tuple(total / self.count for total in self.sum)

    @property
    def variance(self) -> tuple[float, ...]:
        """Return each channel's population variance (never below zero)."""
        return tuple(
            max(squares / self.count - (total / self.count) ** 2, 0.0)
            for total, squares in zip(self.sum, self.sum_squares, strict=True)
        )


@dataclass(frozen=True)
class ChannelStats:
    """One layer's activation statistics as the pages and report.json state them."""

    output_shape: tuple[int, ...]  # (C, H, W) for one image
    channel_mean: tuple[float, ...]
    channel_max: tuple[float, ...]
    activation_min: float
    activation_max: float
    dead_channels: tuple[int, ...]
    by_mean: tuple[int, ...]  # the channels that are not dead, highest mean first


@dataclass(frozen=True)
class FilterStats:
    """One layer's filters: norms, dead ones and near-duplicate pairs."""

    norms: tuple[float, ...]
    dead: tuple[int, ...]
    duplicates: tuple[tuple[int, int, float], ...]  # (i, j, cosine) with i < j
    compared: bool  # False when filters are too small to compare

    @property
    def duplicated(self) -> tuple[int, ...]:
        """Return every filter that is one of a near-duplicate pair, in index order."""
        return tuple(sorted({i for a, b, _ in self.duplicates for i in (a, b)}))


@dataclass(frozen=True)
class LayerRecord:
    """Everything the build learned about one conv layer."""

    depth: int  # from 0, in the order the forward pass first calls the layer
    conv: ConvFacts
    moments: ChannelMoments
    stats: ChannelStats
    filters: FilterStats
    calls_per_forward: int


@dataclass(frozen=True)
class Prediction:
    """The model's answer for one image, and its true class where known."""

    top: tuple[tuple[int, float], ...]  # (class index, probability), best first, up to 5
    label: int | None

    @property
    def predicted(self) -> int:
        """Return the top-1 class index."""
        return self.top[0][0]

    @property
    def confidence(self) -> float:
        """Return the top-1 probability."""
        return self.top[0][1]

    @property
    def correct(self) -> bool | None:
        """Say whether the top-1 class is the true one (None without a label)."""
        return None if self.label is None else self.predicted == self.label

    @property
    def in_top5(self) -> bool | None:
        """Say whether the true class is among the top five (None without a label)."""
        return None if self.label is None else any(c == self.label for c, _ in self.top)


@dataclass(frozen=True)
class ImageRecord:
    """One image the model read."""

    index: int  # its position among the collected files: the stable name of its pages
    path: str  # relative to --images, '/'-separated
    prediction: Prediction


@dataclass(frozen=True)
class ClassAccuracy:
    """Accuracy over the labeled images of one true class."""

    index: int
    images: int
    top1: float
    top5: float
    wrong: int


@dataclass(frozen=True)
class Accuracy:
    """Top-1 and top-5 accuracy over the labeled images, overall and per true class."""

    labeled: int
    top1: float | None
    top5: float | None
    per_class: tuple[ClassAccuracy, ...]
    confusion: tuple[tuple[int, int, int], ...]  # (true, predicted, count), count > 0

    @property
    def wrong(self) -> int:
        """Count the labeled images whose top-1 class is not the true one."""
        return sum(c.wrong for c in self.per_class)

    @cached_property
    def by_involvement(self) -> tuple[int, ...]:
        """Rank classes by the images they are the true or predicted class of, most first."""
        involved: dict[int, int] = {}
        for true, predicted, count in self.confusion:
            involved[true] = involved.get(true, 0) + count
            involved[predicted] = involved.get(predicted, 0) + count
        return tuple(sorted(involved, key=lambda c: (-involved[c], c)))


@dataclass(frozen=True)
class ModelFacts:
    """What was run, and how images were prepared for it."""

    name: str
    weights: str
    untrained: bool
    parameters: int
    device: str
    preprocessing: str
    preprocessing_source: str
    input_size: int
    channels: int
    class_source: str
    logits_from: str


@dataclass(frozen=True)
class Report:
    """Everything the pages and report.json state as fact, and nothing they chose to show."""

    model: ModelFacts
    versions: tuple[tuple[str, str], ...]
    images_root: str
    images: tuple[ImageRecord, ...]  # in file order; skipped files are only in `skipped`
    class_names: tuple[str, ...]
    label_source: str  # "folders", "csv" or "none"
    skipped: tuple[Skipped, ...]
    warnings: tuple[str, ...]
    accuracy: Accuracy
    layers: tuple[LayerRecord, ...]  # depth order
    not_called: tuple[str, ...]
    definitions: tuple[tuple[str, str], ...]  # the rules behind every verdict, by name
    built_at: str | None

    def class_name(self, index: int | None) -> str:
        """Name a class index, or give a dash for an unknown class."""
        if index is None:
            return "—"
        return self.class_names[index] if index < len(self.class_names) else str(index)

    @cached_property
    def by_index(self) -> dict[int, ImageRecord]:
        """Map each image's file index to its record."""
        return {image.index: image for image in self.images}

    def image(self, index: int) -> ImageRecord:
        """Return the record of the image at file index ``index``."""
        return self.by_index[index]
