"""The rules behind every verdict and finding the report states, and their wording.

Each threshold is a named constant, and each definition is written once, in
``DEFINITIONS``: report.json's ``definitions``, the pages and the README's table of
findings all state these words. Where a threshold was calibrated, the measurements are
in ``benchmarks/README.md`` ("Calibrating the findings").
"""

from __future__ import annotations

__all__ = [
    "ACTIVE_SHARE",
    "BACKGROUND_MIN_MISTAKES",
    "BACKGROUND_SHARE",
    "CAM_SANITY",
    "CHANCE_MIN_IMAGES",
    "COPY_CORRELATION",
    "DEAD_FILTER_RATIO",
    "DEAD_RANGE",
    "DEAD_SHARE_ERROR",
    "DEAD_SHARE_WARNING",
    "DEFINITIONS",
    "DUPLICATE_CORRELATION",
    "DUPLICATE_COSINE",
    "FLAT_SMOOTHNESS",
    "FRESH_NORM_RATIO",
    "GATING_ACTIVATIONS",
    "MIN_DUPLICATE_WEIGHTS",
    "NEVER_RIGHT_MIN_IMAGES",
    "OFF_MARGIN",
    "ONE_CLASS_SHARE",
    "PAIRS_KEPT",
    "PREPROCESS_FIRST",
    "PREPROCESS_MIN_IMAGES",
    "SHORTCUT_BINS",
    "SHORTCUT_FOLDS",
    "SHORTCUT_GAP",
    "SHORTCUT_LIFT",
    "SHORTCUT_MIN_PER_CLASS",
    "SKEW_DISTANCE",
    "SKEW_MIN_IMAGES",
    "SWAP_GAIN",
    "SWAP_RATE",
]

# Channels and filters.
DEAD_RANGE = 1e-6
DEAD_FILTER_RATIO = 1e-3
DUPLICATE_COSINE = 0.99
MIN_DUPLICATE_WEIGHTS = 4
DUPLICATE_CORRELATION = 0.95  # pairs listed as strongly correlated
COPY_CORRELATION = 0.999  # pairs called functional copies (a warning)
ACTIVE_SHARE = 0.01  # after a gating activation, both must fire this often to be copies
PAIRS_KEPT = 200  # correlated pairs listed per layer; the total is always stated
DEAD_SHARE_WARNING = 0.1  # dead channels or filters: a warning from this share of the layer
DEAD_SHARE_ERROR = 0.5  # and an error above this one
OFF_MARGIN = -6.0  # β/|γ| at or below this: the norm's output is positive only 6σ out
GATING_ACTIVATIONS = ("ReLU", "ReLU6", "Hardtanh", "SiLU", "GELU", "Mish", "Hardswish")

# Preprocessing: the median over channels of KL(folder ‖ running statistics).
PREPROCESS_FIRST = 0.25  # at the first batch norm fed by a conv
PREPROCESS_MIN_IMAGES = 16

# Untrained weights.
FLAT_SMOOTHNESS = 0.1  # |correlation of neighbouring weights| below this: no spatial structure
FRESH_NORM_RATIO = 1.25  # median filter norms within this factor of a fresh instance's
ONE_CLASS_SHARE = 0.9

# Labels and predictions.
SWAP_RATE = 0.4
SWAP_GAIN = 0.1
NEVER_RIGHT_MIN_IMAGES = 5
SKEW_DISTANCE = 0.4
SKEW_MIN_IMAGES = 20
CHANCE_MIN_IMAGES = 20

# Class activation maps: the sanity check's rank correlation at or above which a map is
# said to barely depend on the weights of its layer.
CAM_SANITY = 0.8
# With object masks: a class whose mistakes keep less than this share of their maps' energy
# on the object, over at least this many mistakes, is said to be judged by its background.
BACKGROUND_SHARE = 0.5
BACKGROUND_MIN_MISTAKES = 3

# Shortcuts.
SHORTCUT_LIFT = 0.5
SHORTCUT_GAP = 0.2  # predictions' lift above the labels' for the model to be blamed
SHORTCUT_MIN_PER_CLASS = 10
SHORTCUT_FOLDS = 5
SHORTCUT_BINS = 8


def _minus(value: float) -> str:
    """Format a number with a true minus sign, as the prose around it has."""
    return f"{value:g}".replace("-", "−")


