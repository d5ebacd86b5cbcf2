"""Each detector's rule on hand-made facts: what fires, what does not, and at the threshold.

Nothing here runs a model; tests/test_layout.py checks that the detectors import and run
where torch cannot be imported at all.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
from handmade import bn, image, layer, moments, report

from reportgen.analysis.channels import dead_and_silent
from reportgen.analysis.findings import find
from reportgen.analysis.findings.preprocessing import divergence
from reportgen.analysis.findings.shortcut import lift
from reportgen.analysis.rules import (
    OFF_MARGIN,
    PREPROCESS_FIRST,
    PREPROCESS_MIN_IMAGES,
    SHORTCUT_MIN_PER_CLASS,
    SWAP_GAIN,
)
from reportgen.report.facts import (
    PROPERTY_NAMES,
    BlockFacts,
    ConventionFit,
    Correlations,
    FilterStats,
)


def kinds(found) -> list[str]:
    return [f.kind for f in found]


def labeled(pairs: list[tuple[int, int]], properties=None) -> list:
    """Images from (true, predicted) pairs, in file order."""
    return [
        image(i, predicted, label, properties=properties(i) if properties else (0.0,) * 7)
        for i, (label, predicted) in enumerate(pairs)
    ]


# ------------------------------------------------------------------ dead and silent channels


def test_a_silent_channel_is_dead_only_when_its_norm_switches_it_off() -> None:
    gamma = [1.0, 1.0, 2.0, 1.0]
    beta = [0.1, OFF_MARGIN * 1.0 - 0.5, OFF_MARGIN * 2.0 + 1.0, 0.0]  # margins: ok, off, −5.5, 0
    block = BlockFacts(bn(4, gamma=gamma, beta=beta), "relu", "ReLU")
    conv = moments([0.0, 0.0, 0.0, 1.0])
    after = moments([0.3, 0.0, 0.0, 1.0], high=[2.0, 0.0, 0.0, 3.0])  # channels 1, 2 never fire
    dead, silent = dead_and_silent(block, layer(conv_moments=conv).conv_point.stats, after)
    assert silent == (1, 2)
    assert dead == (1,)  # channel 2's margin −5.5 is above −6: silent here, not dead
    # Without a gating activation (a sigmoid, or none), silence means nothing.
    sigmoid = BlockFacts(block.norm, "act", "Sigmoid")
    assert dead_and_silent(sigmoid, layer(conv_moments=conv).conv_point.stats, after) == ((), ())


def test_dead_channels_are_reported_with_their_layer_and_silence_only_counted() -> None:
    block = BlockFacts(bn(4, gamma=[1.0] * 4, beta=[0.0, -9.0, 0.0, 0.0]), "relu", "ReLU")
    planted = layer("block.conv", after=moments([0.1] * 4), block=block, dead=(1,), silent=(1, 3))
    found = find(report([planted]))
    dead = next(f for f in found if f.kind == "dead_channels")
    assert (dead.layer, dead.channels, dead.severity) == ("block.conv", (1,), "warning")
    assert "β/|γ| ≤ −6 (lowest −9.0)" in dead.message
    silent = next(f for f in found if f.kind == "silent_channels")
    assert silent.severity == "info" and silent.evidence == (("block.conv", 1),)
    assert "1 channel in 1 layer never fired" in silent.message
    assert "dead (" in dead.message and "): channel 1. It passes nothing" in dead.message
    two = layer("c", after=moments([0.1] * 4), block=block, dead=(1, 2), silent=(1, 2))
    (both,) = [f for f in find(report([two])) if f.kind == "dead_channels"]
    assert "): channels 1, 2. They pass nothing" in both.message


def test_more_than_half_the_channels_dead_is_an_error() -> None:
    planted = layer(dead=(0, 1, 2))
    (dead,) = [f for f in find(report([planted])) if f.kind == "dead_channels"]
    assert dead.severity == "error"


# ------------------------------------------------------------------ filters and correlations


def test_duplicate_filters_and_functional_copies_name_their_pairs() -> None:
    filters = FilterStats((1.0,) * 4, (), ((0, 3, 0.999),), True, 0.3)
    pairs = ((1, 2, 0.9995), (0, 3, -0.97), (2, 3, 0.96))
    corr = Correlations("activation", 36, 3600, pairs, 3)
    block = BlockFacts(None, "relu", "ReLU")
    planted = layer("c", after=moments([0.1] * 4), block=block, filters=filters, correlations=corr)
    by_kind: dict[str, list] = {}
    for f in find(report([planted])):
        by_kind.setdefault(f.kind, []).append(f)
    assert by_kind["duplicate_filters"][0].pairs == ((0, 3),)
    copies, note = by_kind["correlated_channels"]
    assert (copies.severity, copies.pairs) == ("warning", ((1, 2),))  # only ρ ≥ 0.999
    assert note.severity == "info" and note.evidence == (("c", 3),)
    assert "(ρ ≥ 0.95: 2; opposite phase, ρ ≤ −0.95: 1)" in note.message


def test_two_channels_that_fire_once_together_are_not_copies() -> None:
    corr = Correlations("activation", 36, 3600, ((1, 2, 1.0),), 1)
    block = BlockFacts(None, "relu", "ReLU")
    after = moments([0.1] * 4)
    sparse = layer("c", after=after, block=block, correlations=corr)
    shares = (0.3, 0.3, 0.005, 0.3)  # channel 2 fires on 0.5% of the values
    points = (sparse.points[0], dataclasses.replace(sparse.points[1], positive=shares))
    found = find(report([dataclasses.replace(sparse, points=points)]))
    assert [f.severity for f in found if f.kind == "correlated_channels"] == ["info"]
    assert [f.severity for f in find(report([sparse])) if f.kind == "correlated_channels"] == [
        "warning",
        "info",
    ]


# ------------------------------------------------------------------ preprocessing


def test_the_divergence_is_zero_on_a_match_and_grows_with_a_shift() -> None:
    assert divergence([0.2, -1.0], [1.0, 4.0], [0.2, -1.0], [1.0, 4.0], 0.0) == pytest.approx(0.0)
    # One standard deviation off in the mean: KL = 1/2.
    assert divergence([1.0], [1.0], [0.0], [1.0], 0.0) == pytest.approx(0.5)
    # Half the variance: KL = ½(ln 2 + ½ − 1).
    assert divergence([0.0], [0.5], [0.0], [1.0], 0.0) == pytest.approx(0.5 * (math.log(2) - 0.5))
    assert divergence([9.0, 0.0], [1.0, 1.0], [0.0, 0.0], [1.0, 1.0], 0.0, skip=(0,)) == 0.0


def preprocessing_report(shift: float, images: int = 20, conventions=()):
    norm = bn(4, running_mean=[0.5] * 4, running_var=[1.0] * 4)
    conv = moments([0.5 + shift] * 4, spreads=[1.0] * 4)
    first = layer(
        "stem", conv_moments=conv, after=moments([0.1] * 4), block=BlockFacts(norm, "r", "ReLU")
    )
    pairs = [(i % 2, i % 2) for i in range(images)]
    return report([first], labeled(pairs), conventions=conventions)


def test_a_wrong_normalization_is_an_error_that_suggests_a_better_convention() -> None:
    assert "preprocessing_mismatch" not in kinds(find(preprocessing_report(0.3)))  # KL 0.045
    fits = (
        ConventionFit("this build's", (0.0,) * 3, (1.0,) * 3, False, 0.9, True),
        ConventionFit("scaling to −1..1", (0.5,) * 3, (0.5,) * 3, False, 0.02, False),
    )
    found = find(preprocessing_report(1.0, conventions=fits))  # KL 0.5
    (finding,) = [f for f in found if f.kind == "preprocessing_mismatch"]
    assert finding.severity == "error" and finding.layer == "stem"
    assert finding.evidence[1] == ("first_norm_divergence", 0.5) and PREPROCESS_FIRST < 0.5
    assert "scaling to −1..1 fits best" in finding.message
    assert "--mean 0.5,0.5,0.5 --std 0.5,0.5,0.5" in finding.message


def test_preprocessing_is_not_judged_on_too_few_images_or_one_class() -> None:
    few = preprocessing_report(1.0, images=PREPROCESS_MIN_IMAGES - 1)
    assert "preprocessing_mismatch" not in kinds(find(few))
    one_class = preprocessing_report(1.0)
    one_class = report(one_class.layers, [image(i, 0, 0) for i in range(20)])
    assert "preprocessing_mismatch" not in kinds(find(one_class))


# ------------------------------------------------------------------ untrained weights


def test_batch_norms_at_their_initial_statistics_mean_untrained_weights() -> None:
    fresh = bn(4, running_mean=[0.0] * 4, running_var=[1.0] * 4)
    block = BlockFacts(fresh, "r", "ReLU")
    layers = [layer(f"c{d}", depth=d, after=moments([0.1] * 4), block=block) for d in range(3)]
    found = find(report(layers, labeled([(0, 1)] * 12)))
    assert kinds(found) == ["untrained_weights"]  # the label problems that follow are not repeated
    assert found[0].severity == "error" and found[0].evidence[0] == ("norms_at_identity", 3)
    assert "100% of the images are predicted as 'dog'" in found[0].message
    # --weights none says so itself: no finding, but the same banner.
    assert find(report(layers, untrained=True)) == ()
    assert report(layers, untrained=True).looks_untrained


def flat_layers(smoothness: float, ratio: float) -> list:
    filters = FilterStats((ratio,) * 4, (), (), True, smoothness)
    return [layer(f"c{d}", depth=d, filters=filters, fresh_norm_median=1.0) for d in range(2)]


def test_flat_kernels_with_fresh_norms_look_untrained_without_batch_norm() -> None:
    images = labeled([(i % 2, i % 2) for i in range(10)])
    (finding,) = find(report(flat_layers(0.02, 1.1), images))
    assert finding.kind == "untrained_weights" and finding.severity == "warning"
    assert find(report(flat_layers(0.3, 1.1), images)) == ()  # smooth kernels: trained
    assert find(report(flat_layers(0.02, 1.4), images)) == ()  # norms moved: trained


def test_moved_running_statistics_rule_out_untrained_weights() -> None:
    trained = BlockFacts(bn(4), "r", "ReLU")
    filters = FilterStats((1.0,) * 4, (), (), True, 0.0)
    flat = layer(after=moments([0.1] * 4), block=trained, filters=filters, fresh_norm_median=1.0)
    assert "untrained_weights" not in kinds(find(report([flat])))


# ------------------------------------------------------------------ labels and predictions


def test_two_classes_predicted_as_each_other_are_a_label_swap() -> None:
    swapped = [(0, 1)] * 8 + [(0, 0)] * 2 + [(1, 0)] * 9 + [(1, 1)] + [(2, 2)] * 10
    (finding,) = [
        f
        for f in find(report(images=labeled(swapped), class_names=("a", "b", "c")))
        if f.kind == "label_swap"
    ]
    assert finding.classes == (0, 1)
    # Swapping the names would make 8 + 9 right and 2 + 1 wrong, of 30: +14/30.
    assert finding.evidence == (
        ("rate_a_as_b", 0.8),
        ("rate_b_as_a", 0.9),
        ("accuracy_gain", 0.4667),
    )
    # Ordinary confusion, one way only: no swap.
    one_way = [(0, 1)] * 8 + [(0, 0)] * 2 + [(1, 1)] * 10 + [(2, 2)] * 10
    assert "label_swap" not in kinds(
        find(report(images=labeled(one_way), class_names=("a", "b", "c")))
    )
    # Both ways but too little to gain: below SWAP_GAIN of the labeled images.
    small = [(0, 1)] * 2 + [(0, 0)] * 1 + [(1, 0)] * 2 + [(1, 1)] * 1 + [(2, 2)] * 60
    gain = (2 + 2 - 1 - 1) / 66
    assert gain < SWAP_GAIN
    assert "label_swap" not in kinds(
        find(report(images=labeled(small), class_names=("a", "b", "c")))
    )


def test_classes_never_right_skewed_predictions_and_below_chance() -> None:
    names = ("a", "b", "c", "d")
    skewed = [(c, 0) for c in range(4) for _ in range(6)]  # all predicted as a
    found = find(report(images=labeled(skewed), class_names=names))
    assert set(kinds(found)) == {"class_never_right", "prediction_skew"}
    by_kind = {f.kind: f for f in found}
    assert by_kind["class_never_right"].classes == (1, 2, 3)
    assert by_kind["prediction_skew"].classes == (0,)
    assert dict(by_kind["prediction_skew"].evidence)["distance"] == 0.75
    assert "below_chance" not in by_kind  # 25% is chance for four classes, not below it
    worse = [(c, (c + 1) % 4) for c in range(4) for _ in range(6)]
    assert "below_chance" in kinds(find(report(images=labeled(worse), class_names=names)))


# ------------------------------------------------------------------ shortcuts


def test_the_lift_is_one_for_a_giveaway_and_near_zero_for_noise() -> None:
    classes = [i % 3 for i in range(60)]
    assert lift([float(c) for c in classes], classes) == pytest.approx(1.0)
    noise = [((i * 7919) % 60) / 60 for i in range(60)]
    assert abs(lift(noise, classes)) < 0.3


def hue_coded(i: int) -> tuple[float, ...]:
    values = [0.5] * len(PROPERTY_NAMES)
    values[PROPERTY_NAMES.index("border_hue")] = 120.0 * (i % 3) + (i * 13) % 10
    return tuple(values)


def test_labels_given_away_by_the_border_are_a_shortcut() -> None:
    n = 3 * SHORTCUT_MIN_PER_CLASS
    images = labeled([(i % 3, i % 3) for i in range(n)], hue_coded)
    (finding,) = [f for f in find(report(images=images, class_names="abc")) if f.kind == "shortcut"]
    assert dict(finding.evidence)["property"] == "border_hue"
    assert finding.message.startswith("The labels are predictable from the border colour (hue)")
    too_few = labeled([(i % 3, i % 3) for i in range(n - 3)], hue_coded)
    assert "shortcut" not in kinds(find(report(images=too_few, class_names="abc")))


def test_predictions_that_follow_the_border_but_labels_that_do_not_blame_the_model() -> None:
    n = 3 * SHORTCUT_MIN_PER_CLASS
    # Predictions follow the border hue (image i's hue codes i % 3); labels are shuffled.
    images = labeled([((i * 7) % 3 if i % 2 else (i + 1) % 3, i % 3) for i in range(n)], hue_coded)
    found = [f for f in find(report(images=images, class_names="abc")) if f.kind == "shortcut"]
    (finding,) = found
    assert finding.severity == "warning"
    assert finding.message.startswith("The model's predictions are predictable from the border")


def test_findings_come_most_severe_first() -> None:
    block = BlockFacts(bn(4, running_mean=[0.0] * 4, running_var=[1.0] * 4), "r", "ReLU")
    layers = [layer(after=moments([0.1] * 4), block=block, dead=(0,), silent=(0, 1))]
    severities = [f.severity for f in find(report(layers, labeled([(0, 1)] * 12)))]
    assert severities == sorted(severities, key=["error", "warning", "info"].index)
    assert severities[0] == "error" and severities[-1] == "info"


def test_dead_filters_are_named_in_the_singular_and_the_plural() -> None:
    one = FilterStats((1.0, 1.0, 0.0, 1.0), (2,), (), True, 0.3)
    (found,) = [f for f in find(report([layer("c", filters=one)])) if f.kind == "dead_filters"]
    assert found.channels == (2,) and found.severity == "warning"  # 1 of 4: 25% of the layer
    assert "1 filter of 4 in c has (almost) zero weights: filter 2. Its channel" in found.message
    two = FilterStats((1.0, 0.0, 0.0, 1.0), (1, 2), (), True, 0.3)
    (found,) = [f for f in find(report([layer("c", filters=two)])) if f.kind == "dead_filters"]
    assert "2 filters of 4 in c have (almost) zero weights: filters 1, 2. Their" in found.message


# ------------------------------------------------------------------ where the maps lie


def test_mistakes_whose_maps_lie_on_the_background_are_named_by_class() -> None:
    from reportgen.analysis.rules import BACKGROUND_MIN_MISTAKES, BACKGROUND_SHARE
    from reportgen.report.facts import CamLayer, Cams

    # Class 0: three mistakes (predicted 1) at 0.2 inside, two correct at 0.8; class 1:
    # three mistakes exactly at the threshold, which is not below it.
    pairs = [(0, 1)] * 3 + [(0, 0)] * 2 + [(1, 0)] * 3
    images = labeled(pairs)
    shares = [0.2, 0.2, 0.2, 0.8, 0.8] + [BACKGROUND_SHARE] * 3
    layer_facts = CamLayer("x", "after ReLU", "conv", 4, 2, 2)
    cams = Cams("gradcam", layer_facts, (), masks="masks", inside=tuple(enumerate(shares)))
    found = [f for f in find(report(images=images, cams=cams)) if f.kind == "background_attention"]
    assert [f.classes for f in found] == [(0,)]
    assert dict(found[0].evidence)["inside_wrong"] == 0.2
    assert (
        "20% of the predicted class's map lies inside the object over 3 mistakes"
        in found[0].message
    )
    assert "(correct images of the class: 80%)" in found[0].message
    # Fewer mistakes than the rule asks for, or no masks: nothing.
    few = Cams("gradcam", layer_facts, (), masks="masks", inside=tuple(enumerate(shares[1:])))
    short = labeled(pairs[1:])
    assert BACKGROUND_MIN_MISTAKES == 3
    assert not [f for f in find(report(images=short, cams=few)) if f.kind == "background_attention"]
    bare = Cams("gradcam", layer_facts, (), inside=tuple(enumerate(shares)))
    assert not [
        f for f in find(report(images=images, cams=bare)) if f.kind == "background_attention"
    ]
