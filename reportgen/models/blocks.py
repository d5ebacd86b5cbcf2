"""Which norm and activation modules act on each conv's output, matched by tensors, not names.

One forward pass of a sample input is traced (:class:`reportgen.models.hooks.CallTracer`).
For each conv, the chain follows its output tensor: the next leaf module called with that
very tensor, unchanged since the conv made it (same object, same version counter), is
taken when it is a normalisation; the next one called with the norm's output (or the
conv's, without a norm) is taken when it is an activation. Anything else ends the chain:
an in-place residual add between a batch norm and its ReLU (ResNet's second conv of a
block) changes the tensor's version, so that ReLU belongs to the sum, not to the conv.

A module called several times in one pass (ResNet's one ReLU per block) is matched by the
number of the call, which the tap then names. An activation the forward calls as a
function (``torch.relu(x)``) cannot be seen: the chain then ends at the norm, and the
point is "after BatchNorm2d", the norm's own eval-mode output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..report.facts import BlockFacts, NormFacts
from .conv_kinds import ActivationView, NormView, role_of
from .hooks import Call, CallTracer

__all__ = ["ACTIVATION_TYPES", "NORM_TYPES", "Block", "block_facts", "find_blocks", "norm_facts"]

NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.GroupNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.LayerNorm,
    nn.LocalResponseNorm,
)
ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.ELU,
    nn.CELU,
    nn.SELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardtanh,
    nn.Softplus,
    nn.Tanh,
    nn.Sigmoid,
    nn.Hardsigmoid,
)


@dataclass(frozen=True)
class Block:
    """A conv's norm and activation modules as found, with the call that serves the conv."""

    norm: tuple[str, nn.Module, int] | None  # (name, module, call number)
    activation: tuple[str, nn.Module, int] | None

    @property
    def last(self) -> tuple[nn.Module, int] | None:
        """Return the module (and its call number) whose output is the point after the block."""
        chosen = self.activation or self.norm
        return None if chosen is None else (chosen[1], chosen[2])


def _floats(tensor: object) -> tuple[float, ...] | None:
    if not isinstance(tensor, torch.Tensor):
        return None
    return tuple(float(v) for v in tensor.detach().double().flatten().cpu().tolist())


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, NORM_TYPES) or isinstance(role_of(module), NormView)


def _is_activation(module: nn.Module) -> bool:
    return isinstance(module, ACTIVATION_TYPES) or isinstance(role_of(module), ActivationView)


def norm_facts(name: str, module: nn.Module) -> NormFacts:
    """State a norm module's running statistics and affine parameters, where it has them."""
    view = role_of(module)
    if isinstance(view, NormView):
        mean, var, weight, bias = view.stats()
        return NormFacts(
            name, view.type, view.eps, *(_floats(t) for t in (mean, var, weight, bias))
        )
    eps = getattr(module, "eps", 0.0)
    return NormFacts(
        name=name,
        type=type(module).__name__,
        eps=float(eps) if isinstance(eps, (int, float)) else 0.0,
        running_mean=_floats(getattr(module, "running_mean", None)),
        running_var=_floats(getattr(module, "running_var", None)),
        weight=_floats(getattr(module, "weight", None)),
        bias=_floats(getattr(module, "bias", None)),
    )


def _consumer(calls: Sequence[Call], after: int, tensor: torch.Tensor, version: int) -> int | None:
    """Find the first call after position ``after`` that takes ``tensor`` unchanged."""
    for position in range(after + 1, len(calls)):
        call = calls[position]
        if call.input is tensor:
            return position if call.input_version == version else None
    return None


def _follow(calls: Sequence[Call], start: int) -> Block:
    """Follow one conv call's output through a norm, then an activation, as far as they go."""
    norm: Call | None = None
    activation: Call | None = None
    position = start
    for step in ("norm", "activation"):
        call = calls[position]
        if call.output is None:
            break
        found = _consumer(calls, position, call.output, call.output_version)
        if found is None:
            break
        module = calls[found].module
        if step == "norm" and _is_norm(module):
            norm, position = calls[found], found
            continue
        if _is_activation(module):
            activation = calls[found]
        break
    return Block(
        None if norm is None else (norm.name, norm.module, norm.number),
        None if activation is None else (activation.name, activation.module, activation.number),
    )


@torch.no_grad()
def find_blocks(
    model: nn.Module, convs: Mapping[str, nn.Module], sample: torch.Tensor
) -> dict[str, Block]:
    """Trace one forward pass of ``sample`` and match each conv's norm and activation.

    Runs outside inference mode on purpose: inference tensors keep no version counter.
    """
    # Another framework's layers have children of their own: traced as named, not as leaves.
    roles = [m for m in model.modules() if role_of(m) is not None]
    with torch.inference_mode(False), CallTracer(model, [*convs.values(), *roles]) as tracer:
        model(sample)
    calls = tracer.calls
    first: dict[str, int] = {}
    for position, call in enumerate(calls):
        if call.name in convs and call.name not in first:
            first[call.name] = position
    return {name: _follow(calls, position) for name, position in first.items()}


def block_facts(block: Block) -> BlockFacts:
    """State a matched block as facts."""
    norm = norm_facts(block.norm[0], block.norm[1]) if block.norm else None
    if block.activation is None:
        return BlockFacts(norm, None, None)
    name, module, _ = block.activation
    view = role_of(module)
    kind = view.type if isinstance(view, ActivationView) else type(module).__name__
    return BlockFacts(norm, name, kind)
