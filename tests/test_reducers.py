"""Pass 1's reducers: independent of batching and sharding, mergeable, and pluggable."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from models import TinyNet

from reportgen.analysis.channels import channel_stats
from reportgen.config import BuildConfig
from reportgen.data.batches import batches
from reportgen.data.files import collect_images
from reportgen.models.adapter import LOGITS, Tap
from reportgen.models.load import load_model
from reportgen.models.torch_adapter import TorchAdapter
from reportgen.tally.moments import ChannelMomentsReducer
from reportgen.tally.pass1 import Pass1Options, run_pass1
from reportgen.tally.predictions import TopClassesReducer
from reportgen.tally.reducer import Tally


def activations() -> torch.Tensor:
    torch.manual_seed(0)
    data = torch.randn(10, 5, 6, 6) * torch.arange(1, 6).view(1, 5, 1, 1) + 3
    data[:, 2] = 1.5  # a dead (constant) channel
    return data


def reduce(reducer: ChannelMomentsReducer, *chunks: tuple[torch.Tensor, range]) -> None:
    for x, indices in chunks:
        reducer.update(x, torch.tensor(list(indices)))


def test_moments_are_independent_of_batching_and_layout() -> None:
    data = activations()
    whole, parts = ChannelMomentsReducer(), ChannelMomentsReducer()
    reduce(whole, (data, range(10)))
    reduce(parts, (data[:3], range(3)), (data[3:4], range(3, 4)), (data[4:], range(4, 10)))
    a, b = whole.finish(whole.state()), parts.finish(parts.state())
    assert a.count == b.count == 10 * 36
    assert a.mean == pytest.approx(b.mean, rel=1e-12)  # per-image sums, merged in float64
    assert a.sum_squares == pytest.approx(b.sum_squares, rel=1e-12)
    assert a.mean == pytest.approx(data.double().mean(dim=(0, 2, 3)).tolist(), rel=1e-6)
    assert a.variance == pytest.approx(
        data.double().var(dim=(0, 2, 3), unbiased=False).tolist(), rel=1e-5, abs=1e-9
    )
    assert a.max == pytest.approx(data.amax(dim=(0, 2, 3)).tolist())
    assert a.min == pytest.approx(data.amin(dim=(0, 2, 3)).tolist())
    assert a.output_shape == (5, 6, 6)
    last = ChannelMomentsReducer()
    reduce(last, (data.contiguous(memory_format=torch.channels_last), range(10)))
    c = last.finish(last.state())
    assert c.mean == pytest.approx(a.mean, rel=1e-6) and c.max == a.max
    stats = channel_stats(a)
    assert stats.constant == channel_stats(c).constant == (2,)
    assert 2 not in stats.by_mean
    assert stats.by_mean == tuple(sorted((0, 1, 3, 4), key=lambda ch: -a.mean[ch]))


def test_shards_merge_to_the_whole() -> None:
    data = activations()
    whole, first, second = ChannelMomentsReducer(), ChannelMomentsReducer(), ChannelMomentsReducer()
    reduce(whole, (data, range(10)))
    reduce(first, (data[:4], range(4)))
    reduce(second, (data[4:7], range(4, 7)), (data[7:], range(7, 10)))
    merged, alone = (
        whole.finish(whole.merge(first.state(), second.state())),
        whole.finish(whole.state()),
    )
    assert merged.count == alone.count and merged.output_shape == alone.output_shape
    assert merged.min == alone.min and merged.max == alone.max
    assert merged.sum == pytest.approx(alone.sum, rel=1e-12)
    assert merged.sum_squares == pytest.approx(alone.sum_squares, rel=1e-12)
    other = ChannelMomentsReducer()
    reduce(other, (torch.zeros(1, 2, 3, 3), range(1)))
    with pytest.raises(ValueError, match="cannot merge"):
        whole.merge(first.state(), other.state())


def test_top_classes_of_two_shards_merge_to_the_whole() -> None:
    torch.manual_seed(1)
    logits = torch.randn(9, 7)
    whole, a, b = TopClassesReducer(9), TopClassesReducer(9), TopClassesReducer(9)
    whole.update(logits, torch.arange(9))
    a.update(logits[[0, 2, 4, 6, 8]], torch.tensor([0, 2, 4, 6, 8]))
    b.update(logits[[1, 3]], torch.tensor([1, 3]))
    b.update(logits[[5, 7]], torch.tensor([5, 7]))
    merged = whole.finish(whole.merge(a.state(), b.state()))
    assert merged == whole.finish(whole.state())
    assert merged.num_classes == 7 and len(merged.by_image[4]) == 5
    best = torch.softmax(logits[4], dim=0).max()
    assert merged.by_image[4][0] == (int(logits[4].argmax()), pytest.approx(float(best)))
    assert whole.finish(TopClassesReducer(9).state()).by_image == {}


def test_pass1_over_shards_gives_the_same_predictions_and_any_batch_size(
    images: Path,
) -> None:
    config = BuildConfig.from_options(
        {"model": "resnet18", "images": images, "weights": "none", "input_size": 32}
    )
    loaded = load_model(config.model, config.run)
    files, _ = collect_images(images)

    def pass1(batch_size: int, shard: list[int] | None = None):
        return run_pass1(
            loaded.adapter,
            files,
            loaded.preprocess,
            batch_size,
            lambda n: None,
            options=Pass1Options(shard=shard),
        )

    whole = pass1(3)
    halves = {**pass1(2, [0, 2, 4, 6]).top, **pass1(4, [1, 3, 5, 7]).top}
    assert halves.keys() == whole.top.keys() == set(range(8))
    for i, top in whole.top.items():
        assert [c for c, _ in top] == [c for c, _ in halves[i]]
        assert [p for _, p in top] == pytest.approx([p for _, p in halves[i]], rel=1e-5)
    again = pass1(8)
    for mine, theirs in zip(whole.layers, again.layers, strict=True):
        assert [p.point for p in mine.points] == [p.point for p in theirs.points]
        for a, b in zip(mine.points, theirs.points, strict=True):
            assert a.moments.mean == pytest.approx(b.moments.mean, rel=1e-5, abs=1e-7)
            assert a.moments.max == pytest.approx(b.moments.max, rel=1e-5)
            assert a.moments.image_spread == pytest.approx(
                b.moments.image_spread, rel=1e-4, abs=1e-7
            )
            assert a.positive == b.positive  # integer counts: exact
        assert mine.correlations.samples == theirs.correlations.samples
        assert mine.correlations.pairs == theirs.correlations.pairs


def test_batches_take_a_shard_in_the_order_given(images: Path) -> None:
    from reportgen.models.preprocess import Preprocess

    files, _ = collect_images(images)
    prepare = Preprocess(18, 16, (0.5,) * 3, (0.25,) * 3, "bilinear", 3, "test")
    seen = [(b.indices, tuple(b.pixels.shape)) for b in batches(files, prepare, 2, [5, 1, 7])]
    assert seen == [((5, 1), (2, 3, 16, 16)), ((7,), (1, 3, 16, 16))]


# A worked example of the seam: a new reducer is one small class, registered on a tally
# for the taps it wants. Nothing in the hooks, the adapter or the other reducers changes.


@dataclass(frozen=True)
class ActiveState:
    positive: torch.Tensor  # per channel: how many values were above zero
    total: int


class ActiveShare:
    """Share of positions where each channel is positive (the point's "firing rate")."""

    def __init__(self) -> None:
        self._positive: torch.Tensor | None = None
        self._total = 0

    def update(self, x: torch.Tensor, indices: torch.Tensor) -> None:
        positive = (x > 0).sum(dim=(0, 2, 3))
        self._positive = positive if self._positive is None else self._positive + positive
        self._total += x.numel() // x.shape[1]

    def state(self) -> ActiveState:
        assert self._positive is not None
        return ActiveState(self._positive.cpu(), self._total)

    def merge(self, a: ActiveState, b: ActiveState) -> ActiveState:
        return ActiveState(a.positive + b.positive, a.total + b.total)

    def finish(self, state: ActiveState) -> tuple[float, ...]:
        return tuple(float(p) / state.total for p in state.positive.tolist())


def test_a_new_reducer_plugs_into_a_tally_without_touching_the_hooks() -> None:
    torch.manual_seed(0)
    model = TinyNet().eval()
    adapter = TorchAdapter(model, torch.device("cpu"))
    tally = Tally()
    share = tally.add(Tap("features.0"), ActiveShare())
    moments = tally.add(Tap("features.0"), ChannelMomentsReducer())
    top = tally.add(LOGITS, TopClassesReducer(capacity=6))
    x = torch.randn(6, 3, 16, 16)
    with adapter.recording(tally.taps, tally) as recording, torch.inference_mode():
        for start in (0, 4):
            tally.start_batch(range(start, min(start + 4, 6)), adapter.device)
            recording.forward(x[start : start + 4])
    expected = (model.features[0](x) > 0).double().mean(dim=(0, 2, 3))
    assert share.finish(share.state()) == pytest.approx(expected.tolist())
    assert moments.finish(moments.state()).count == 6 * 16 * 16
    assert sorted(top.finish(top.state()).by_image) == list(range(6))


def test_a_tally_needs_the_batch_before_the_forward() -> None:
    tally = Tally()
    tally.add(Tap("x"), ChannelMomentsReducer())
    with pytest.raises(RuntimeError, match="start_batch"):
        tally(Tap("x"), torch.zeros(1, 1, 1, 1))


def test_pass1_moves_nothing_to_the_host_per_batch(
    images: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reducers keep their state on the model's device; on a GPU, a host transfer in a hook
    would stall every batch. On the CPU the same calls run, so count the calls that read a
    tensor on the host while a forward pass (and its sinks) runs."""
    import reportgen.models.torch_adapter as torch_adapter

    config = BuildConfig.from_options(
        {"model": "resnet18", "images": images, "weights": "none", "input_size": 32}
    )
    loaded = load_model(config.model, config.run)
    files, _ = collect_images(images)
    inside = [False]
    reads: list[str] = []
    for name in ("cpu", "tolist", "item", "numpy", "__bool__", "__float__", "__int__"):
        real = getattr(torch.Tensor, name)

        def watched(self: torch.Tensor, *args: object, _real=real, _name=name, **kw: object):
            if inside[0]:
                reads.append(_name)
            return _real(self, *args, **kw)

        monkeypatch.setattr(torch.Tensor, name, watched)
    forward = torch_adapter._TorchRecording.forward

    def watched_forward(self, batch, names=()):
        inside[0] = True
        try:
            return forward(self, batch, names)
        finally:
            inside[0] = False

    monkeypatch.setattr(torch_adapter._TorchRecording, "forward", watched_forward)
    result = run_pass1(loaded.adapter, files, loaded.preprocess, 3, lambda n: None)
    assert len(result.top) == 8 and len(result.layers) == 20
    assert reads == []


# ------------------------------------------------------------------ the reducers findings need


def test_positive_share_counts_exactly_whatever_the_batching() -> None:
    from reportgen.tally.active import PositiveShareReducer

    data = activations() - 3.0
    whole, parts = PositiveShareReducer(), PositiveShareReducer()
    whole.update(data, torch.arange(10))
    for chunk in (slice(0, 3), slice(3, 10)):
        parts.update(data[chunk].contiguous(memory_format=torch.channels_last), torch.arange(0))
    expected = (data > 0).double().mean(dim=(0, 2, 3)).tolist()
    assert whole.finish(whole.state()) == parts.finish(parts.state()) == pytest.approx(expected)
    merged = whole.merge(parts.state(), parts.state())
    assert merged.total == 2 * 10 * 36


def test_correlations_find_copies_and_opposites_independent_of_batching() -> None:
    from reportgen.tally.correlation import GRID, CorrelationReducer

    torch.manual_seed(0)
    x = torch.randn(12, 6, 20, 20)
    x[:, 3] = 2.0 * x[:, 1] + 0.5  # a copy, rescaled: ρ = 1
    x[:, 4] = -x[:, 0] + 0.01 * torch.randn(12, 20, 20)  # opposite phase: ρ ≈ −1
    x[:, 5] = 7.0  # constant: no correlation at all
    whole, parts = CorrelationReducer("activation"), CorrelationReducer("activation")
    whole.update(x, torch.arange(12))
    parts.update(x[:5], torch.arange(5))
    parts.update(x[5:].contiguous(memory_format=torch.channels_last), torch.arange(5, 12))
    a, b = whole.finish(whole.state()), parts.finish(parts.state())
    assert a == b
    assert [(i, j) for i, j, _ in a.pairs] == [(1, 3), (0, 4)]
    assert a.pairs[0][2] == pytest.approx(1.0) and a.pairs[1][2] == pytest.approx(-1.0, abs=1e-3)
    # 20 px in steps of ceil(20 / GRID) = 4: five positions a side, at most GRID.
    assert a.positions == 5 * 5 <= GRID * GRID and a.samples == 12 * 25 and a.total == 2
    # The sampled grid's correlations equal those computed directly on the same positions.
    grid = x[:, :, ::4, ::4].permute(1, 0, 2, 3).reshape(6, -1)[:3].double()
    direct = torch.corrcoef(grid)
    state = whole.state()
    mean = state.sum / state.count
    cov = state.gram / state.count - torch.outer(mean, mean)
    rho = cov[:3, :3] / torch.outer(cov.diagonal()[:3].sqrt(), cov.diagonal()[:3].sqrt())
    assert rho == pytest.approx(direct, abs=1e-6)


def test_image_properties_read_the_border_and_the_centre() -> None:
    from reportgen.report.facts import PROPERTY_NAMES
    from reportgen.tally.properties import ImagePropertiesReducer, properties

    pixels = torch.zeros(2, 3, 16, 16)
    pixels[0, 0] = 1.0  # all red
    pixels[1, 1] = 1.0  # a green border around a white centre
    pixels[1, :, 2:14, 2:14] = 1.0
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    values = properties((pixels - 0.5) / 0.25, mean, std)
    named = [dict(zip(PROPERTY_NAMES, row, strict=True)) for row in values.tolist()]
    assert named[0]["hue"] == pytest.approx(0.0) and named[0]["saturation"] == pytest.approx(1.0)
    assert named[0]["brightness"] == pytest.approx(0.299, abs=1e-5)
    assert named[0]["contrast"] == pytest.approx(0.0, abs=1e-6)
    assert named[1]["border_hue"] == pytest.approx(120.0)
    assert named[1]["border_brightness"] == pytest.approx(0.587, abs=1e-5)
    assert named[1]["centre_minus_border"] == pytest.approx(1.0 - 0.587, abs=1e-5)
    # BGR input: the same picture with its channels reversed reads the same.
    bgr = properties(((pixels - 0.5) / 0.25).flip(1), mean, std, bgr=True)
    assert bgr.flatten().tolist() == pytest.approx(values.flatten().tolist(), abs=1e-6)
    reducer = ImagePropertiesReducer(4, mean, std)
    reducer.update((pixels - 0.5) / 0.25, torch.tensor([3, 1]))
    found = reducer.finish(reducer.state()).by_image
    assert sorted(found) == [1, 3] and found[3][0] == pytest.approx(0.299, abs=1e-5)


def test_moments_keep_the_spread_of_per_image_means() -> None:
    data = activations()
    reducer = ChannelMomentsReducer()
    for chunk in (slice(0, 4), slice(4, 10)):
        reducer.update(data[chunk], torch.arange(0))
    result = reducer.finish(reducer.state())
    per_image = data.double().mean(dim=(2, 3))
    assert result.images == 10
    expected = per_image.std(dim=0, unbiased=False).tolist()
    assert result.image_spread == pytest.approx(expected, rel=1e-5)


# ------------------------------------------------------------------ top-k per channel


def _fold(reducer, x: torch.Tensor, batch: int):  # type: ignore[no-untyped-def]
    for start in range(0, len(x), batch):
        reducer.update(x[start : start + batch], torch.arange(start, min(start + batch, len(x))))
    return reducer.state()


def test_top_k_keeps_the_highest_maxima_ties_by_image_order_whatever_the_batching() -> None:
    from reportgen.tally.topk import TopKReducer

    torch.manual_seed(0)
    x = torch.randn(23, 3, 5, 4)
    # Channel 1: images 4, 9 and 17 share the highest maximum; image 2 is next.
    x[:, 1] = x[:, 1].clamp(max=1.0)
    for i in (17, 4, 9):
        x[i, 1, 2, 3] = 5.0
    x[2, 1, 0, 1] = 4.0
    results = []
    for batch in (1, 4, 23):
        for layout in (torch.contiguous_format, torch.channels_last):
            reducer = TopKReducer(k=4, top=True, bottom=True)
            state = _fold(reducer, x.contiguous(memory_format=layout), batch)
            results.append(reducer.finish(state))
    first = results[0]
    assert all(r == first for r in results[1:])
    top = first.top[1]
    assert [(e.image, e.value, e.y, e.x) for e in top] == [
        (4, 5.0, 2, 3),
        (9, 5.0, 2, 3),
        (17, 5.0, 2, 3),
        (2, 4.0, 0, 1),
    ]
    # Every channel, against a plain sort of the per-image maxima and minima.
    maxima = x.flatten(2).amax(dim=2)
    minima = x.flatten(2).amin(dim=2)
    for c in range(3):
        expected = sorted(range(23), key=lambda i: (-float(maxima[i, c]), i))[:4]
        assert [e.image for e in first.top[c]] == expected
        lowest = sorted(range(23), key=lambda i: (float(minima[i, c]), i))[:4]
        assert first.bottom is not None
        assert [e.image for e in first.bottom[c]] == lowest
        assert all(float(minima[e.image, c]) == e.value for e in first.bottom[c])


def test_top_k_of_two_shards_merges_to_the_whole_and_the_reservoir_is_fixed() -> None:
    from reportgen.tally.topk import QUANTILES, SAMPLE, TopKReducer, reservoir_key

    torch.manual_seed(1)
    x = torch.randn(150, 2, 3, 3)
    whole = TopKReducer(k=5)
    expected = whole.finish(_fold(whole, x, 16))
    a, b = TopKReducer(k=5), TopKReducer(k=5)
    odd = list(range(1, 150, 2))
    even = list(range(0, 150, 2))
    for reducer, part in ((a, odd), (b, even)):
        for start in range(0, len(part), 7):
            chunk = part[start : start + 7]
            reducer.update(x[chunk], torch.tensor(chunk))
    merged = a.finish(a.merge(b.state(), a.state()))
    assert merged == expected
    assert merged.bottom is None and merged.sample_size == SAMPLE
    # The reservoir: the SAMPLE images of smallest key, the same for every channel.
    keys = reservoir_key(torch.arange(150))
    chosen = set(torch.sort(keys).indices[:SAMPLE].tolist())
    maxima = x.flatten(2).amax(dim=2)
    for c in range(2):
        values = sorted(float(maxima[i, c]) for i in chosen)
        picks = [values[round(q * (SAMPLE - 1))] for q in QUANTILES]
        assert [e.value for e in merged.quantiles[c]] == picks
        assert {e.image for e in merged.quantiles[c]} <= chosen


@pytest.mark.parametrize("shape", [(3, 4, 5, 4), (2, 3, 160, 7), (2, 2, 64, 64), (1, 2, 33, 9)])
def test_each_maps_extreme_and_its_first_position_in_raster_order(shape: tuple[int, ...]) -> None:
    from reportgen.tally.topk import _extreme

    torch.manual_seed(2)
    x = torch.randn(shape).relu()  # many zeros tie for the minimum
    n, _, h, w = shape
    x[0, 0] = 0.0  # every position ties
    x[n - 1, 1, h - 1, 1] = x[n - 1, 1, h - 1, 0] = 9.0  # a tie inside the last row
    x[0, 1, 1, w - 1] = x[0, 1, h - 1, 0] = 9.0  # a tie across rows (and chunks)
    flat = x.flatten(2)
    for highest in (True, False):
        value, where = _extreme(x, highest)
        expected = flat.amax(dim=2) if highest else flat.amin(dim=2)
        first = (flat == expected[..., None]).int().argmax(dim=2)  # the first position hit
        assert torch.equal(value, expected)
        assert torch.equal(where, first)
