"""The comparison pass: every batch decoded once and run through every model of the diff.

Model A and model B each feed their own pass-1 tally (predictions, moments, top examples,
findings: the facts a build has), and, on the same batch, the pair reducers of
:mod:`reportgen.diff.cka`. Per batch, in this order: A (its layers' outputs kept for the
batch), B (A against B), the random initialisation of A's architecture (the floor of
meaning), B on a seeded derangement of the batch's images (the shuffled reference), and
each intermediate checkpoint (against B, whose outputs are kept too when there are any).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass

import torch

from ..config import BuildConfig
from ..data.batches import Batch, batches
from ..data.files import ImageFile
from ..errors import ConfigError
from ..models.adapter import LOGITS, ModelAdapter, Recording, Tap
from ..models.load import LoadedModel
from ..report.facts import Skipped
from ..tally.pass1 import DECODE, Pass1, Pass1Options, Pass1States, Pass1Tally
from ..tally.predictions import TopClassesReducer
from ..tally.reducer import Tally
from ..timing import Timings
from .cka import GROUPS, MinibatchCKA, MinibatchState, PairReducer, PairSums

__all__ = ["DiffPass", "Models", "derangement", "run_diff_pass"]

Progress = Callable[[int], None]
CKA = "diff: CKA sums in hooks"
OTHERS = "diff: forward passes of the reference models"


@dataclass(frozen=True)
class Models:
    """The loaded models of one comparison, with how each was specified."""

    a: LoadedModel
    b: LoadedModel
    floor: LoadedModel | None  # a random initialisation of A; None when B is exactly that
    middle: tuple[LoadedModel, ...]  # checkpoints between A and B, in training order
    aligned: bool  # same architecture: layers compared one to one


@dataclass(frozen=True)
class DiffPass:
    """What the comparison pass measured."""

    a: Pass1
    b: Pass1
    points: dict[str, Tap]  # A's layer name → where CKA measured it
    main: dict[str, PairSums]  # aligned layers: A against B, per group of images
    null: dict[str, PairSums]  # A against B on deranged images
    floor: dict[str, PairSums]  # A against its random initialisation (empty: B is it)
    middle: tuple[dict[str, PairSums], ...]  # each intermediate checkpoint against B
    middle_top1: tuple[dict[int, int], ...]  # each checkpoint's top class per image
    minibatch: MinibatchState | None  # different architectures: every layer pair
    layers_b: tuple[str, ...]  # B's layers in the heatmap
    pairs_null: int  # image pairs in the shuffled reference


def derangement(count: int, seed: int) -> list[int]:
    """Return a seeded permutation of ``range(count)`` that moves every index (count ≥ 2)."""
    if count < 2:
        return list(range(count))
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(count, generator=generator).tolist()
    # Sattolo's cycle: each index goes to the next in a random cycle, so none stays.
    moved = [0] * count
    for position, index in enumerate(order):
        moved[index] = order[(position + 1) % count]
    return moved


def _point(adapter: ModelAdapter, layer: str, point: str) -> Tap:
    """Return where a layer is compared: its last point under --point activation."""
    has_block = adapter.block(layer).has_point
    return Tap(layer, "activation" if point == "activation" and has_block else "conv")


class _Stash:
    """Each layer's output of one model for the current batch (copied: ReLUs work in place)."""

    def __init__(self, taps: Sequence[Tap]) -> None:
        self.taps = {tap: tap.layer for tap in taps}
        self.maps: dict[str, torch.Tensor] = {}

    def __call__(self, tap: Tap, x: torch.Tensor) -> None:
        layer = self.taps.get(tap)
        if layer is not None:
            self.maps[layer] = x.detach().clone()


def _sinks(*sinks: Callable[[Tap, torch.Tensor], None]) -> Callable[[Tap, torch.Tensor], None]:
    def sink(tap: Tap, x: torch.Tensor) -> None:
        for each in sinks:
            each(tap, x)

    return sink


def _pairs(taps: dict[Tap, str], groups: int) -> dict[str, PairReducer]:
    return {layer: PairReducer(groups) for layer in taps.values()}


def _paired(
    reducers: dict[str, PairReducer],
    taps: dict[Tap, str],
    other: Callable[[str], torch.Tensor | None],
    indices: Callable[[], torch.Tensor],
    clock: Timings,
    other_first: bool = True,
) -> Callable[[Tap, torch.Tensor], None]:
    """Return a sink that pairs each tapped output with ``other(layer)`` in its reducer."""

    def sink(tap: Tap, x: torch.Tensor) -> None:
        layer = taps.get(tap)
        if layer is None:
            return
        kept = other(layer)
        if kept is None:
            return
        with clock.stage(CKA):
            if other_first:
                reducers[layer].update(kept, x, indices())
            else:
                reducers[layer].update(x, kept, indices())

    return sink


