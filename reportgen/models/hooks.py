"""Forward hooks, held only inside a context manager: the one place hooks exist.

The hook hands each tapped tensor to a *sink* synchronously, before the next module runs.
That matters: an in-place ReLU after a conv (VGG, AlexNet) overwrites the very tensor the
hook saw, so a sink must reduce or copy it before returning; keeping a reference, even a
detached one, would later read post-ReLU values.

A module called more than once in one forward pass (weight sharing, recurrence) is
recorded on its first call only; ``calls_per_forward`` says how often it ran.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from .adapter import Sink, Tap

__all__ = ["Hooked", "TapRecorder"]


@dataclass(frozen=True)
class Hooked:
    """A tap, the module whose forward provides it, and which tensor of that forward it is."""

    tap: Tap
    module: nn.Module
    take: Literal["output", "input"] = "output"


class TapRecorder:
    """Hook the given modules for the duration of a ``with`` block.

    Entering puts the model in eval mode and registers one forward hook per tap; leaving
    removes every hook and restores each module's own ``training`` flag and each
    parameter's ``requires_grad`` and ``.grad``, also when the block raises.
    """

    def __init__(self, model: nn.Module, hooked: Sequence[Hooked], sink: Sink) -> None:
        self.model = model
        self.hooked = list(hooked)
        self.sink = sink
        self.call_order: list[Tap] = []
        self.calls_per_forward: dict[Tap, int] = {h.tap: 0 for h in self.hooked}
        self._calls: dict[Tap, int] = dict.fromkeys(self.calls_per_forward, 0)
        self._handles: list[RemovableHandle] = []
        self._training: dict[nn.Module, bool] = {}
        self._params: list[tuple[nn.Parameter, bool, torch.Tensor | None]] = []

    def __enter__(self) -> TapRecorder:
        self._training = {m: m.training for m in self.model.modules()}
        self._params = [(p, p.requires_grad, p.grad) for p in self.model.parameters()]
        try:
            self.model.eval()
            for hooked in self.hooked:
                self._handles.append(hooked.module.register_forward_hook(self._hook_for(hooked)))
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
        for param, requires_grad, grad in self._params:
            param.requires_grad_(requires_grad)
            param.grad = grad

    def _hook_for(self, hooked: Hooked) -> Callable[[nn.Module, tuple[object, ...], object], None]:
        tap = hooked.tap

        def hook(module: nn.Module, inputs: tuple[object, ...], output: object) -> None:
            self._calls[tap] += 1
            if self._calls[tap] > 1:
                return
            if tap not in self.call_order:
                self.call_order.append(tap)
            tensor = output if hooked.take == "output" else inputs[0]
            if isinstance(tensor, torch.Tensor):
                self.sink(tap, tensor)

        return hook

    def forward(self, batch: torch.Tensor) -> object:
        """Run one forward pass, counting calls per tap afresh."""
        self._calls = dict.fromkeys(self._calls, 0)
        output = self.model(batch)
        for tap, calls in self._calls.items():
            self.calls_per_forward[tap] = max(self.calls_per_forward[tap], calls)
        return output
