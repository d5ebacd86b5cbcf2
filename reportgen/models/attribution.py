"""Where class activation maps are computed: the target module call, found by tracing.

The gradient pass itself is :class:`reportgen.models.hooks.GradientRecorder`. The default
target (:func:`find_target`) is the last conv call whose output has spatial
extent, followed by identity through the norm, in-place operations and the activation
that the forward pass applies to it: ResNet-18's ``layer4.1.conv2`` → ``bn2`` → ``+=
identity`` → ``relu``, whose output is ``layer4``'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ModelError
from .blocks import ACTIVATION_TYPES, NORM_TYPES
from .hooks import Call, CallTracer
from .logits import pick_logits

__all__ = ["Target", "find_head", "find_target"]


@dataclass(frozen=True)
class Target:
    """The module call whose output the maps are computed at, and how to say so."""

    name: str  # the module's name in the model
    module: nn.Module
    call: int  # which call of the module in one forward pass, from 1
    point: str  # where that is, in words: "after ReLU", "conv output"
    conv: str | None  # the conv layer the chain starts from, where there is one
    shape: tuple[int, int, int]  # channels, height, width of the output


def _spatial(call: Call) -> bool:
    out = call.output
    return out is not None and out.dim() == 4 and int(out.shape[2]) * int(out.shape[3]) > 1


def _chain_end(calls: Sequence[Call], start: int) -> int:
    """Follow a conv call's output by identity through norms and activations."""
    position = start
    tensor = calls[start].output
    for later in range(start + 1, len(calls)):
        call = calls[later]
        if tensor is None or call.input is not tensor:
            continue
        if not isinstance(call.module, (*NORM_TYPES, *ACTIVATION_TYPES)):
            break
        position, tensor = later, call.output
        if isinstance(call.module, ACTIVATION_TYPES):
            break
    return position


def _point(call: Call, conv: Call) -> str:
    if call is conv:
        return "conv output"
    return f"after {type(call.module).__name__}"


def _target(call: Call, conv: Call | None) -> Target:
    assert call.output is not None
    c, h, w = (int(s) for s in call.output.shape[1:4])
    point = _point(call, conv) if conv is not None else f"output of {type(call.module).__name__}"
    return Target(
        call.name, call.module, call.number, point, None if conv is None else conv.name, (c, h, w)
    )


@torch.no_grad()
def find_target(
    model: nn.Module,
    convs: Mapping[str, nn.Module],
    sample: torch.Tensor,
    name: str | None = None,
) -> Target:
    """Trace one forward pass and choose the module call the maps are computed at.

    ``name`` (``--cam-layer``) names any module; its first call with a spatial output is
    taken, at its own output. Without it, the last conv call with spatial extent is
    followed to the end of its norm and activation.
    """
    modules = dict(model.named_modules())
    if name is not None and name not in modules:
        near = [n for n in modules if n and (name in n or n in name)][:5]
        hint = f" (did you mean {', '.join(near)}?)" if near else ""
        raise ModelError(
            f"--cam-layer {name!r} is not a module of this model{hint}; name one whose output "
            "is a feature map [N, C, H, W], such as the last conv block"
        )
    also = set(convs.values()) | ({modules[name]} if name else set())
    with torch.inference_mode(False), CallTracer(model, also) as tracer:
        model(sample)
    calls = tracer.calls
    if name is not None:
        found = [c for c in calls if c.name == name]
        if not found:
            raise ModelError(f"--cam-layer {name!r} is not called by the model's forward pass")
        spatial = [c for c in found if _spatial(c)]
        if not spatial:
            out = found[0].output
            shape = "not a tensor" if out is None else f"of shape {tuple(out.shape)}"
            raise ModelError(
                f"--cam-layer {name!r} gives an output {shape}; a class activation map needs "
                "a feature map [N, C, H, W] with H × W > 1"
            )
        call = spatial[0]
        conv = call if call.name in convs else None
        return _target(call, conv)
    conv_calls = [(i, c) for i, c in enumerate(calls) if c.name in convs and _spatial(c)]
    if not conv_calls:
        raise ModelError(
            "no conv layer of this model gives a feature map with more than one position, "
            "so no class activation map can be drawn; pass --cam none, or --cam-layer NAME"
        )
    start, conv = conv_calls[-1]
    end = calls[_chain_end(calls, start)]
    return _target(end if _spatial(end) else conv, conv)


@torch.no_grad()
def find_head(
    model: nn.Module, sample: torch.Tensor, output_key: str | None
) -> tuple[nn.Module, int] | None:
    """Find the module call whose output is the logits: its input is the penultimate features.

    None when no module returns the logits themselves (they are computed by a function,
    or taken from a view), or when the forward pass fails on the sample.
    """
    with torch.inference_mode(False), CallTracer(model) as tracer:
        try:
            output = model(sample)
            logits, _ = pick_logits(output, output_key)
        except Exception:  # the first real batch reports the failure, with its images
            return None
        for call in reversed(tracer.calls):
            if call.output is logits and call.input is not None and call.input.dim() >= 2:
                return call.module, call.number
    return None
