"""The adapter for PyTorch modules: conv layers found by type, taps made of forward hooks."""

from __future__ import annotations

import fnmatch
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager

import torch
from torch import nn

from ..errors import InferenceError, ModelError, short_error
from ..report.facts import BlockFacts, CamLayer, ConvFacts, ReceptiveField
from .adapter import FEATURES, INPUT, LOGITS, Sink, Tap
from .attribution import Target, find_head, find_target, view_target
from .blocks import Block, block_facts, find_blocks
from .conv_kinds import (
    CONV_TYPES,
    applied,
    channels_last,
    conv_facts,
    is_conv,
    stored_filters,
    view_of,
)
from .hooks import GradientRecorder, Hooked, TapRecorder
from .logits import pick_logits
from .receptive import receptive_fields

__all__ = [
    "CONV_TYPES",
    "TorchAdapter",
    "conv_facts",
    "conv_modules",
    "input_channels",
    "output_filters",
]


def conv_modules(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """List the conv layers (see :func:`reportgen.models.conv_kinds.is_conv`) by name, in
    definition order."""
    convs = [(name, m) for name, m in module.named_modules() if is_conv(m)]
    if not convs:
        raise ModelError(
            "the model has no nn.Conv2d or nn.ConvTranspose2d layer; featreport visualizes CNNs"
        )
    return convs


def input_channels(module: nn.Module) -> int:
    """Say how many channels the first conv layer takes (1 or 3)."""
    name, first = conv_modules(module)[0]
    channels = conv_facts(name, first).in_channels
    if channels not in (1, 3):
        raise ModelError(
            f"the first conv layer takes {channels} input channels; featreport feeds RGB (3) "
            "or grayscale (1) images"
        )
    return channels


def output_filters(module: nn.Module) -> torch.Tensor:
    """Return the weights a conv applies as ``[out_channels, in_channels/groups, kh, kw]``."""
    probe = applied(module)
    return probe.weight if probe.weight is not None else stored_filters(module)


def _choose(convs: list[tuple[str, nn.Module]], patterns: Sequence[str]) -> dict[str, nn.Module]:
    if not patterns:
        return dict(convs)
    chosen = {n: m for n, m in convs if any(fnmatch.fnmatchcase(n, p) for p in patterns)}
    if not chosen:
        sample = ", ".join(n for n, _ in convs[:6])
        raise ModelError(
            f"--layers {' '.join(patterns)} matches none of the {len(convs)} conv layers "
            f"(they are named like {sample}); use glob patterns such as 'layer1.*'"
        )
    return chosen


class _TorchRecording:
    """A module with forward hooks in place (see :class:`reportgen.models.adapter.Recording`)."""

    def __init__(
        self,
        recorder: TapRecorder,
        device: torch.device,
        output_key: str | None,
        sink: Sink,
        taps: Collection[Tap],
        precision: torch.dtype | None = None,
    ) -> None:
        self._recorder = recorder
        self._device = device
        self._precision = precision
        self._output_key = output_key
        self._sink = sink
        self._input = INPUT in taps
        self._logits = LOGITS in taps
        self._logits_from = ""

    def _run(self, batch: torch.Tensor, names: Sequence[str], until_all_seen: bool) -> object:
        on_device = batch.to(self._device, non_blocking=True)  # async from pinned memory
        if self._input:
            self._sink(INPUT, on_device)
        try:
            if self._precision is None:
                return self._recorder.forward(on_device, until_all_seen)
            with torch.autocast(self._device.type, dtype=self._precision):
                return self._recorder.forward(on_device, until_all_seen)
        except Exception as exc:
            shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            raise InferenceError(
                f"the model's forward pass failed ({short_error(exc)[:300]}) on the batch of "
                f"{len(names)} image(s) {shown}, input shape {tuple(batch.shape)}; check "
                "--input-size and that the model takes one image tensor"
            ) from None

    def forward(self, batch: torch.Tensor, names: Sequence[str] = ()) -> torch.Tensor:
        """Run one batch and return its logits; the input and logits taps, if asked for, see them."""
        output = self._run(batch, names, until_all_seen=False)
        logits, self._logits_from = pick_logits(output, self._output_key)
        if self._logits:
            self._sink(LOGITS, logits)
        return logits

    def probe(self, batch: torch.Tensor) -> None:
        """Run one batch only as far as every hooked tap has been handed to the sink."""
        self._run(batch, (), until_all_seen=True)

    @property
    def logits_from(self) -> str:
        """Say where in the model's output the logits were found."""
        return self._logits_from

    @property
    def call_order(self) -> tuple[str, ...]:
        """Return the tapped layers in the order the forward pass first called them."""
        order = dict.fromkeys(tap.layer for tap in self._recorder.call_order if tap.layer)
        return tuple(order)

    @property
    def calls_per_forward(self) -> Mapping[str, int]:
        """Return how often each tapped layer ran in one forward pass."""
        return {
            tap.layer: n
            for tap, n in self._recorder.calls_per_forward.items()
            if tap.point == "conv"
        }


@contextmanager
def _randomized(weights: Sequence[nn.Parameter], seed: int = 0) -> Iterator[None]:
    """Replace each of ``weights`` by seeded normal values of its own standard deviation,
    then restore them exactly."""
    saved = [w.detach().clone() for w in weights]
    generator = torch.Generator().manual_seed(seed)
    try:
        with torch.no_grad():
            for weight, before in zip(weights, saved, strict=True):
                noise = torch.randn(weight.shape, generator=generator, dtype=torch.float32)
                weight.copy_((noise * before.float().std()).to(weight.device, weight.dtype))
        yield
    finally:
        with torch.no_grad():
            for weight, before in zip(weights, saved, strict=True):
                weight.copy_(before)


class TorchAdapter:
    """A PyTorch module behind the :class:`reportgen.models.adapter.ModelAdapter` seam."""

    def __init__(
        self,
        module: nn.Module,
        device: torch.device,
        layers: Sequence[str] = (),
        output_key: str | None = None,
        input_shape: tuple[int, int, int] | None = None,
        precision: torch.dtype | None = None,
    ) -> None:
        self._module = module
        self._device = device
        self._precision = precision  # --amp: the autocast dtype of forward passes, or None
        self._output_key = output_key
        self._layers = _choose(conv_modules(module), layers)
        self._input_shape = input_shape  # (C, H, W): what the block tracing feeds the model
        self._blocks: dict[str, Block] | None = None
        self._targets: dict[str | None, Target] = {}
        self._head: tuple[nn.Module, int] | None = None
        self._head_traced = False
        self._facts: tuple[ConvFacts, ...] | None = None

    @property
    def device(self) -> torch.device:
        """Return the device the model runs on."""
        return self._device

    def conv_layers(self) -> tuple[ConvFacts, ...]:
        """Return the chosen conv layers, in definition order."""
        if self._facts is None:
            self._facts = tuple(conv_facts(name, m) for name, m in self._layers.items())
        return self._facts

    def filters(self, layer: str) -> torch.Tensor:
        """Return the weights a layer applies as ``[out_channels, in_channels/groups, kh, kw]``."""
        return output_filters(self._layers[layer])

    def receptive_fields(self, max_size: int) -> dict[str, ReceptiveField]:
        """Measure each conv layer's receptive field, on inputs of at most ``max_size`` pixels."""
        channels = self._input_shape[0] if self._input_shape is not None else 3
        if self._views():  # another framework's layers: traced differently, not measured
            return {}
        return receptive_fields(self._module, list(self._layers), channels, max_size)

    def _sample(self) -> torch.Tensor:
        """Return the seeded random input that traces of the forward pass run."""
        if self._input_shape is None:
            raise RuntimeError("this TorchAdapter was made without an input_shape to trace")
        generator = torch.Generator().manual_seed(0)
        return torch.randn(1, *self._input_shape, generator=generator).to(self._device)

    def _traced(self) -> dict[str, Block]:
        """Trace one forward pass, once, to match each conv's norm and activation modules."""
        if self._blocks is None:
            sample = self._sample()
            try:
                self._blocks = find_blocks(self._module, self._layers, sample)
            except Exception:
                # No blocks then: the first real batch fails the same way, and its error
                # names the images, which says more than a failure on a random sample.
                self._blocks = {}
        return self._blocks

    def block(self, layer: str) -> BlockFacts:
        """Say which norm and activation the forward pass applies to a layer's output."""
        found = self._traced().get(layer)
        return BlockFacts(None, None, None) if found is None else block_facts(found)

    def _hooked(self, tap: Tap) -> Hooked:
        head = self._find_head() if tap == FEATURES else None
        if head is not None:
            return Hooked(tap, head[0], take="input", call=head[1])
        if tap.point == "conv" and tap.layer in self._layers:
            module = self._layers[tap.layer]
            view = view_of(module)
            return Hooked(tap, module, channels_last=view is not None and view.channels_last)
        if tap.point == "activation" and tap.layer in self._layers:
            found = self._traced().get(tap.layer)
            last = None if found is None else found.last
            if last is not None:
                module, call = last
                return Hooked(tap, module, call=call, channels_last=channels_last(module))
        raise ModelError(f"no tap {tap.point!r} at layer {tap.layer!r} in this model")

    def _views(self) -> bool:
        """Say whether the conv layers are another framework's, described by views."""
        return any(view_of(m) is not None for m in self._layers.values())

    def _target(self, name: str | None) -> Target:
        if name not in self._targets:
            find = view_target if self._views() else find_target
            self._targets[name] = find(self._module, self._layers, self._sample(), name)
        return self._targets[name]

    def _find_head(self) -> tuple[nn.Module, int] | None:
        if not self._head_traced:
            self._head = find_head(self._module, self._sample(), self._output_key)
            self._head_traced = True
        return self._head

    def has_features(self) -> bool:
        """Say whether the ``features`` tap exists: a module whose output is the logits."""
        return self._find_head() is not None

    def cam_layer(self, name: str | None = None) -> CamLayer:
        """Say where class activation maps are computed: ``name`` (``--cam-layer``) or chosen."""
        target = self._target(name)
        return CamLayer(target.name, target.point, target.conv, *target.shape, target.randomize)

    @contextmanager
    def gradients(self, name: str | None = None) -> Iterator[GradientRecorder]:
        """Open the model for the gradient pass at :meth:`cam_layer`'s layer."""
        target = self._target(name)
        view = view_of(target.module)
        channels_last = view is not None and view.channels_last
        with GradientRecorder(
            self._module, target.module, target.call, self._output_key, channels_last
        ) as recorder:
            yield recorder

    def randomized(self, name: str | None = None) -> AbstractContextManager[None]:
        """Replace the conv weights of :meth:`cam_layer`'s ``randomized`` module by seeded
        random ones of the same standard deviation for a ``with`` block, then put them back."""
        target = self._target(name)
        module = dict(self._module.named_modules()).get(target.randomize or "")
        weights = [
            m.weight
            for m in (module.modules() if module is not None else ())
            if isinstance(getattr(m, "weight", None), nn.Parameter) and m.weight.dim() >= 2
        ]
        if module is not None and view_of(module) is not None:
            # Another framework's layer keeps its kernels as parameters of its own.
            weights = [p for p in module.parameters() if p.dim() >= 2]
        if not weights:
            raise ModelError(f"the CAM layer {target.name} has no conv weights to randomise")
        return _randomized(weights)

    @contextmanager
    def recording(self, taps: Collection[Tap], sink: Sink) -> Iterator[_TorchRecording]:
        """Open a recording: the taps' modules hooked until the block ends, then restored."""
        hooked = [self._hooked(tap) for tap in sorted(taps) if tap not in (LOGITS, INPUT)]
        with TapRecorder(self._module, hooked, sink) as recorder:
            yield _TorchRecording(
                recorder, self._device, self._output_key, sink, taps, self._precision
            )
