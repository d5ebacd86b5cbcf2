"""The facts a build establishes, as frozen records: one per layer, one per image.

Every stage speaks these records and none of them is imported from a stage, so this
module needs neither torch nor any other part of featreport: a report can be made by
hand (the tests do) and turned into pages without a model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Literal, NamedTuple

__all__ = [
    "PROPERTY_NAMES",
    "Accuracy",
    "BlockFacts",
    "CamLayer",
    "CamMap",
    "Cams",
    "ChannelMoments",
    "ChannelStats",
    "ClassAccuracy",
    "ConvFacts",
    "ConventionFit",
    "Correlations",
    "Evidence",
    "Example",
    "FilterStats",
    "Finding",
    "ImageRecord",
    "LayerRecord",
    "ModelFacts",
    "NormFacts",
    "PointName",
    "PointRecord",
    "Prediction",
    "ReceptiveField",
    "Report",
    "Severity",
    "Skipped",
    "UnitExamples",
]

PointName = Literal["conv", "activation"]
"""A measurement point of a conv layer: ``conv``, the conv's own output; ``activation``,
the output of the normalisation and activation modules the forward pass applies to it."""

Severity = Literal["info", "warning", "error"]

Evidence = tuple[tuple[str, float | int | str], ...]

# Cheap properties of each image as the model saw it (its input, un-normalized to 0..1).
PROPERTY_NAMES = (
    "brightness",
    "contrast",
    "hue",
    "saturation",
    "border_brightness",
    "border_hue",
    "centre_minus_border",
)


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
    note: str | None = None  # what differs from a plain torch conv (see models.conv_kinds)

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
    images: int
    image_mean_squares: tuple[float, ...]  # per channel: Σ over images of (its mean there)²

    @property
    def mean(self) -> tuple[float, ...]:
        """Return each channel's mean over every image and position."""
        return tuple(total / self.count for total in self.sum)

    @property
    def image_spread(self) -> tuple[float, ...]:
        """Return each channel's standard deviation of its per-image mean over the images."""
        return tuple(
            math.sqrt(max(squares / self.images - mean**2, 0.0))
            for mean, squares in zip(self.mean, self.image_mean_squares, strict=True)
        )

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
    constant: tuple[int, ...]  # channels whose value never changes at this point
    by_mean: tuple[int, ...]  # the channels that are not constant, highest mean first


@dataclass(frozen=True)
class FilterStats:
    """One layer's filters: norms, dead ones and near-duplicate pairs."""

    norms: tuple[float, ...]
    dead: tuple[int, ...]
    duplicates: tuple[tuple[int, int, float], ...]  # (i, j, cosine) with i < j, same group
    compared: bool  # False when filters are too small or read different inputs (depthwise)
    smoothness: float | None  # correlation of spatially neighbouring weights; None below 2×2

    @property
    def duplicated(self) -> tuple[int, ...]:
        """Return every filter that is one of a near-duplicate pair, in index order."""
        return tuple(sorted({i for a, b, _ in self.duplicates for i in (a, b)}))


@dataclass(frozen=True)
class NormFacts:
    """The normalisation module the forward pass applies to a conv's output, and its state."""

    name: str
    type: str
    eps: float
    running_mean: tuple[float, ...] | None  # None for norms without running statistics
    running_var: tuple[float, ...] | None
    weight: tuple[float, ...] | None  # γ; None without an affine part
    bias: tuple[float, ...] | None  # β


@dataclass(frozen=True)
class BlockFacts:
    """What the forward pass applies to a conv's output: a norm, an activation, both or none.

    Matched on a traced forward pass by the tensors the modules pass, not by their names.
    """

    norm: NormFacts | None
    activation: str | None  # the activation module's name
    activation_type: str | None  # its class, such as "ReLU"

    @property
    def has_point(self) -> bool:
        """Say whether the layer has a point after its norm or activation."""
        return self.norm is not None or self.activation is not None

    @property
    def label(self) -> str:
        """Name the point after the block's norm and activation, such as "after BatchNorm2d and ReLU"."""
        parts = [p for p in (self.norm and self.norm.type, self.activation_type) if p]
        return "after " + " and ".join(parts) if parts else "conv output"


