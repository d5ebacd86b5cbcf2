"""The seam between featreport and a model: taps, a recording context, and the adapter.

Everything after model loading talks to a :class:`ModelAdapter`: it names the conv
layers and their facts, hands over each layer's filters as a plain tensor
``[out_channels, in_channels/groups, kh, kw]``, and opens a :class:`Recording` in which
``forward(batch)`` returns class logits while every requested :class:`Tap` hands its
tensor to a sink. No stage after loading sees an ``nn.Module``, so another framework
needs only another adapter.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Literal, Protocol

import torch

from ..report.facts import BlockFacts, CamLayer, ConvFacts, ReceptiveField

__all__ = [
    "FEATURES",
    "INPUT",
    "LOGITS",
    "Gradients",
    "ModelAdapter",
    "Point",
    "Recording",
    "Sink",
    "Tap",
]

Point = Literal["conv", "activation", "input", "logits", "features"]
"""Where a tensor is taken. ``conv``: a conv layer's own output, before any batch norm or
activation. ``activation``: the output of the norm and activation modules that the
forward pass applies to that conv's output (:meth:`ModelAdapter.block` says which).
``input``: the batch as the model receives it, normalized. ``logits``: the class logits
the forward pass returns. ``features``: the penultimate features, the input of the module
whose output is the logits (a model whose logits no module returns has none). Another
point is a new value here and a new hook in the
adapter; the sink and the reducers stay as they are."""


@dataclass(frozen=True, order=True)
class Tap:
    """One place in the model where a tensor is handed to a sink on every forward pass."""

    layer: str  # the conv layer's name; empty for the logits
    point: Point = "conv"


LOGITS = Tap("", "logits")
INPUT = Tap("", "input")
FEATURES = Tap("", "features")

Sink = Callable[[Tap, torch.Tensor], None]
"""Called with each tap's tensor during the forward pass. The tensor may be overwritten
by an in-place operation once the sink returns, so a sink reduces or copies it at once."""


class Recording(Protocol):
    """A model with its taps in place, for the duration of a ``with`` block."""

    def forward(self, batch: torch.Tensor, names: Sequence[str] = ()) -> torch.Tensor:
        """Run one batch (on the host) and return its logits ``[N, classes]`` on the device.

        ``names`` names the batch's images in the error raised when the forward fails.
        """
        ...

    def probe(self, batch: torch.Tensor) -> None:
        """Run one batch only as far as every tap has been handed to the sink, then stop."""
        ...

    @property
    def logits_from(self) -> str:
        """Say where in the model's output the logits were found, such as "the output tensor"."""
        ...

    @property
    def call_order(self) -> tuple[str, ...]:
        """Return the tapped layers in the order the forward pass first called them."""
        ...

    @property
    def calls_per_forward(self) -> Mapping[str, int]:
        """Return how often each tapped layer ran in one forward pass (the most seen)."""
        ...


class Gradients(Protocol):
    """A model open for the gradient pass of class activation maps (a ``with`` block)."""

    def run(
        self, batch: torch.Tensor, classes: Sequence[Sequence[int]]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Return the CAM layer's activations and, per class slot, the logits' gradients there.

        ``classes[i]`` names the classes image ``i`` needs, the same number for every image;
        slot ``k`` of the result holds each image's gradient for its ``k``-th class.
        """
        ...


class ModelAdapter(Protocol):
    """A loaded model as featreport sees it: conv layers, filters and recordings."""

    @property
    def device(self) -> torch.device:
        """Return the device the model runs on."""
        ...

    def conv_layers(self) -> tuple[ConvFacts, ...]:
        """Return the chosen conv layers (``--layers``), in definition order."""
        ...

    def filters(self, layer: str) -> torch.Tensor:
        """Return a layer's weights as ``[out_channels, in_channels/groups, kh, kw]``."""
        ...

    def block(self, layer: str) -> BlockFacts:
        """Say which norm and activation the forward pass applies to a layer's output."""
        ...

    def recording(self, taps: Collection[Tap], sink: Sink) -> AbstractContextManager[Recording]:
        """Open a recording that calls ``sink`` for every tap in ``taps`` on each forward."""
        ...

    def receptive_fields(self, max_size: int) -> Mapping[str, ReceptiveField]:
        """Measure each conv layer's receptive field, on inputs of at most ``max_size`` pixels."""
        ...

    def has_features(self) -> bool:
        """Say whether the ``features`` tap exists: a module whose output is the logits."""
        ...

    def cam_layer(self, name: str | None = None) -> CamLayer:
        """Say where class activation maps are computed: ``name`` (``--cam-layer``) or chosen."""
        ...

    def gradients(self, name: str | None = None) -> AbstractContextManager[Gradients]:
        """Open the model for the gradient pass at :meth:`cam_layer`'s layer."""
        ...

    def randomized(self, name: str | None = None) -> AbstractContextManager[None]:
        """Replace the weights of the CAM layer's conv by seeded random ones of the same
        standard deviation for a ``with`` block, and put them back exactly after it."""
        ...
