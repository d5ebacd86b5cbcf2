"""Forward hooks on conv layers, held only inside a context manager.

The hook hands each conv output to a *sink* synchronously, before the next module runs.
That matters: an in-place ReLU after the conv (VGG, AlexNet) overwrites the very tensor
the hook saw, so a sink must reduce or copy the output before returning; keeping a
reference, even a detached one, would later read post-ReLU values.

A module called more than once in one forward pass (weight sharing, recurrence) is
recorded on its first call only; ``calls_per_forward`` says how often it ran.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import cast

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from .errors import ModelError
from .model import conv_layers

Sink = Callable[[int, torch.Tensor], None]


@dataclass(frozen=True)
class ConvInfo:
    """The static facts of one conv layer."""

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

    @property
    def depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.in_channels

    @property
    def rgb_filters(self) -> bool:
        """Whether each filter sees exactly the three channels of an RGB input."""
        return self.in_channels == 3 and self.groups == 1 and not self.transposed

    @classmethod
    def of(cls, name: str, layer: nn.Module) -> ConvInfo:
        module = cast("nn.Conv2d | nn.ConvTranspose2d", layer)
        padding = module.padding
        return cls(
            name=name,
            type=type(module).__name__,
            in_channels=int(module.in_channels),
            out_channels=int(module.out_channels),
            kernel_size=tuple(int(k) for k in module.kernel_size),
            stride=tuple(int(s) for s in module.stride),
            padding=padding if isinstance(padding, str) else "×".join(str(int(p)) for p in padding),
            dilation=tuple(int(d) for d in module.dilation),
            groups=int(module.groups),
            transposed=isinstance(module, nn.ConvTranspose2d),
        )


def find_conv_layers(model: nn.Module, patterns: Sequence[str] = ()) -> list[tuple[str, nn.Module]]:
    """List the conv layers (subclasses included) whose names match any of ``patterns``."""
    convs = conv_layers(model)
    if not patterns:
        return convs
    chosen = [(n, m) for n, m in convs if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    if not chosen:
        sample = ", ".join(n for n, _ in convs[:6])
        raise ModelError(
            f"--layers {' '.join(patterns)} matches none of the {len(convs)} conv layers "
            f"(they are named like {sample}); use glob patterns such as 'layer1.*'"
        )
    return chosen


class ConvRecorder:
    """Hook the given conv layers for the duration of a ``with`` block.

    Entering puts the model in eval mode and registers one forward hook per layer;
    leaving removes every hook and restores each module's own ``training`` flag, also
    when the block raises.
    """

    def __init__(
        self, model: nn.Module, layers: Sequence[tuple[str, nn.Module]], sink: Sink
    ) -> None:
        self.model = model
        self.layers = list(layers)
        self.sink = sink
        self.call_order: list[int] = []
        self.calls_per_forward = [0] * len(self.layers)
        self._calls = [0] * len(self.layers)
        self._handles: list[RemovableHandle] = []
        self._training: dict[nn.Module, bool] = {}

    def __enter__(self) -> ConvRecorder:
        self._training = {m: m.training for m in self.model.modules()}
        try:
            self.model.eval()
            for index, (_, module) in enumerate(self.layers):
                self._handles.append(module.register_forward_hook(self._hook_for(index)))
        except BaseException:
            self._restore()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._restore()

    def _restore(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for module, flag in self._training.items():
            module.training = flag

    def _hook_for(self, index: int) -> Callable[[nn.Module, object, torch.Tensor], None]:
        def hook(module: nn.Module, inputs: object, output: torch.Tensor) -> None:
            self._calls[index] += 1
            if self._calls[index] > 1:
                return
            if index not in self.call_order:
                self.call_order.append(index)
            self.sink(index, output)

        return hook

    def forward(self, batch: torch.Tensor) -> object:
        """Run one forward pass, counting calls per layer afresh."""
        self._calls = [0] * len(self.layers)
        output = self.model(batch)
        self.calls_per_forward = [
            max(a, b) for a, b in zip(self.calls_per_forward, self._calls, strict=True)
        ]
        return output