def _states(reducers: dict[str, PairReducer]) -> dict[str, PairSums]:
    return {name: s for name, r in reducers.items() if (s := r.state()) is not None}


class _Pass:
    """The comparison pass's reducers and sinks for one set of models and files."""

    def __init__(
        self, config: BuildConfig, models: Models, files: Sequence[ImageFile], clock: Timings
    ) -> None:
        site = config.site
        a, b = models.a, models.b
        self.config, self.models, self.files, self.clock = config, models, files, clock
        self.prepare = a.preprocess  # every model sees the same tensors: A's preprocessing
        options = Pass1Options(unit_examples=site.unit_examples, unit_point=site.point)
        self.tally_a = Pass1Tally(a.adapter, files, self.prepare, options)
        self.tally_b = Pass1Tally(b.adapter, files, self.prepare, options)
        self.names_a = [c.name for c in a.adapter.conv_layers()]
        self.taps_a = {_point(a.adapter, n, site.point): n for n in self.names_a}
        self.names_b = [c.name for c in b.adapter.conv_layers()]
        self.taps_b = {_point(b.adapter, n, site.point): n for n in self.names_b}
        if models.aligned and sorted(self.taps_b.values()) != sorted(self.taps_a.values()):
            raise ConfigError(
                "model B's conv layers are not model A's; give --model-b for another architecture"
            )
        for other in (models.floor, *models.middle):
            if other is not None:
                for name in self.names_a:
                    other.adapter.block(name)  # an adapter finds a layer's activation point first
        self.stash_a = _Stash(list(self.taps_a))
        self.stash_b = _Stash(list(self.taps_b))
        self.device = a.adapter.device
        self.indices = torch.zeros(0, dtype=torch.long)
        self.null_rows: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.main = _pairs(self.taps_a, GROUPS) if models.aligned else {}
        self.null = _pairs(self.taps_a, 1) if models.aligned else {}
        self.floor = _pairs(self.taps_a, 1) if models.floor is not None else {}
        self.middle = [_pairs(self.taps_a, 1) for _ in models.middle]
        self.minibatch = None if models.aligned else MinibatchCKA(self.names_a, self.names_b)
        self.middle_top = [TopClassesReducer(capacity=len(files)) for _ in models.middle]
        self.shuffling = False  # B's recording serves the batch, then its deranged images
        self.pairs_null = 0

    def current(self) -> torch.Tensor:
        """Return the global indices of the batch being run."""
        return self.indices

    def _null_sink(self, tap: Tap, x: torch.Tensor) -> None:
        layer = self.taps_b.get(tap)
        if layer is None or self.null_rows is None:
            return
        rows_a, rows_b, pair_indices = self.null_rows
        kept = self.stash_a.maps[layer].index_select(0, rows_a)
        with self.clock.stage(CKA):
            self.null[layer].update(kept, x.index_select(0, rows_b), pair_indices)

    def sink_b(self) -> Callable[[Tap, torch.Tensor], None]:
        """Return B's sink: its tally and A against B, or the shuffled reference."""
        parts = [self.tally_b.sink(self.clock)]
        if self.models.aligned:
            parts.append(
                _paired(self.main, self.taps_b, self.stash_a.maps.get, self.current, self.clock)
            )
        if self.models.middle or self.minibatch is not None:
            parts.append(self.stash_b)
        batch_sink = _sinks(*parts)

        def sink(tap: Tap, x: torch.Tensor) -> None:
            (self._null_sink if self.shuffling else batch_sink)(tap, x)

        return sink

    def open(
        self, stack: ExitStack
    ) -> tuple[Recording, Recording, Recording | None, list[tuple[Recording, Tally]]]:
        """Open every model's recording on ``stack``: A, B, the floor, the checkpoints between."""
        models, clock = self.models, self.clock
        sink_a = _sinks(self.tally_a.sink(clock), self.stash_a)
        rec_a = stack.enter_context(models.a.adapter.recording(self.tally_a.tally.taps, sink_a))
        taps_b = sorted(set(self.tally_b.tally.taps) | set(self.taps_b))
        rec_b = stack.enter_context(models.b.adapter.recording(taps_b, self.sink_b()))
        rec_floor = None
        if models.floor is not None:
            sink = _paired(self.floor, self.taps_a, self.stash_a.maps.get, self.current, clock)
            rec_floor = stack.enter_context(
                models.floor.adapter.recording(sorted(self.taps_a), sink)
            )
        mids: list[tuple[Recording, Tally]] = []
        for model, pairs, top in zip(models.middle, self.middle, self.middle_top, strict=True):
            tally = Tally()
            tally.add(LOGITS, top)
            paired = _paired(
                pairs, self.taps_a, self.stash_b.maps.get, self.current, clock, other_first=False
            )
            recording = model.adapter.recording([*self.taps_a, LOGITS], _sinks(tally, paired))
            mids.append((stack.enter_context(recording), tally))
        return rec_a, rec_b, rec_floor, mids

    def shuffled(
        self, rec_b: Recording, batch: Batch, other: Batch | None, moved: Sequence[int]
    ) -> None:
        """Run B on the batch's deranged partners and pair them with A's outputs."""
        if other is None or other.pixels is None:
            return
        self.null_rows = _null_rows(batch, other, moved, self.device)
        if self.null_rows is None:
            return
        self.shuffling = True
        try:
            with self.clock.stage(OTHERS):
                rec_b.probe(other.pixels.to(self.device))
        finally:
            self.shuffling = False
        self.pairs_null += len(self.null_rows[2])

    def result(self, states_a: Pass1States, states_b: Pass1States) -> DiffPass:
        """Finish both tallies and hand over every pair's sums."""
        return DiffPass(
            a=self.tally_a.finish(states_a, self.clock),
            b=self.tally_b.finish(states_b, self.clock),
            points={layer: tap for tap, layer in self.taps_a.items()},
            main=_states(self.main),
            null=_states(self.null),
            floor=_states(self.floor),
            middle=tuple(_states(m) for m in self.middle),
            middle_top1=tuple(_top1(top) for top in self.middle_top),
            minibatch=None if self.minibatch is None else self.minibatch.state(),
            layers_b=tuple(self.names_b),
            pairs_null=self.pairs_null,
        )