@dataclass(frozen=True)
class ReceptiveField:
    """A layer's receptive field in input pixels (``models/receptive.py`` says how)."""

    height: int
    width: int
    at_least: bool  # the field reached the edge of the largest input measured


class Example(NamedTuple):
    """One image's response of one channel: its spatial maximum (or minimum), and where.

    A named tuple, not a dataclass: a layer has thousands of them, made in a blink.
    """

    image: int  # file index
    value: float
    y: int  # row and column in the tap's map
    x: int


@dataclass(frozen=True)
class UnitExamples:
    """Per channel of one point: the images it responds to most and least, and at quantiles.

    Ranked by each image's spatial maximum (the bottom by its spatial minimum), ties by
    image order; the quantiles are of the maxima over a fixed reservoir of ``sample_size``
    images (``tally/topk.py``).
    """

    height: int  # the tap's map size, which y and x index
    width: int
    top: tuple[tuple[Example, ...], ...] | None  # per channel, highest maximum first
    bottom: tuple[tuple[Example, ...], ...] | None  # per channel, lowest minimum first
    quantiles: tuple[tuple[Example, ...], ...] | None  # per channel, one example per level
    levels: tuple[float, ...]  # the quantiles, such as 0.25, 0.5 and 0.9
    sample_size: int


@dataclass(frozen=True)
class PointRecord:
    """What was measured at one point of a layer, over every image and position."""

    point: PointName
    label: str  # "conv output" or "after BatchNorm2d and ReLU"
    moments: ChannelMoments
    stats: ChannelStats
    # Per channel: the share of values above zero, on a grid of at most 16×16 positions an
    # image; measured at the layer's last point only (None at the conv output before it).
    positive: tuple[float, ...] | None
    units: UnitExamples | None = None  # each channel's top, bottom and quantile examples


@dataclass(frozen=True)
class Correlations:
    """Channel pairs of one layer whose activations correlate strongly over images and positions."""

    point: PointName
    positions: int  # positions sampled per image (a fixed grid)
    samples: int  # values per channel: images × sampled positions
    pairs: tuple[tuple[int, int, float], ...]  # (i, j, ρ), i < j, strongest |ρ| first
    total: int  # pairs at or above the threshold; ``pairs`` lists at most a fixed number


@dataclass(frozen=True)
class LayerRecord:
    """Everything the build learned about one conv layer."""

    depth: int  # from 0, in the order the forward pass first calls the layer
    conv: ConvFacts
    block: BlockFacts
    points: tuple[PointRecord, ...]  # the conv output first, then the activation if any
    filters: FilterStats
    calls_per_forward: int
    correlations: Correlations | None
    dead_channels: tuple[int, ...]  # constant at the conv output, or off after the activation
    silent: tuple[int, ...]  # never above zero after a gating activation, on these images
    fresh_norm_median: float | None  # median filter norm of a fresh instance of the layer
    norm_divergence: float | None = None  # median KL of the norm's input from its running stats
    receptive_field: ReceptiveField | None = None  # None: not measurable (a gate's own conv)

    @property
    def conv_point(self) -> PointRecord:
        """Return what was measured at the conv's own output."""
        return self.points[0]

    @property
    def activation(self) -> PointRecord | None:
        """Return what was measured after the norm and activation, when the layer has them."""
        return self.points[1] if len(self.points) > 1 else None

    def at(self, point: PointName) -> PointRecord:
        """Return the point asked for, or the conv output where the layer has no other."""
        return self.activation or self.conv_point if point == "activation" else self.conv_point


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
    properties: tuple[float, ...]  # PROPERTY_NAMES, of the image as the model saw it


