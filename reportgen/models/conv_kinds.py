"""What counts as a conv layer, what it applies, and what the report must say about it.

A module is a conv layer when it is an ``nn.Conv2d`` or ``nn.ConvTranspose2d``, or when it
declares a 2-D conv's settings (``in_channels``, ``out_channels``, a 2-D ``kernel_size``,
``stride``, ``padding``, ``groups``) and holds a weight with room for exactly a whole
number of such kernels, and no conv inside it: timm's ``CondConv2d`` (one kernel per
expert, mixed per image) is found that way, though it is not an ``nn.Conv2d``.

Some layers do not apply the weight they store, or pad each input themselves. A probe
call on a small input, with ``conv2d`` and ``pad`` watched, finds them:

* the weight handed to ``conv2d`` differs from ``.weight`` (timm's ``StdConv2d`` and
  ``ScaledStdConv2d`` standardise it on every call): the filters shown are the applied ones;
* the module pads its input itself before a conv with no padding (timm's ``Conv2dSame``,
  TensorFlow's "same"): the padding depends on the input's size.

Another framework's layers (Keras on the torch backend) are described by the model source
that loads them: a :class:`ConvView` makes a layer a conv (its settings, its kernels in
torch's layout, whether its output is channels-last), and a :class:`NormView` or
:class:`ActivationView` lets the block matching of :mod:`reportgen.models.blocks` follow a
conv's output through them.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from ..report.facts import ConvFacts

__all__ = [
    "CONV_TYPES",
    "ActivationView",
    "Applied",
    "ConvView",
    "NormView",
    "applied",
    "channels_last",
    "conv_facts",
    "is_conv",
    "register_role",
    "register_view",
    "role_of",
    "stored_filters",
    "view_of",
]

CONV_TYPES: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.ConvTranspose2d)
_SETTINGS = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "groups")


@dataclass(frozen=True)
class ConvView:
    """A conv layer of another framework (a Keras layer on the torch backend), in torch's terms."""

    type: str
    in_channels: int
    out_channels: int
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: str
    dilation: tuple[int, int]
    groups: int
    transposed: bool
    filters: Callable[[], torch.Tensor]  # [out, in/groups, kh, kw]
    channels_last: bool  # its output is [N, H, W, C]: taps are handed an NCHW view
    note: str | None = None


_VIEWS: weakref.WeakKeyDictionary[nn.Module, ConvView] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class NormView:
    """A normalisation layer of another framework, in torch's terms (for block matching)."""

    type: str
    eps: float
    # Per channel: running mean, running variance, scale and shift (None where it has none).
    stats: Callable[[], tuple[torch.Tensor | None, ...]]
    channels_last: bool


@dataclass(frozen=True)
class ActivationView:
    """An activation layer of another framework, named as torch names its own (``ReLU``)."""

    type: str
    channels_last: bool


_ROLES: weakref.WeakKeyDictionary[nn.Module, NormView | ActivationView] = (
    weakref.WeakKeyDictionary()
)


def register_role(module: nn.Module, view: NormView | ActivationView) -> None:
    """Make ``module`` a norm or activation that blocks can be matched with."""
    _ROLES[module] = view


def role_of(module: nn.Module) -> NormView | ActivationView | None:
    """Return the norm or activation view registered for ``module``, if any."""
    return _ROLES.get(module)


def channels_last(module: nn.Module) -> bool:
    """Say whether a registered layer's output is ``[N, H, W, C]``."""
    view = _VIEWS.get(module) or _ROLES.get(module)
    return view is not None and view.channels_last


def register_view(module: nn.Module, view: ConvView) -> None:
    """Make ``module`` a conv layer described by ``view`` (a model source calls this)."""
    _VIEWS[module] = view


def view_of(module: nn.Module) -> ConvView | None:
    """Return the view a model source registered for ``module``, if any."""
    return _VIEWS.get(module)


