"""Run the model over the images with hooks on every conv layer.

Two passes, so memory does not grow with the number of images:

1. every image: predictions, and per-channel statistics reduced inside the hooks;
2. only the images the report shows: channel-mean maps and top-channel maps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .collect import ImageFile, Skipped, load_image
from .errors import InferenceError, ModelError, short_error
from .hooks import ConvInfo, ConvRecorder
from .model import LoadedModel, Preprocess
from .stats import ChannelAccumulator, LayerStats
from .timing import Timings

TOP_K = 5
DECODE = "pass 1: decode and preprocess"
FORWARD = "pass 1: forward pass"
STATS = "pass 1: statistics in hooks"

Progress = Callable[[int], None]


class _Images(Dataset):
    """Decode and preprocess images; a file that fails yields its reason instead."""

    def __init__(
        self, files: Sequence[ImageFile], indices: Sequence[int], preprocess: Preprocess
    ) -> None:
        self.files = files
        self.indices = list(indices)
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str | None]:
        index = self.indices[i]
        image = load_image(self.files[index].path, self.preprocess.mode)
        if isinstance(image, str):
            return index, None, image
        return index, self.preprocess(image), None


def _collate(
    items: list[tuple[int, torch.Tensor | None, str | None]],
) -> tuple[list[int], torch.Tensor | None, list[tuple[int, str]]]:
    good = [(i, t) for i, t, _ in items if t is not None]
    bad = [(i, r) for i, t, r in items if t is None and r is not None]
    batch = torch.stack([t for _, t in good]) if good else None
    return [i for i, _ in good], batch, bad


def _batches(
    files: Sequence[ImageFile], indices: Sequence[int], preprocess: Preprocess, batch_size: int
) -> Iterator[tuple[list[int], torch.Tensor | None, list[tuple[int, str]]]]:
    loader = DataLoader(
        _Images(files, indices, preprocess),
        batch_size=batch_size,
        shuffle=False,
        collate_fn=_collate,
    )
    yield from loader


def _kind(output: object) -> str:
    if isinstance(output, tuple) and hasattr(output, "_fields"):
        return f"namedtuple {type(output).__name__}"
    return type(output).__name__


def _part(output: object, key: str) -> tuple[object, str]:
    """Take the ``--output-key`` part of an output: a dict key, a field or attribute, an index."""
    if isinstance(output, Mapping):
        if key in output:
            return output[key], f"the {key!r} entry of the returned {_kind(output)}"
        raise ModelError(
            f"--output-key {key!r} is not among the keys of the model's output "
            f"({', '.join(map(str, output))})"
        )
    if isinstance(output, (tuple, list)):
        fields = getattr(output, "_fields", ())
        if key in fields:
            return getattr(output, key), f"field {key!r} of the returned {_kind(output)}"
        try:
            index = int(key)
            return output[index], f"item {index} of the returned {_kind(output)}"
        except (ValueError, IndexError):
            names = f"fields {', '.join(fields)} or " if fields else ""
            raise ModelError(
                f"--output-key {key!r} does not pick from the model's {_kind(output)} of "
                f"{len(output)} items; pass {names}an index from 0 to {len(output) - 1}"
            ) from None
    if not isinstance(output, torch.Tensor) and hasattr(output, key):
        return getattr(output, key), f"attribute {key!r} of the returned {_kind(output)}"
    raise ModelError(
        f"--output-key {key!r} was given, but the model returns a {_kind(output)} "
        "with no such part; leave --output-key out"
    )


def pick_logits(
    output: object, key: str | None = None, owner: str = "the returned "
) -> tuple[torch.Tensor, str]:
    """Find the class logits in a model's output, and say where they were found.

    Without ``key``: a tensor itself, a dict's ``logits`` entry (or its only entry), or
    the first item of a tuple, list or namedtuple (looked into once more if it is itself
    a dict or tuple). With ``key`` (``--output-key``): that dict key, namedtuple field or
    attribute, or that index of a tuple. ``owner`` words the description of ``output``.
    """
    if key is not None:
        logits, where = _part(output, key)
    elif isinstance(output, torch.Tensor):
        logits, where = output, "the output tensor"
    elif isinstance(output, Mapping):
        if "logits" in output:
            logits, where = output["logits"], f"the 'logits' entry of {owner}{_kind(output)}"
        elif len(output) == 1:
            (only,) = output
            logits, where = (
                output[only],
                f"the only entry, {only!r}, of {owner}{_kind(output)}",
            )
        else:
            raise ModelError(
                f"the model returned a {_kind(output)} with keys {', '.join(map(str, output))} "
                "and none is called 'logits'; name the one that holds the logits with --output-key"
            )
    elif isinstance(output, (tuple, list)) and output:
        fields = getattr(output, "_fields", ())
        first = f"field {fields[0]!r} (the first)" if fields else "item 0"
        where = f"{first} of {owner}{_kind(output)}"
        logits = output[0]
        if isinstance(logits, (Mapping, tuple, list)):
            logits, inner = pick_logits(logits, owner="")
            where = f"{inner}, in {where}"
    else:
        raise ModelError(
            f"the model returned {_kind(output)}; featreport needs class logits "
            "(a tensor, or a tuple or dict holding one: see --output-key)"
        )
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else _kind(logits)
        raise ModelError(
            f"the model's logits, taken from {where}, have shape {shape}; featreport needs "
            "classification logits of shape [batch, classes] (choose another part with --output-key)"
        )
    return logits, where


def _forward(
    recorder: ConvRecorder, batch: torch.Tensor, names: list[str], key: str | None
) -> tuple[torch.Tensor, str]:
    try:
        output = recorder.forward(batch)
    except Exception as exc:
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        raise InferenceError(
            f"the model's forward pass failed ({short_error(exc)[:300]}) on the batch of "
            f"{len(names)} image(s) {shown}, input shape {tuple(batch.shape)}; check --input-size "
            "and that the model takes one image tensor"
        ) from None
    return pick_logits(output, key)


@dataclass(frozen=True)
class InferenceResult:
    """What pass 1 learned about the whole image set."""

    top: tuple[tuple[tuple[int, float], ...] | None, ...]  # per file; None if skipped
    skipped: tuple[Skipped, ...]
    layers: tuple[ConvInfo, ...]  # depth order: the order the forward pass calls them
    modules: tuple[nn.Module, ...]
    stats: tuple[LayerStats, ...]
    calls_per_forward: tuple[int, ...]
    not_called: tuple[str, ...]
    num_classes: int
    logits_from: str  # where in the model's output the logits were found


def run_inference(
    loaded: LoadedModel,
    files: Sequence[ImageFile],
    layers: Sequence[tuple[str, nn.Module]],
    batch_size: int,
    strongest: int,
    progress: Progress,
    timings: Timings | None = None,
) -> InferenceResult:
    """Predict every image and reduce every hooked layer's output to channel statistics."""
    clock = timings if timings is not None else Timings()
    accumulators = [ChannelAccumulator() for _ in layers]
    top: list[tuple[tuple[int, float], ...] | None] = [None] * len(files)
    skipped: list[Skipped] = []
    num_classes = 0
    logits_from = ""

    def sink(index: int, output: torch.Tensor) -> None:
        with clock.stage(STATS):
            accumulators[index].update(output)

    batches = iter(_batches(files, range(len(files)), loaded.preprocess, batch_size))
    with ConvRecorder(loaded.module, layers, sink) as recorder, torch.inference_mode():
        while True:
            with clock.stage(DECODE):
                item = next(batches, None)
            if item is None:
                break
            indices, batch, bad = item
            skipped.extend(Skipped(files[i].rel, reason) for i, reason in bad)
            if batch is not None:
                # Hooks run inside the forward pass; their time counts as STATS, not FORWARD.
                in_hooks = clock.seconds.get(STATS, 0.0)
                with clock.stage(FORWARD):
                    logits, logits_from = _forward(
                        recorder,
                        batch.to(loaded.device),
                        [files[i].rel for i in indices],
                        loaded.output_key,
                    )
                clock.add(FORWARD, in_hooks - clock.seconds.get(STATS, 0.0))
                num_classes = int(logits.shape[1])
                probs = torch.softmax(logits.float(), dim=1)
                values, classes = probs.topk(min(TOP_K, num_classes), dim=1)
                for row, index in enumerate(indices):
                    top[index] = tuple(
                        (int(c), float(v))
                        for c, v in zip(classes[row].tolist(), values[row].tolist(), strict=True)
                    )
            progress(len(indices) + len(bad))

    if all(t is None for t in top):
        reasons = "; ".join(f"{s.rel}: {s.reason}" for s in skipped[:3])
        raise InferenceError(f"none of the {len(files)} image files could be read ({reasons})")
    order = recorder.call_order
    called = set(order)
    return InferenceResult(
        top=tuple(top),
        skipped=tuple(skipped),
        layers=tuple(ConvInfo.of(*layers[i]) for i in order),
        modules=tuple(layers[i][1] for i in order),
        stats=tuple(accumulators[i].finish(strongest) for i in order),
        calls_per_forward=tuple(recorder.calls_per_forward[i] for i in order),
        not_called=tuple(name for i, (name, _) in enumerate(layers) if i not in called),
        num_classes=num_classes,
        logits_from=logits_from,
    )