DEFINITIONS = {
    "points": (
        "every statistic names where it was measured: the conv output (the conv's own "
        "output, before any norm or activation), or after the norm and activation modules "
        "the forward pass applies to that output, matched on a traced forward pass by the "
        "tensors they pass"
    ),
    "depth": "the order in which the forward pass first calls the conv layer",
    "relative_rank": (
        "an image's channels ranked by activation relative to each channel's typical "
        "response: the channel's mean on the image minus its mean over the folder, divided "
        "by the standard deviation of its per-image means over the folder"
    ),
    "dead_channel": (
        "a channel constant over every image and position at the conv output (range at "
        f"most {DEAD_RANGE:g} of its magnitude), or, before a ReLU-like activation, one that "
        "is never positive after it on these images and is structurally off: its norm's "
        f"β/abs(γ) is at most {_minus(OFF_MARGIN)}, so its output is positive only for "
        f"inputs {-OFF_MARGIN:g} standard deviations from the norm's running mean. A finding "
        "leaves out channels whose filter is dead (they are reported as dead filters) and is "
        f"a note below {DEAD_SHARE_WARNING:.0%} of the layer, a warning from there and an "
        f"error above {DEAD_SHARE_ERROR:.0%}"
    ),
    "silent_channel": (
        "a channel never positive after its ReLU-like activation on these images; counted, "
        "not called dead, as another folder may make it fire"
    ),
    "dead_filter": (
        f"a filter whose weight L2 norm is at most {DEAD_FILTER_RATIO:g} × the median norm "
        f"of its layer; a note below {DEAD_SHARE_WARNING:.0%} of the layer, a warning from "
        f"there and an error above {DEAD_SHARE_ERROR:.0%}"
    ),
    "duplicate_filters": (
        f"two filters of the same group whose flattened weights have cosine similarity "
        f"above {DUPLICATE_COSINE:g}; filters of a depthwise conv read different input "
        "channels and are never compared"
    ),
    "correlated_channels": (
        f"two channels whose activations correlate at ρ ≥ {DUPLICATE_CORRELATION:g} or "
        f"ρ ≤ {_minus(-DUPLICATE_CORRELATION)} (Pearson) over every image and a fixed grid of "
        "at most 6×6 positions per image, at the layer's last point; listed on the layer's "
        f"page and counted in a note. Pairs at ρ ≥ {COPY_CORRELATION:g} are functional copies "
        f"(a warning), where, after a ReLU-like activation, both fire on at least "
        f"{ACTIVE_SHARE:.0%} of the values (two channels that fire once, together, correlate "
        "perfectly and mean nothing) and neither is dead; a negative ρ is an opposite-phase pair, expected "
        "before an activation"
    ),
    "preprocessing_mismatch": (
        "the median over channels of the Gaussian KL divergence between the folder's "
        "statistics of a batch norm's input and the norm's running statistics exceeds "
        f"{PREPROCESS_FIRST:g} at the first batch norm fed by a conv; judged on at least "
        f"{PREPROCESS_MIN_IMAGES} images of more than one class, and not when the weights "
        "look untrained"
    ),
    "untrained_weights": (
        "every batch norm's running statistics are exactly mean 0 and variance 1 (an error); "
        "or, in a model without running statistics, the first layer's kernels have no "
        "spatial structure (the correlation of neighbouring weights between "
        f"{_minus(-FLAT_SMOOTHNESS)} and {FLAT_SMOOTHNESS:g}) while the median filter norm of "
        f"every layer is within {FRESH_NORM_RATIO:g}× of a fresh instance's (the same "
        "architecture built again untrained, for torchvision models and for factories given "
        "a weights file; a warning, an error when at least "
        f"{ONE_CLASS_SHARE:.0%} of the images get one class)"
    ),
    "label_swap": (
        f"two classes each predicted as the other for at least {SWAP_RATE:.0%} of their "
        "images, where swapping their names would raise top-1 accuracy by at least "
        f"{SWAP_GAIN:.0%} of the labeled images"
    ),
    "shortcut": (
        "an image property (brightness, contrast, hue, saturation, border brightness, "
        "border hue, centre minus border) that alone predicts the labels or the "
        f"predictions with a lift of at least {SHORTCUT_LIFT:g} over the majority rate, "
        f"under {SHORTCUT_FOLDS}-fold cross-validation of a classifier that cuts the property "
        f"into max({SHORTCUT_BINS}, 2 × classes) quantile bins, "
        f"with at least {SHORTCUT_MIN_PER_CLASS} images per class; lift = (accuracy − "
        "majority rate) / (1 − majority rate). The predictions are reported only when their "
        f"lift exceeds the labels' by at least {SHORTCUT_GAP:g}"
    ),
    "class_never_right": (
        f"a class with at least {NEVER_RIGHT_MIN_IMAGES} labeled images, none of them "
        "predicted correctly"
    ),
    "prediction_skew": (
        "the predicted classes are distributed far from the true ones: total variation "
        f"distance at least {SKEW_DISTANCE:g} over at least {SKEW_MIN_IMAGES} labeled images"
    ),
    "cam_sanity": (
        "the sanity check of a class activation map (Adebayo et al., 2018): the same map "
        "computed with the weights of its layer's conv replaced by seeded random values of "
        "the same standard deviation, compared with the map by Spearman's rank correlation "
        f"over its positions; at {CAM_SANITY:g} or more the map barely depends on what that "
        "layer learned and explains little"
    ),
    "background_attention": (
        "with --masks: the share of a class activation map's energy inside the object mask "
        "(the map enlarged to the input, summed inside the mask over its total; Score-CAM's "
        "energy-based pointing game), for the predicted class; a class whose wrong "
        f"predictions keep on average less than {BACKGROUND_SHARE:.0%} of it on the object, "
        f"over at least {BACKGROUND_MIN_MISTAKES} mistakes with a mask, is reported"
    ),
    "below_chance": (
        f"top-1 accuracy over at least {CHANCE_MIN_IMAGES} labeled images below one over "
        "the number of classes the model predicts"
    ),
}