def _kernel_numel(module: nn.Module) -> int:
    kernel = cast("tuple[int, int]", module.kernel_size)
    return (
        int(cast("int", module.out_channels))
        * (int(cast("int", module.in_channels)) // int(cast("int", module.groups)))
        * int(kernel[0])
        * int(kernel[1])
    )


def is_conv(module: nn.Module) -> bool:
    """Say whether ``module`` is a 2-D conv layer, by type or by what it declares and holds."""
    if isinstance(module, CONV_TYPES) or module in _VIEWS:
        return True
    weight = getattr(module, "weight", None)
    kernel = getattr(module, "kernel_size", None)
    declared = (
        isinstance(weight, nn.Parameter)
        and weight.dim() >= 2
        and all(hasattr(module, a) for a in _SETTINGS)
        and isinstance(kernel, (tuple, list))
        and len(kernel) == 2
    )
    if not declared or any(isinstance(c, CONV_TYPES) for c in module.children()):
        return False
    assert isinstance(weight, nn.Parameter)
    try:
        return weight.numel() % _kernel_numel(module) == 0
    except (TypeError, ValueError, ZeroDivisionError):
        return False


def stored_filters(module: nn.Module) -> torch.Tensor:
    """Return the stored weights as ``[out_channels, in_channels/groups, kh, kw]``.

    A transposed conv's ``[in, out/groups, kh, kw]`` is regrouped; a weight holding several
    kernels per filter (experts) gives their mean.
    """
    view = _VIEWS.get(module)
    if view is not None:
        return view.filters().detach()
    weight = cast("torch.Tensor", module.weight).detach()
    if isinstance(module, nn.ConvTranspose2d):
        groups = module.groups
        cin, cout_g, *kernel = weight.shape
        w = weight.reshape(groups, cin // groups, cout_g, *kernel).transpose(1, 2)
        return w.reshape(groups * cout_g, cin // groups, *kernel)
    out = int(cast("int", module.out_channels))
    inputs = int(cast("int", module.in_channels)) // int(cast("int", module.groups))
    kh, kw = (int(k) for k in cast("tuple[int, int]", module.kernel_size))
    if tuple(weight.shape) == (out, inputs, kh, kw):
        return weight
    return weight.reshape(-1, out, inputs, kh, kw).mean(dim=0)


class _Watch(TorchFunctionMode):
    """Note the weights handed to ``conv2d`` and whether ``pad`` ran, during a call."""

    def __init__(self) -> None:
        super().__init__()
        self.weights: list[torch.Tensor] = []
        self.padded = False

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        if func in (F.conv2d, torch.conv2d):
            weight = args[1] if len(args) > 1 else kwargs.get("weight")
            if isinstance(weight, torch.Tensor):
                self.weights.append(weight.detach().clone())
        elif func in (F.pad, torch.constant_pad_nd):
            self.padded = True
        return func(*args, **kwargs)


@dataclass(frozen=True)
class Applied:
    """What a probe call of a conv layer showed: the weight it applies and how it pads."""

    weight: torch.Tensor | None  # the applied [out, in/groups, kh, kw], where it differs
    pads_itself: bool


def applied(module: nn.Module) -> Applied:
    """Call a conv layer whose class overrides ``forward`` once, on a small input, and
    see what it hands to ``conv2d``. Plain torch convs and layers that need more than one
    input (CondConv2d's routing weights) are not probed."""
    if type(module) in CONV_TYPES or isinstance(module, nn.ConvTranspose2d) or module in _VIEWS:
        return Applied(None, False)
    if isinstance(module, nn.Conv2d) and type(module).forward is nn.Conv2d.forward:
        return Applied(None, False)
    inputs = int(cast("int", module.in_channels))
    kernel = cast("tuple[int, int]", module.kernel_size)
    weight = cast("torch.Tensor", module.weight)
    sample = torch.zeros(1, inputs, 2 * int(kernel[0]) + 3, 2 * int(kernel[1]) + 3)
    watch = _Watch()
    was_training = module.training
    try:
        module.eval()
        with torch.no_grad(), watch:
            module(sample.to(weight.device, weight.dtype))
    except Exception:  # a layer that cannot be called alone is shown as stored
        return Applied(None, False)
    finally:
        module.train(was_training)
    stored = stored_filters(module)
    used = next((w for w in watch.weights if w.shape == stored.shape), None)
    differs = used is not None and not torch.equal(used, stored)
    return Applied(used if differs else None, watch.padded)


def _note(module: nn.Module, probe: Applied) -> str | None:
    """Say what the report must know about a layer that is not a plain torch conv."""
    notes = []
    given = getattr(module, "featreport_note", None)  # set by a model source (ONNX)
    if isinstance(given, str):
        notes.append(given)
    weight = cast("torch.Tensor", module.weight)
    kernels = weight.numel() // _kernel_numel(module)
    if not isinstance(module, CONV_TYPES) and kernels > 1:
        notes.append(
            f"mixes {kernels} kernels per filter for each image (conditional conv); its "
            "filters are shown as their mean"
        )
    if probe.weight is not None:
        notes.append(
            "applies a weight computed from the stored one on every call (weight "
            "standardisation); its filters are shown as applied"
        )
    if probe.pads_itself:
        notes.append("pads each input itself, by the input's size (TensorFlow-style 'same')")
    return "; ".join(notes) or None


def conv_facts(name: str, layer: nn.Module) -> ConvFacts:
    """State the settings of one conv layer, with what the report must say about it."""
    view = _VIEWS.get(layer)
    if view is not None:
        return ConvFacts(
            name=name,
            type=view.type,
            in_channels=view.in_channels,
            out_channels=view.out_channels,
            kernel_size=view.kernel_size,
            stride=view.stride,
            padding=view.padding,
            dilation=view.dilation,
            groups=view.groups,
            transposed=view.transposed,
            note=view.note,
        )
    module = cast("nn.Conv2d", layer)
    padding = module.padding
    probe = applied(layer)
    return ConvFacts(
        name=name,
        type=type(module).__name__,
        in_channels=int(module.in_channels),
        out_channels=int(module.out_channels),
        kernel_size=tuple(int(k) for k in module.kernel_size),
        stride=tuple(int(s) for s in module.stride),
        padding=padding if isinstance(padding, str) else "×".join(str(int(p)) for p in padding),
        dilation=tuple(int(d) for d in getattr(module, "dilation", (1, 1))),
        groups=int(module.groups),
        transposed=isinstance(module, nn.ConvTranspose2d),
        note=_note(layer, probe),
    )
