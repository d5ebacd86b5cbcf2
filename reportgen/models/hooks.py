"""Forward hooks, held only inside a context manager: the one place hooks exist.

The hook hands each tapped tensor to a *sink* synchronously, before the next module runs.
That matters: an in-place ReLU after a conv (VGG, AlexNet) overwrites the very tensor the
hook saw, so a sink must reduce or copy it before returning; keeping a reference, even a
detached one, would later read post-ReLU values.

A module called more than once in one forward pass (weight sharing, recurrence) is
recorded on one call only, the first unless the tap names another (a shared activation
module serves several conv blocks); ``calls_per_forward`` says how often it ran.

:class:`CallTracer` records every call of every leaf module on one forward pass, with the
tensors passed and their version counters, so that the adapter can tell which norm and
activation modules act on a conv's output (:mod:`reportgen.models.blocks`).

:class:`GradientRecorder` keeps one module call's output during a forward pass with
gradients, for class activation maps (:mod:`reportgen.gather.cams`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, TypeVar

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from ..errors import ModelError
from .adapter import Sink, Tap
from .logits import pick_logits

__all__ = ["Call", "CallTracer", "GradientRecorder", "Hooked", "TapRecorder"]


@dataclass(frozen=True)
class Hooked:
    """A tap, the module whose forward provides it, which call, and which tensor of that call."""

    tap: Tap
    module: nn.Module
    take: Literal["output", "input"] = "output"
    call: int = 1  # which call of the module in one forward pass, from 1
    channels_last: bool = False  # the tensor is [N, H, W, C]: hand the sink an NCHW view


_Param = tuple[nn.Parameter, bool, "torch.Tensor | None"]


class _Enough(Exception):
    """Raised inside a hook to end a forward pass once every tap has been seen."""


def _version(tensor: torch.Tensor) -> int:
    # The version counter is the only record of an in-place change (``out += identity``
    # between a batch norm and its ReLU); torch exposes it as this attribute alone.
    return int(tensor._version)  # noqa: SLF001


def _restoring(model: nn.Module) -> tuple[dict[nn.Module, bool], list[_Param]]:
    """Note every module's training flag and every parameter's gradient settings."""
    training = {m: m.training for m in model.modules()}
    params = [(p, p.requires_grad, p.grad) for p in model.parameters()]
    return training, params


def _restore_flags(training: dict[nn.Module, bool], params: list[_Param]) -> None:
    for module, flag in training.items():
        module.training = flag
    for param, requires_grad, grad in params:
        param.requires_grad_(requires_grad)
        param.grad = grad


class _Hooks:
    """Hooks on a model for the duration of a ``with`` block, and nothing after it.

    Entering notes every module's ``training`` flag and every parameter's
    ``requires_grad`` and ``.grad``, puts the model in eval mode and registers the hooks
    :meth:`_register` returns; leaving removes them and restores what was noted, also
    when the block (or registering) raises.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self._handles: list[RemovableHandle] = []
        self._training: dict[nn.Module, bool] = {}
        self._params: list[_Param] = []

    def _register(self) -> list[RemovableHandle]:
        raise NotImplementedError

    def __enter__(self: _H) -> _H:
        self._training, self._params = _restoring(self.model)
        try:
            self.model.eval()
            self._handles = self._register()
        except BaseException:
            self._close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close()

    def _close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        _restore_flags(self._training, self._params)


_H = TypeVar("_H", bound=_Hooks)


class TapRecorder(_Hooks):
    """Hook the given modules for the duration of a ``with`` block.

    Entering puts the model in eval mode and registers one forward hook per tap; leaving
    removes every hook and restores each module's own ``training`` flag and each
    parameter's ``requires_grad`` and ``.grad``, also when the block raises.
    """

    def __init__(self, model: nn.Module, hooked: Sequence[Hooked], sink: Sink) -> None:
        super().__init__(model)
        self.hooked = list(hooked)
        self.sink = sink
        self.call_order: list[Tap] = []
        self.calls_per_forward: dict[Tap, int] = {h.tap: 0 for h in self.hooked}
        self._calls: dict[Tap, int] = dict.fromkeys(self.calls_per_forward, 0)
        self._until_all_seen = False

    def _register(self) -> list[RemovableHandle]:
        return [h.module.register_forward_hook(self._hook_for(h)) for h in self.hooked]

    def _hook_for(self, hooked: Hooked) -> Callable[[nn.Module, tuple[object, ...], object], None]:
        tap = hooked.tap

        def hook(module: nn.Module, inputs: tuple[object, ...], output: object) -> None:
            self._calls[tap] += 1
            if self._calls[tap] != hooked.call:
                return
            if tap not in self.call_order:
                self.call_order.append(tap)
            tensor = output if hooked.take == "output" else inputs[0]
            if isinstance(tensor, torch.Tensor):
                if hooked.channels_last and tensor.dim() == 4:
                    tensor = tensor.permute(0, 3, 1, 2)
                self.sink(tap, tensor)
            if self._until_all_seen and all(self._calls[h.tap] >= h.call for h in self.hooked):
                raise _Enough

        return hook

    def forward(self, batch: torch.Tensor, until_all_seen: bool = False) -> object:
        """Run one forward pass, counting calls per tap afresh.

        With ``until_all_seen``, the pass ends as soon as every tap has been handed to the
        sink, and None is returned instead of the model's output.
        """
        self._calls = dict.fromkeys(self._calls, 0)
        self._until_all_seen = until_all_seen
        try:
            output = self.model(batch)
        except _Enough:
            return None
        finally:
            self._until_all_seen = False
        for tap, calls in self._calls.items():
            self.calls_per_forward[tap] = max(self.calls_per_forward[tap], calls)
        return output