@dataclass(frozen=True)
class LayerMaps:
    """One image's view of one layer: its channel-mean map and its strongest channels."""

    mean_map: torch.Tensor  # [H, W]
    channels: tuple[int, ...]  # channel indices, strongest (highest mean on this image) first
    maps: torch.Tensor | None  # [len(channels), H, W], or None when only the mean map was asked


@dataclass(frozen=True)
class Captured:
    """One shown image: its model input and its maps at every layer, in depth order."""

    input: torch.Tensor  # [C, H, W], normalized as the model saw it
    layers: tuple[LayerMaps, ...]


def capture_maps(
    loaded: LoadedModel,
    files: Sequence[ImageFile],
    wanted: Mapping[int, bool],
    result: InferenceResult,
    max_channels: int,
    batch_size: int,
    progress: Progress,
) -> dict[int, Captured]:
    """Record maps of every layer for the images in ``wanted`` (value: full grids or mean only)."""
    indices = sorted(wanted)
    inputs: dict[int, torch.Tensor] = {}
    per_image: dict[int, list[LayerMaps | None]] = {i: [None] * len(result.layers) for i in indices}
    current: list[int] = []

    def sink(depth: int, output: torch.Tensor) -> None:
        x = output.float()
        # Maps stay on the model's device: normalizing, colouring and tiling happen there,
        # and only finished 8-bit pixels move to the host (visuals.to_image).
        mean_maps = x.mean(dim=1)
        channel_means = x.mean(dim=(2, 3))
        order = torch.sort(channel_means, dim=1, descending=True, stable=True).indices
        top = order[:, : min(max_channels, x.shape[1])]
        full_rows = [row for row, index in enumerate(current) if wanted[index]]
        gathered = None
        if full_rows:
            rows = torch.tensor(full_rows, device=x.device)
            gathered = x[rows[:, None], top[rows]]
        for row, index in enumerate(current):
            maps = None
            if gathered is not None and row in full_rows:
                maps = gathered[full_rows.index(row)].clone()
            channels = tuple(int(c) for c in top[row].tolist())
            per_image[index][depth] = LayerMaps(mean_maps[row].clone(), channels, maps)

    layer_pairs = [
        (info.name, module) for info, module in zip(result.layers, result.modules, strict=True)
    ]
    with ConvRecorder(loaded.module, layer_pairs, sink) as recorder, torch.inference_mode():
        for batch_indices, batch, bad in _batches(files, indices, loaded.preprocess, batch_size):
            if bad or batch is None:
                raise InferenceError(f"{files[bad[0][0]].rel} could not be read again: {bad[0][1]}")
            current[:] = batch_indices
            inputs.update(zip(batch_indices, batch, strict=True))
            _forward(
                recorder,
                batch.to(loaded.device),
                [files[i].rel for i in batch_indices],
                loaded.output_key,
            )
            progress(len(batch_indices))
    return {
        i: Captured(inputs[i], tuple(m for m in maps if m is not None))
        for i, maps in per_image.items()
    }
