"""Pass 1: every image once, through a tally of reducers, with nothing per image kept
but its top classes and seven numbers about its pixels. Memory does not grow with the
number of images beyond those.

Per conv layer: moments and the share of positive values at the conv's output and, where
the forward pass applies a norm or an activation to it, after them; and the channel
correlations at the later of the two points."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..data.batches import Batch, Loading, Unnormalize, batches
from ..data.files import ImageFile
from ..errors import InferenceError
from ..models.adapter import FEATURES, INPUT, LOGITS, ModelAdapter, Recording, Sink, Tap
from ..report.facts import (
    BlockFacts,
    ChannelMoments,
    ConvFacts,
    Correlations,
    PointName,
    Skipped,
    UnitExamples,
)
from ..timing import Timings
from .active import PositiveShareReducer
from .correlation import CorrelationReducer
from .features import FeaturesReducer
from .moments import ChannelMomentsReducer
from .predictions import TopClassesReducer
from .properties import ImagePropertiesReducer
from .reducer import Results, Tally
from .topk import TopKReducer

__all__ = [
    "COLLECT",
    "DECODE",
    "FORWARD",
    "STATS",
    "LayerTally",
    "Pass1",
    "Pass1Options",
    "Pass1States",
    "Pass1Tally",
    "PointTally",
    "Unnormalize",
    "run_pass1",
]

DECODE = "pass 1: decode and preprocess"
FORWARD = "pass 1: forward pass"
STATS = "pass 1: statistics in hooks"
COLLECT = "pass 1: collect the statistics"

Progress = Callable[[int], None]


@dataclass(frozen=True)
class PointTally:
    """One point of a layer after pass 1: its moments, and its share of positive values
    where it is the layer's last point (after the activation, or the conv output alone)."""

    point: PointName
    moments: ChannelMoments
    positive: tuple[float, ...] | None
    units: UnitExamples | None = None


@dataclass(frozen=True)
class LayerTally:
    """One conv layer after pass 1: its facts, block, points, correlations and calls."""

    conv: ConvFacts
    block: BlockFacts
    points: tuple[PointTally, ...]  # the conv output, then the point after the block if any
    correlations: Correlations
    calls_per_forward: int


@dataclass(frozen=True)
class Pass1:
    """What pass 1 learned about the whole image set."""

    top: dict[int, tuple[tuple[int, float], ...]]  # by file index, for every image read
    properties: dict[int, tuple[float, ...]]  # by file index: PROPERTY_NAMES
    skipped: tuple[Skipped, ...]
    layers: tuple[LayerTally, ...]  # depth order: the order the forward pass calls them
    not_called: tuple[str, ...]
    num_classes: int
    logits_from: str  # where in the model's output the logits were found
    features: torch.Tensor | None  # [images, dims] unit vectors (tally/features.py), or None
    on_device: int = 0  # images decoded on the model's device (--decode gpu)


@dataclass(frozen=True)
class Pass1Options:
    """Which images pass 1 reads, and how many examples it keeps per channel."""

    shard: Sequence[int] | None = None  # file indices to read, in this order; None: all
    unit_examples: int = 9  # each channel's top and bottom images kept; 0 keeps none
    unit_point: PointName = "activation"  # --point: top examples kept there too
    loading: Loading = field(default_factory=Loading)  # --workers; pinned memory on CUDA


DEFAULT_OPTIONS = Pass1Options()


@dataclass(frozen=True)
class _LayerReducers:
    block: BlockFacts
    points: tuple[tuple[PointName, ChannelMomentsReducer], ...]
    positive: PositiveShareReducer
    correlation: CorrelationReducer
    units: tuple[TopKReducer, ...]  # one per point, or none


