"""Each conv layer's receptive field, measured with a gradient on a linear copy of the model.

The method (after Araujo et al., 2019, "Computing receptive fields of convolutional neural
networks", whose gradient-based check it is): a deep copy of the model in float64, in which
every conv averages its window with equal positive weights and no bias, every norm and
activation is the identity, every max pool an average pool of the same geometry (a max
pool sends a gradient to one input of its window, an average pool to all of them), and
dropout is off. The copy is a linear map with non-negative weights, so nothing cancels: the
input positions with a non-zero gradient of one output position are exactly the positions
that can influence it. The field's size is the height and width of their bounding box,
for the output position at the centre of the map. Global pools (``AdaptiveAvgPool2d(1)``
and its max twin, as in squeeze-and-excite gates) pass no gradient in the copy: such a
gate scales a map by the whole image's content, and counting it would make every later
field the whole input. A global pool written as a function (``x.mean((2, 3))``) cannot be
told apart and does count.

Every channel of such a copy carries the same values, so each conv computes one channel
(the mean of its inputs, averaged over the window) and hands it on expanded to its
output width, a view: the copy keeps every shape the model relies on (residual sums,
concatenations, channel shuffles) at a few thousandths of the cost of the model.

The input is a square of ones, grown from 32 pixels by doubling until the field of the
centre position no longer touches the input's edge, up to ``max_size``: a field still
touching the edge there is reported as at least that size. Padding counts as part of the
field (it is inside the window), as in the usual formula.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..report.facts import ReceptiveField
from .blocks import ACTIVATION_TYPES, NORM_TYPES

__all__ = ["receptive_fields"]

_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)


class _Narrow(nn.Module):
    """A conv of the linear copy: one averaged channel, expanded to the conv's output width."""

    def __init__(self, conv: nn.Conv2d | nn.ConvTranspose2d) -> None:
        super().__init__()
        self.conv = conv
        kh, kw = conv.kernel_size
        self.kernel = torch.full((1, 1, kh, kw), 1.0 / (kh * kw), dtype=torch.float64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Average the window of the channel mean; expand to the conv's output channels."""
        conv, mean, kernel = self.conv, x.mean(dim=1, keepdim=True), self.kernel
        if isinstance(conv, nn.ConvTranspose2d):
            padding = conv.padding if isinstance(conv.padding, tuple) else (0, 0)
            y = F.conv_transpose2d(
                mean, kernel, None, conv.stride, padding, conv.output_padding, 1, conv.dilation
            )
        elif conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            y = _padded(conv, mean, kernel)
        else:
            y = F.conv2d(mean, kernel, None, conv.stride, conv.padding, conv.dilation)
        # A real tensor, not an expanded view: the model may add to it in place.
        return y.expand(-1, conv.out_channels, -1, -1).contiguous()


class _NarrowLinear(nn.Module):
    """A linear layer of the copy (a squeeze-and-excite gate, a head): the mean of its inputs."""

    def __init__(self, out_features: int) -> None:
        super().__init__()
        self.out_features = out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Average the last dimension; expand to the layer's output width."""
        shape = (*x.shape[:-1], self.out_features)
        return x.mean(dim=-1, keepdim=True).expand(shape).contiguous()


def _padded(conv: nn.Conv2d, x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Run a conv with a string or non-zero padding mode on one channel, as the conv would."""
    single = nn.Conv2d(
        1,
        1,
        conv.kernel_size,  # type: ignore[arg-type]
        conv.stride,  # type: ignore[arg-type]
        conv.padding,  # type: ignore[arg-type]
        conv.dilation,  # type: ignore[arg-type]
        bias=False,
        padding_mode=conv.padding_mode,
    ).to(x.dtype)
    with torch.no_grad():
        single.weight.copy_(kernel)
    single.weight.requires_grad_(False)
    out: torch.Tensor = single(x)
    return out


class _Context(nn.Module):
    """A global pool of the copy, passing no gradient: a squeeze-and-excite gate scales a
    map by what the whole image holds, but does not widen where a unit looks."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ones where the pool would give one value a map, cut from the gradient."""
        # Ones, not the mean: a gate multiplies the map by what follows from this, and
        # repeated products of growing means overflow.
        return torch.ones_like(x[:, :, :1, :1])


def _global_or_average(size: object) -> nn.Module:
    """Return the copy's stand-in for an adaptive pool to ``size``."""
    if size in (1, (1, 1)):
        return _Context()
    return nn.AdaptiveAvgPool2d(size)  # type: ignore[arg-type]


def _stand_in(module: nn.Module) -> nn.Module | None:
    """Return what stands for ``module`` in the linear copy, or None to keep it."""
    if isinstance(module, (*NORM_TYPES, *ACTIVATION_TYPES, *_DROPOUT)):
        return nn.Identity()
    if isinstance(module, nn.MaxPool2d):
        return nn.AvgPool2d(
            module.kernel_size,
            module.stride,
            module.padding,
            ceil_mode=module.ceil_mode,
            count_include_pad=True,
        )
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        return _global_or_average(module.output_size)
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        return _Narrow(module)
    if isinstance(module, nn.Linear):
        return _NarrowLinear(module.out_features)
    return None


def _linearise(model: nn.Module) -> nn.Module:
    """Return the positive linear float64 copy the module docstring describes."""
    # The convs' and linear layers' weights are never used: share empty stand-ins instead
    # of copying them (VGG's head alone is 120 million of them).
    memo: dict[int, object] = {}
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            for tensor in module.parameters(recurse=False):
                memo[id(tensor)] = nn.Parameter(torch.empty(0), requires_grad=False)
    # On the CPU in float64: exact supports however deep the model, on any device (MPS has
    # no float64), and the copy is narrow enough to cost little there.
    clone = copy.deepcopy(model, memo).to("cpu", torch.float64).eval()
    for name, module in list(clone.named_modules()):
        replacement = _stand_in(module)
        if replacement is not None and name:
            parent, _, child = name.rpartition(".")
            setattr(clone.get_submodule(parent) if parent else clone, child, replacement)
    # Whatever weights remain (a layer scale, a learned position bias) become ones, so
    # that no sign can cancel a path.
    with torch.no_grad():
        for parameter in clone.parameters():
            parameter.requires_grad_(False)
            if parameter.numel():
                parameter.fill_(1.0)
    return clone


def _outputs(
    model: nn.Module, modules: Mapping[str, nn.Module], x: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Run the model on ``x`` and keep each named module's first output.

    A model whose head needs a fixed input size may fail after its last conv on a larger
    input; the outputs kept before the failure are all that is needed.
    """
    kept: dict[str, torch.Tensor] = {}
    handles = [
        module.register_forward_hook(
            lambda m, i, out, name=name: (
                kept.setdefault(name, out) if isinstance(out, torch.Tensor) else None
            )
        )
        for name, module in modules.items()
    ]
    try:
        model(x)
    except Exception:  # a head that rejects the input's size comes after every conv
        pass
    finally:
        for handle in handles:
            handle.remove()
    return kept


def _extent(grad: torch.Tensor) -> tuple[int, int, bool]:
    """Return the bounding box's height and width, and whether it touches the edge."""
    support = grad.abs().sum(dim=(0, 1)) > 0  # [H, W]
    rows = torch.nonzero(support.any(dim=1)).flatten()
    cols = torch.nonzero(support.any(dim=0)).flatten()
    if len(rows) == 0:
        return 0, 0, False
    top, bottom = int(rows[0]), int(rows[-1])
    left, right = int(cols[0]), int(cols[-1])
    size_h, size_w = support.shape
    edge = top == 0 or left == 0 or bottom == size_h - 1 or right == size_w - 1
    return bottom - top + 1, right - left + 1, edge


def receptive_fields(
    model: nn.Module,
    layers: Sequence[str],
    channels: int,
    max_size: int,
    start: int = 32,
) -> dict[str, ReceptiveField]:
    """Measure the receptive field of each named conv layer's centre output position."""
    clone = _linearise(model)
    modules = {name: clone.get_submodule(name) for name in layers}
    found: dict[str, ReceptiveField] = {}
    size = start
    pending = list(layers)
    while pending:
        size = min(size, max_size)
        x = torch.ones(1, channels, size, size, dtype=torch.float64, requires_grad=True)
        with torch.enable_grad():
            outputs = _outputs(clone, {n: modules[n] for n in pending}, x)
            still: list[str] = []
            for name in pending:
                out = outputs.get(name)
                if out is None or out.dim() != 4 or not out.requires_grad:
                    # Not reached on this input (too small for the model, or after a
                    # failure), or fed by a global pool only (a gate's own convs): no field.
                    continue
                h, w = int(out.shape[2]), int(out.shape[3])
                (grad,) = torch.autograd.grad(out[0, :, h // 2, w // 2].sum(), x, retain_graph=True)
                height, width, edge = _extent(grad)
                if height == 0:
                    continue  # no input reaches the centre output: no field to state
                if edge and size < max_size:
                    still.append(name)
                else:
                    found[name] = ReceptiveField(height, width, at_least=edge)
        missing = [n for n in pending if n not in outputs and size < max_size]
        pending = [*still, *missing]
        if size >= max_size:
            break
        size *= 2
    return found
