"""Pass 1: every image once, through a tally of reducers, with nothing per image kept
but its top classes. Memory does not grow with the number of images."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..data.batches import Prepare, batches
from ..data.files import ImageFile
from ..errors import InferenceError
from ..models.adapter import LOGITS, ModelAdapter, Tap
from ..report.facts import ChannelMoments, ConvFacts, Skipped
from ..timing import Timings
from .moments import ChannelMomentsReducer
from .predictions import TopClassesReducer
from .reducer import Tally

__all__ = ["DECODE", "FORWARD", "STATS", "LayerTally", "Pass1", "run_pass1"]

DECODE = "pass 1: decode and preprocess"
FORWARD = "pass 1: forward pass"
STATS = "pass 1: statistics in hooks"

Progress = Callable[[int], None]


@dataclass(frozen=True)
class LayerTally:
    """One conv layer after pass 1: its facts, its moments, and its calls per forward."""

    conv: ConvFacts
    moments: ChannelMoments
    calls_per_forward: int


@dataclass(frozen=True)
class Pass1:
    """What pass 1 learned about the whole image set."""

    top: dict[int, tuple[tuple[int, float], ...]]  # by file index, for every image read
    skipped: tuple[Skipped, ...]
    layers: tuple[LayerTally, ...]  # depth order: the order the forward pass calls them
    not_called: tuple[str, ...]
    num_classes: int
    logits_from: str  # where in the model's output the logits were found


def run_pass1(
    adapter: ModelAdapter,
    files: Sequence[ImageFile],
    prepare: Prepare,
    batch_size: int,
    progress: Progress,
    timings: Timings | None = None,
    shard: Sequence[int] | None = None,
) -> Pass1:
    """Predict every image (or those in ``shard``) and tally every conv layer's output."""
    clock = timings if timings is not None else Timings()
    convs = adapter.conv_layers()
    tally = Tally()
    moments = {c.name: tally.add(Tap(c.name), ChannelMomentsReducer()) for c in convs}
    top = tally.add(LOGITS, TopClassesReducer(capacity=len(files)))
    skipped: list[Skipped] = []

    def sink(tap: Tap, x: torch.Tensor) -> None:
        with clock.stage(STATS):
            tally(tap, x)

    stream = iter(batches(files, prepare, batch_size, shard))
    with adapter.recording(tally.taps, sink) as recording, torch.inference_mode():
        while True:
            with clock.stage(DECODE):
                batch = next(stream, None)
            if batch is None:
                break
            skipped.extend(Skipped(files[i].rel, reason) for i, reason in batch.failed)
            if batch.pixels is not None:
                tally.start_batch(batch.indices, adapter.device)
                # Hooks run inside the forward pass; their time counts as STATS, not FORWARD.
                in_hooks = clock.seconds.get(STATS, 0.0)
                with clock.stage(FORWARD):
                    recording.forward(batch.pixels, [files[i].rel for i in batch.indices])
                clock.add(FORWARD, in_hooks - clock.seconds.get(STATS, 0.0))
            progress(len(batch.indices) + len(batch.failed))
        order, calls, logits_from = (
            recording.call_order,
            recording.calls_per_forward,
            recording.logits_from,
        )

    predictions = top.finish(top.state())
    if not predictions.by_image:
        reasons = "; ".join(f"{s.rel}: {s.reason}" for s in skipped[:3])
        raise InferenceError(f"none of the {len(files)} image files could be read ({reasons})")
    facts = {c.name: c for c in convs}
    return Pass1(
        top=dict(predictions.by_image),
        skipped=tuple(skipped),
        layers=tuple(
            LayerTally(
                conv=facts[name],
                moments=moments[name].finish(moments[name].state()),
                calls_per_forward=calls[name],
            )
            for name in order
        ),
        not_called=tuple(c.name for c in convs if c.name not in order),
        num_classes=predictions.num_classes,
        logits_from=logits_from,
    )
