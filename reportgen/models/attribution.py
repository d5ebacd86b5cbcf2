"""Where class activation maps are computed: the target module call, found by tracing.

The gradient pass itself is :class:`reportgen.models.hooks.GradientRecorder`. The default
target (:func:`find_target`) is the last feature map the forward pass makes: of every
module call (containers too) whose output is ``[N, C, H, W]`` with ``H × W > 1``, the one
that finishes last, leaving out pooling layers (they only coarsen the map before it)
and calls inside a module whose own output has no spatial extent (an Inception block
that reduces 4×4 to 1×1 at a small input size). ResNet-18 gives ``layer4``, whose value
is its last block's ``relu`` after the residual add; VGG its last conv's ReLU (the max
pool after it is left out); DenseNet ``features`` (after ``norm5``); ConvNeXt ``features``
(its last block's residual sum).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ModelError
from .blocks import ACTIVATION_TYPES, NORM_TYPES
from .hooks import Call, CallTracer
from .logits import pick_logits

__all__ = ["Target", "find_head", "find_target", "view_target"]

POOL_TYPES: tuple[type[nn.Module], ...] = (
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.LPPool2d,
    nn.FractionalMaxPool2d,
)
# Modules that hand on their input in eval mode: never "where" a value was made.
PASS_THROUGH: tuple[type[nn.Module], ...] = (
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)


@dataclass(frozen=True)
class Target:
    """The module call whose output the maps are computed at, and how to say so."""

    name: str  # the module's name in the model
    module: nn.Module
    call: int  # which call of the module in one forward pass, from 1
    point: str  # where that is, in words: "after ReLU", "conv output"
    conv: str | None  # the conv layer the chain starts from, where there is one
    shape: tuple[int, int, int]  # channels, height, width of the output
    randomize: str | None  # the module whose conv weights the sanity check randomises


def _spatial(call: Call) -> bool:
    out = call.output
    return out is not None and out.dim() == 4 and int(out.shape[2]) * int(out.shape[3]) > 1


def _value(call: Call) -> tuple[int, int]:
    """Identify the value a call returned: its tensor, at the version the call left it."""
    return id(call.output), call.output_version


def _leaf(call: Call) -> bool:
    return next(call.module.children(), None) is None


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


def _same(calls: Sequence[Call], target: Call) -> list[Call]:
    """Return the calls that returned the target's value, innermost first."""
    return [c for c in calls if c.output is not None and _value(c) == _value(target)]


def _point(calls: Sequence[Call], target: Call, conv: Call | None) -> str:
    """Say where the target's value is: after the leaf module that made it, or whose output."""
    same = _same(calls, target)
    leaves = [c for c in same if _leaf(c) and not isinstance(c.module, PASS_THROUGH)]
    if leaves:
        last = leaves[-1]
        if conv is not None and last is conv:
            return "conv output"
        return f"after {type(last.module).__name__}"
    innermost = max(same, key=lambda c: c.name.count("."))
    return f"output of {type(innermost.module).__name__}"


def _randomize(calls: Sequence[Call], target: Call, conv: Call | None) -> str | None:
    """Choose what the sanity check randomises: the conv whose output (after its norm and
    activation) the map is, else the innermost module with conv weights that returned the
    map's value (a DenseNet's whole ``features``, a ConvNeXt or Inception block)."""
    if conv is not None:
        return conv.name
    for call in sorted(_same(calls, target), key=lambda c: -c.name.count(".")):
        if any(_weighted(m) for m in call.module.modules()):
            return call.name
    return None


def _weighted(module: nn.Module) -> bool:
    weight = getattr(module, "weight", None)
    return isinstance(weight, nn.Parameter) and weight.dim() >= 2


def _target(calls: Sequence[Call], call: Call, conv: Call | None) -> Target:
    assert call.output is not None
    c, h, w = (int(s) for s in call.output.shape[1:4])
    return Target(
        call.name,
        call.module,
        call.number,
        _point(calls, call, conv),
        None if conv is None else conv.name,
        (c, h, w),
        _randomize(calls, call, conv),
    )


def _last_feature_map(calls: Sequence[Call]) -> Call | None:
    """Return the call that finishes last with a feature map, as the module docstring says."""
    pooled = {_value(c) for c in calls if isinstance(c.module, POOL_TYPES)}
    flat = [
        c.name + "."
        for c in calls
        if c.name and c.output is not None and c.output.dim() == 4 and not _spatial(c)
    ]
    found = [
        c
        for c in calls
        if c.name
        and _spatial(c)
        and _value(c) not in pooled
        and not any(c.name.startswith(prefix) for prefix in flat)
    ]
    return found[-1] if found else None


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
    with torch.inference_mode(False), CallTracer(model, set(model.modules())) as tracer:
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
        return _target(calls, call, call if call.name in convs else None)
    target = _last_feature_map(calls)
    if target is None:
        raise ModelError(
            "no module of this model gives a feature map with more than one position, "
            "so no class activation map can be drawn; pass --cam none, or --cam-layer NAME"
        )
    # The sanity check randomises a conv: the last one, when the map's value is that conv's
    # output after its norm and activation. A value made by concatenation (DenseNet) or a
    # residual sum of a block without an activation after it (ConvNeXt) has no such conv.
    leaves = [c for c in calls if _leaf(c) or c.name in convs]
    conv_calls = [i for i, c in enumerate(leaves) if c.name in convs and _spatial(c)]
    conv = None
    if conv_calls:
        end = leaves[_chain_end(leaves, conv_calls[-1])]
        if _value(end) == _value(target):
            conv = leaves[conv_calls[-1]]
    return _target(calls, target, conv)


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


def view_target(
    model: nn.Module,
    convs: Mapping[str, nn.Module],
    sample: torch.Tensor,
    name: str | None = None,
) -> Target:
    """Choose where the maps of a model whose conv layers are views are computed (Keras).

    Another framework's layers carry no torch norm or activation modules to follow, so the
    target is a conv layer's own output: ``name``, or the last conv layer (in the order the
    forward pass calls them) whose output has spatial extent.
    """
    if name is not None and name not in convs:
        raise ModelError(
            f"--cam-layer {name!r}: for this model, name one of its conv layers "
            f"({', '.join(list(convs)[:5])}, ...)"
        )
    shapes: dict[str, tuple[int, ...]] = {}
    order: list[str] = []

    def keep(layer: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: object, output: object) -> None:
            if isinstance(output, torch.Tensor) and layer not in shapes:
                shapes[layer] = tuple(output.shape)
                order.append(layer)

        return hook

    handles = [m.register_forward_hook(keep(n)) for n, m in convs.items()]
    try:
        with torch.no_grad():
            model.eval()(sample)
    finally:
        for handle in handles:
            handle.remove()
    spatial = [n for n in order if len(shapes[n]) == 4 and shapes[n][1] * shapes[n][2] > 1]
    chosen = name if name is not None else (spatial[-1] if spatial else None)
    if chosen is None or chosen not in shapes:
        raise ModelError("no conv layer of this model has a spatial output for the maps")
    _, height, width, channels = shapes[chosen]
    return Target(
        chosen, convs[chosen], 1, "conv output", chosen, (channels, height, width), chosen
    )