@dataclass(frozen=True)
class Call:
    """One call of a leaf module on a traced forward pass."""

    name: str
    module: nn.Module
    number: int  # which call of this module, from 1
    input: torch.Tensor | None  # the first positional argument, when a tensor
    input_version: int  # its version counter just before the call
    output: torch.Tensor | None
    output_version: int  # the output's version counter just after the call


class CallTracer(_Hooks):
    """Record every call of every leaf module (and of ``also``) during a ``with`` block.

    Entering puts the model in eval mode; leaving removes every hook and restores the
    training flags and gradient settings, also when the block raises. The recorded
    tensors are kept, so no two of them can share an identity while the tracer lives.
    ``also`` names modules to record though they have children: a conv subclass that pads
    with a child module of its own is still the conv.
    """

    def __init__(self, model: nn.Module, also: Collection[nn.Module] = ()) -> None:
        super().__init__(model)
        self.also = set(also)
        self.calls: list[Call] = []
        self._pending: dict[int, list[tuple[torch.Tensor | None, int]]] = {}
        self._counts: dict[int, int] = {}

    def _register(self) -> list[RemovableHandle]:
        handles = []
        for name, module in self.model.named_modules():
            if module in self.also or next(module.children(), None) is None:
                handles.append(module.register_forward_pre_hook(self._before))
                handles.append(module.register_forward_hook(self._after(name)))
        return handles

    def _before(self, module: nn.Module, inputs: tuple[object, ...]) -> None:
        first = inputs[0] if inputs else None
        tensor = first if isinstance(first, torch.Tensor) else None
        version = _version(tensor) if tensor is not None else -1
        self._pending.setdefault(id(module), []).append((tensor, version))

    def _after(self, name: str) -> Callable[[nn.Module, tuple[object, ...], object], None]:
        def hook(module: nn.Module, inputs: tuple[object, ...], output: object) -> None:
            tensor, version = self._pending[id(module)].pop()
            number = self._counts.get(id(module), 0) + 1
            self._counts[id(module)] = number
            out = output if isinstance(output, torch.Tensor) else None
            out_version = _version(out) if out is not None else -1
            self.calls.append(Call(name, module, number, tensor, version, out, out_version))

        return hook


class GradientRecorder(_Hooks):
    """Keep one module call's output and take class-score gradients at it, in a ``with`` block.

    The activations and the gradients are taken at one and the same value: the hook keeps
    the module's output and hands the rest of the network a clone, so an in-place
    operation after it (VGG's ``ReLU(inplace=True)`` after a conv, ResNet's ReLU after the
    residual add) changes the clone, never the kept tensor, and ``torch.autograd.grad``
    differentiates with respect to the kept tensor exactly. No tensor hook is registered
    and no parameter's ``.grad`` is written: ``autograd.grad`` returns gradients without
    accumulating them. The input is made to require gradients, so the graph exists even
    when every parameter is frozen. Leaving the block removes the hook and restores every
    module's training flag and every parameter's ``requires_grad`` and ``.grad``, also
    when the block raises.
    """

    def __init__(
        self,
        model: nn.Module,
        module: nn.Module,
        call: int,
        output_key: str | None,
        channels_last: bool = False,
    ) -> None:
        super().__init__(model)
        self.module = module
        self.call = call
        self.output_key = output_key
        self.channels_last = channels_last  # the output is [N, H, W, C]: return NCHW views
        self._kept: torch.Tensor | None = None
        self._calls = 0

    def _register(self) -> list[RemovableHandle]:
        return [self.module.register_forward_hook(self._hook)]

    def _close(self) -> None:
        self._kept = None
        super()._close()

    def _hook(self, module: nn.Module, inputs: tuple[object, ...], output: object) -> object:
        self._calls += 1
        if self._calls != self.call or not isinstance(output, torch.Tensor):
            return None
        self._kept = output
        return output.clone()  # later in-place operations change the clone only

    def _taken(self) -> torch.Tensor | None:
        return self._kept

    def run(
        self, batch: torch.Tensor, classes: Sequence[Sequence[int]]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Return the module's activations ``[N, C, H, W]`` and, per class slot, gradients.

        ``classes[i]`` lists the classes whose score gradients image ``i`` needs; every
        image asks for the same number of them. Slot ``k`` holds, for each image, the
        gradient of the logit of its ``k``-th class, detached.
        """
        slots = {len(c) for c in classes}
        if len(slots) != 1:
            raise ValueError("every image must ask for the same number of classes")
        (count,) = slots
        self._calls, self._kept = 0, None
        with torch.inference_mode(False), torch.enable_grad():
            pixels = batch.detach().clone().requires_grad_(True)
            logits, _ = pick_logits(self.model(pixels), self.output_key)
            kept = self._taken()
            if kept is None:
                raise ModelError(
                    f"the class activation map's layer was not called {self.call} time(s) in "
                    "a forward pass; name another with --cam-layer"
                )
            rows = torch.arange(len(classes), device=logits.device)
            gradients = []
            for slot in range(count):
                wanted = torch.tensor([c[slot] for c in classes], device=logits.device)
                score = logits[rows, wanted].sum()  # images are independent in eval mode
                (gradient,) = torch.autograd.grad(
                    score, kept, retain_graph=slot < count - 1, allow_unused=True
                )
                if gradient is None:
                    raise ModelError(
                        "the logits do not depend on the class activation map's layer (does "
                        "the model have another head, or do the logits come from elsewhere?); "
                        "name a layer on the way to the logits with --cam-layer, or pass "
                        "--cam none"
                    )
                gradients.append(gradient.detach())
        self._kept = None
        if self.channels_last:
            nchw = tuple(g.permute(0, 3, 1, 2) for g in gradients)
            return kept.detach().permute(0, 3, 1, 2), nchw
        return kept.detach(), tuple(gradients)
