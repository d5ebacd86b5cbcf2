"""Find the class logits in whatever a model's forward pass returns, and say where."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ..errors import ModelError

__all__ = ["pick_logits"]


def _kind(output: object) -> str:
    if isinstance(output, tuple) and hasattr(output, "_fields"):
        return f"namedtuple {type(output).__name__}"
    return type(output).__name__


def _part(output: object, key: str) -> tuple[object, str]:
    """Take the ``--output-key`` part of an output: a dict key, a field or attribute, an index."""
    if isinstance(output, Mapping):
        if key in output:
            return output[key], f"the {key!r} entry of the returned {_kind(output)}"
        raise ModelError(
            f"--output-key {key!r} is not among the keys of the model's output "
            f"({', '.join(map(str, output))})"
        )
    if isinstance(output, (tuple, list)):
        fields = getattr(output, "_fields", ())
        if key in fields:
            return getattr(output, key), f"field {key!r} of the returned {_kind(output)}"
        try:
            index = int(key)
            return output[index], f"item {index} of the returned {_kind(output)}"
        except (ValueError, IndexError):
            names = f"fields {', '.join(fields)} or " if fields else ""
            raise ModelError(
                f"--output-key {key!r} does not pick from the model's {_kind(output)} of "
                f"{len(output)} items; pass {names}an index from 0 to {len(output) - 1}"
            ) from None
    if not isinstance(output, torch.Tensor) and hasattr(output, key):
        return getattr(output, key), f"attribute {key!r} of the returned {_kind(output)}"
    raise ModelError(
        f"--output-key {key!r} was given, but the model returns a {_kind(output)} "
        "with no such part; leave --output-key out"
    )


def pick_logits(
    output: object, key: str | None = None, owner: str = "the returned "
) -> tuple[torch.Tensor, str]:
    """Find the class logits in a model's output, and say where they were found.

    Without ``key``: a tensor itself, a dict's ``logits`` entry (or its only entry), or
    the first item of a tuple, list or namedtuple (looked into once more if it is itself
    a dict or tuple). With ``key`` (``--output-key``): that dict key, namedtuple field or
    attribute, or that index of a tuple. ``owner`` words the description of ``output``.
    """
    if key is not None:
        logits, where = _part(output, key)
    elif isinstance(output, torch.Tensor):
        logits, where = output, "the output tensor"
    elif isinstance(output, Mapping):
        if "logits" in output:
            logits, where = output["logits"], f"the 'logits' entry of {owner}{_kind(output)}"
        elif len(output) == 1:
            (only,) = output
            logits, where = (
                output[only],
                f"the only entry, {only!r}, of {owner}{_kind(output)}",
            )
        else:
            raise ModelError(
                f"the model returned a {_kind(output)} with keys {', '.join(map(str, output))} "
                "and none is called 'logits'; name the one that holds the logits with --output-key"
            )
    elif isinstance(output, (tuple, list)) and output:
        fields = getattr(output, "_fields", ())
        first = f"field {fields[0]!r} (the first)" if fields else "item 0"
        where = f"{first} of {owner}{_kind(output)}"
        logits = output[0]
        if isinstance(logits, (Mapping, tuple, list)):
            logits, inner = pick_logits(logits, owner="")
            where = f"{inner}, in {where}"
    else:
        raise ModelError(
            f"the model returned {_kind(output)}; featreport needs class logits "
            "(a tensor, or a tuple or dict holding one: see --output-key)"
        )
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else _kind(logits)
        raise ModelError(
            f"the model's logits, taken from {where}, have shape {shape}; featreport needs "
            "classification logits of shape [batch, classes] (choose another part with --output-key)"
        )
    return logits, where