def _add_layer(
    tally: Tally, adapter: ModelAdapter, layer: str, options: Pass1Options
) -> _LayerReducers:
    """Register a layer's reducers: moments at both points where it has two; the share of
    positive values and the correlations at the later one, where the network acts. Top
    examples at the later one and at the point the pages show; bottom examples at the
    conv output, before any activation clips them."""
    block = adapter.block(layer)
    points: tuple[PointName, ...] = ("conv", "activation") if block.has_point else ("conv",)
    last = Tap(layer, points[-1])
    return _LayerReducers(
        block=block,
        points=tuple(
            (point, tally.add(Tap(layer, point), ChannelMomentsReducer())) for point in points
        ),
        positive=tally.add(last, PositiveShareReducer()),
        correlation=tally.add(last, CorrelationReducer(points[-1])),
        units=tuple(
            tally.add(
                Tap(layer, point),
                TopKReducer(
                    options.unit_examples,
                    top=point in (points[-1], options.unit_point),
                    bottom=point == "conv",
                ),
            )
            for point in points
        )
        if options.unit_examples
        else (),
    )


def _layer_tally(
    conv: ConvFacts, reducers: _LayerReducers, results: Results, calls: int
) -> LayerTally:
    last = reducers.points[-1][0]
    positive = results[reducers.positive]
    units: list[UnitExamples | None] = [results[u] for u in reducers.units]
    units = units or [None] * len(reducers.points)
    return LayerTally(
        conv=conv,
        block=reducers.block,
        points=tuple(
            PointTally(point, results[moments], positive if point == last else None, examples)
            for (point, moments), examples in zip(reducers.points, units, strict=True)
        ),
        correlations=results[reducers.correlation],
        calls_per_forward=calls,
    )


@dataclass(frozen=True)
class Pass1States:
    """One process's pass 1 before it is finished: every reducer's state (host tensors, in
    the tally's order) and what its forward passes saw. Shards of one image set merge."""

    states: tuple[Any, ...]
    skipped: tuple[Skipped, ...]
    call_order: tuple[str, ...]  # layers in the order the forward pass calls them
    calls_per_forward: dict[str, int]
    logits_from: str
    on_device: int = 0  # images decoded on the model's device
    layout: tuple[str, ...] = ()  # the tally's reducers, by tap and kind (Tally.layout)