def run_diff_pass(
    config: BuildConfig,
    models: Models,
    files: Sequence[ImageFile],
    progress: Progress,
    clock: Timings,
) -> DiffPass:
    """Run every batch through every model of the comparison and return the sums."""
    state = _Pass(config, models, files, clock)
    prepare, batch_size, device = state.prepare, config.run.batch_size, state.device
    moved = derangement(len(files), config.model.seed)
    stream = iter(batches(files, prepare, batch_size))
    shuffled = iter(batches(files, prepare, batch_size, moved)) if models.aligned else None
    skipped: list[Skipped] = []
    with ExitStack() as stack:
        stack.enter_context(torch.inference_mode())
        rec_a, rec_b, rec_floor, mids = state.open(stack)
        while True:
            with clock.stage(DECODE):
                batch = next(stream, None)
                other = next(shuffled, None) if shuffled is not None else None
            if batch is None:
                break
            skipped.extend(Skipped(files[i].rel, reason) for i, reason in batch.failed)
            if batch.pixels is not None:
                state.indices = torch.tensor(batch.indices, dtype=torch.long).to(device)
                state.tally_a.feed(rec_a, batch, clock)
                state.tally_b.feed(rec_b, batch, clock)
                pixels = batch.pixels.to(device)
                with clock.stage(OTHERS):
                    if rec_floor is not None:
                        rec_floor.probe(pixels)
                    for recording, tally in mids:
                        tally.start_batch(batch.indices, device)
                        recording.forward(pixels)
                if state.minibatch is not None:
                    with clock.stage(CKA):
                        state.minibatch.add(state.stash_a.maps, state.stash_b.maps)
                state.shuffled(rec_b, batch, other, moved)
                state.stash_a.maps.clear()
                state.stash_b.maps.clear()
            progress(len(batch.indices) + len(batch.failed))
        states_a = state.tally_a.close(rec_a, skipped, 0, clock)
        states_b = state.tally_b.close(rec_b, skipped, 0, clock)
    return state.result(states_a, states_b)


def _top1(reducer: TopClassesReducer) -> dict[int, int]:
    """Return each image's top class from a finished reducer."""
    return {i: top[0][0] for i, top in reducer.finish(reducer.state()).by_image.items()}


def _null_rows(
    batch: Batch, other: Batch, moved: Sequence[int], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Pair each image of ``batch`` with its deranged partner in ``other``, where both were read.

    Returns the rows in A's batch, the rows in ``other`` and the images' indices.
    """
    where = {index: row for row, index in enumerate(other.indices)}
    kept = [(row, where[moved[i]], i) for row, i in enumerate(batch.indices) if moved[i] in where]
    if not kept:
        return None
    return (
        torch.tensor([k[0] for k in kept], device=device),
        torch.tensor([k[1] for k in kept], device=device),
        torch.tensor([k[2] for k in kept], device=device),
    )