@dataclass(frozen=True)
class CamLayer:
    """Where class activation maps are computed, as the gradient pass found it."""

    name: str  # the module, in the model's own names
    point: str  # "after ReLU", "conv output", ...
    conv: str | None  # the conv layer its chain starts from
    channels: int
    height: int
    width: int
    randomized: str | None = None  # whose conv weights the sanity check randomises


@dataclass(frozen=True)
class CamMap:
    """One image's class activation map for one class, at the CAM layer's resolution."""

    label: int
    values: tuple[float, ...]  # row-major, height × width, before any display scaling
    min: float
    max: float


@dataclass(frozen=True)
class Cams:
    """Class activation maps: the method, its layer, and each image's maps (by file index)."""

    method: str  # "gradcam" or "layercam"
    layer: CamLayer
    images: tuple[tuple[int, tuple[CamMap, ...]], ...]  # file order; the predicted class first
    # The sanity check: the layer whose weights were randomised, and per image the rank
    # correlation of its predicted class's map with the map under those weights (None
    # where a map is constant).
    randomized_layer: str | None = None
    randomized: tuple[tuple[int, float | None], ...] = ()
    # With --masks: where the masks came from, and per image with a mask the share of its
    # predicted class's map energy inside the object (None where the map is all zero).
    masks: str | None = None
    inside: tuple[tuple[int, float | None], ...] = ()

    @cached_property
    def by_index(self) -> dict[int, tuple[CamMap, ...]]:
        """Map each image's file index to its maps."""
        return dict(self.images)

    @cached_property
    def inside_by_index(self) -> dict[int, float | None]:
        """Map each image with a mask to its map's share of energy inside the object."""
        return dict(self.inside)

    @cached_property
    def randomized_by_index(self) -> dict[int, float | None]:
        """Map each image's file index to its sanity-check rank correlation."""
        return dict(self.randomized)


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
    precision: str = "float32"  # "float32", or the autocast dtype of --amp and what stays wide
    decoding: str = "Pillow on the CPU"  # where images were decoded, in aggregate


@dataclass(frozen=True)
class Finding:
    """One thing the report found wrong, or worth knowing, and the numbers behind it."""

    kind: str
    severity: Severity
    message: str  # what is wrong and what to do
    layer: str | None = None
    channels: tuple[int, ...] = ()
    pairs: tuple[tuple[int, int], ...] = ()
    classes: tuple[int, ...] = ()
    evidence: Evidence = ()


@dataclass(frozen=True)
class ConventionFit:
    """How well one input convention fits the first batch norm's running statistics."""

    name: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    bgr: bool
    divergence: float  # median over channels of the Gaussian KL at the first batch norm
    current: bool  # the convention this build used


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
    findings: tuple[Finding, ...] = ()  # most severe first
    conventions: tuple[ConventionFit, ...] = ()  # tried when the preprocessing looks wrong
    cams: Cams | None = None  # class activation maps of the images that needed them
    # Each wrong prediction's nearest correct images of the class it was mistaken for, by
    # cosine similarity of the penultimate features: (index, similarity), nearest first.
    nearest: tuple[tuple[int, tuple[tuple[int, float], ...]], ...] = ()

    @property
    def looks_untrained(self) -> bool:
        """Say whether the weights are untrained, by the user's word or by a finding."""
        return self.model.untrained or any(f.kind == "untrained_weights" for f in self.findings)

    def class_name(self, index: int | None) -> str:
        """Name a class index, or give a dash for an unknown class."""
        if index is None:
            return "—"
        return self.class_names[index] if index < len(self.class_names) else str(index)

    @cached_property
    def by_index(self) -> dict[int, ImageRecord]:
        """Map each image's file index to its record."""
        return {image.index: image for image in self.images}

    @cached_property
    def nearest_by_index(self) -> dict[int, tuple[tuple[int, float], ...]]:
        """Map each wrong prediction's file index to its nearest correct images."""
        return dict(self.nearest)

    def image(self, index: int) -> ImageRecord:
        """Return the record of the image at file index ``index``."""
        return self.by_index[index]