class Pass1Tally:
    """Pass 1's reducers for one model and file list: run over a shard, merge, finish."""

    def __init__(
        self,
        adapter: ModelAdapter,
        files: Sequence[ImageFile],
        prepare: Unnormalize,
        options: Pass1Options = DEFAULT_OPTIONS,
    ) -> None:
        self.adapter, self.files, self.prepare, self.options = adapter, files, prepare, options
        self.convs = adapter.conv_layers()
        self.tally = tally = Tally()
        self.layers = {c.name: _add_layer(tally, adapter, c.name, options) for c in self.convs}
        self.top = tally.add(LOGITS, TopClassesReducer(capacity=len(files)))
        self.properties = tally.add(
            INPUT, ImagePropertiesReducer(len(files), prepare.mean, prepare.std, prepare.bgr)
        )
        self.features = (
            tally.add(FEATURES, FeaturesReducer(len(files))) if adapter.has_features() else None
        )

    def sink(self, clock: Timings) -> Sink:
        """Return the sink that hands each tap's tensor to the tally, timed as STATS."""
        tally = self.tally

        def sink(tap: Tap, x: torch.Tensor) -> None:
            with clock.stage(STATS):
                tally(tap, x)

        return sink

    def feed(self, recording: Recording, batch: Batch, clock: Timings) -> None:
        """Run one decoded batch through ``recording``, whose sink feeds this tally."""
        if batch.pixels is None:
            return
        self.tally.start_batch(batch.indices, self.adapter.device)
        # Hooks run inside the forward pass; their time counts as STATS, not FORWARD.
        in_hooks = clock.seconds.get(STATS, 0.0)
        with clock.stage(FORWARD):
            recording.forward(batch.pixels, [self.files[i].rel for i in batch.indices])
        clock.add(FORWARD, in_hooks - clock.seconds.get(STATS, 0.0))

    def close(
        self, recording: Recording, skipped: Sequence[Skipped], on_device: int, clock: Timings
    ) -> Pass1States:
        """Collect every reducer's state once the last batch has been fed."""
        with clock.stage(COLLECT):
            return Pass1States(
                self.tally.states(),
                tuple(skipped),
                recording.call_order,
                dict(recording.calls_per_forward),
                recording.logits_from,
                on_device,
                self.tally.layout,
            )

    def run(self, batch_size: int, progress: Progress, clock: Timings) -> Pass1States:
        """Predict the shard's images (every image without one) and tally every conv layer."""
        files, adapter = self.files, self.adapter
        skipped: list[Skipped] = []
        on_device = 0
        stream = iter(
            batches(files, self.prepare, batch_size, self.options.shard, self.options.loading)
        )
        with (
            adapter.recording(self.tally.taps, self.sink(clock)) as recording,
            torch.inference_mode(),
        ):
            while True:
                with clock.stage(DECODE):
                    batch = next(stream, None)
                if batch is None:
                    break
                skipped.extend(Skipped(files[i].rel, reason) for i, reason in batch.failed)
                on_device += batch.on_device
                self.feed(recording, batch, clock)
                progress(len(batch.indices) + len(batch.failed))
            return self.close(recording, skipped, on_device, clock)

    def merge(self, parts: Sequence[Pass1States]) -> Pass1States:
        """Combine the states of disjoint shards, in the order given (rank order)."""
        whole = parts[0]
        for rank, part in enumerate(parts[1:], start=1):
            if part.layout != whole.layout:
                raise InferenceError(
                    f"process {rank} found other layers or blocks in the model than process 0 "
                    f"({len(part.layout)} statistics against {len(whole.layout)}); every "
                    "process must load the same model"
                )
            seen = whole if whole.call_order else part  # a shard with no image saw no call
            whole = Pass1States(
                self.tally.merge(whole.states, part.states),
                whole.skipped + part.skipped,
                seen.call_order,
                seen.calls_per_forward,
                seen.logits_from,
                whole.on_device + part.on_device,
                whole.layout,
            )
        return whole

    def finish(self, whole: Pass1States, clock: Timings) -> Pass1:
        """Turn the (merged) states into pass 1's facts."""
        files, skipped, convs = self.files, whole.skipped, self.convs
        with clock.stage(COLLECT):
            results = self.tally.finish(whole.states)
            predictions = (
                results[self.top]
                if self.top in results
                else TopClassesReducer(0).finish(TopClassesReducer(0).state())
            )
            if not predictions.by_image:
                reasons = "; ".join(f"{s.rel}: {s.reason}" for s in skipped[:3])
                raise InferenceError(
                    f"none of the {len(files)} image files could be read ({reasons})"
                )
            facts = {c.name: c for c in convs}
            order, calls = whole.call_order, whole.calls_per_forward
            return Pass1(
                top=dict(predictions.by_image),
                properties=dict(results[self.properties].by_image),
                skipped=skipped,
                layers=tuple(
                    _layer_tally(facts[name], self.layers[name], results, calls[name])
                    for name in order
                ),
                not_called=tuple(c.name for c in convs if c.name not in order),
                num_classes=predictions.num_classes,
                logits_from=whole.logits_from,
                features=None if self.features is None else results[self.features],
                on_device=whole.on_device,
            )


def run_pass1(
    adapter: ModelAdapter,
    files: Sequence[ImageFile],
    prepare: Unnormalize,
    batch_size: int,
    progress: Progress,
    timings: Timings | None = None,
    options: Pass1Options = DEFAULT_OPTIONS,
) -> Pass1:
    """Predict every image (or those of ``options.shard``) and tally every conv layer's output."""
    clock = timings if timings is not None else Timings()
    pass1 = Pass1Tally(adapter, files, prepare, options)
    return pass1.finish(pass1.run(batch_size, progress, clock), clock)
