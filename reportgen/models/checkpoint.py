"""Weights files: read them safely, find the state dict inside, and load it into a module."""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import WeightsError, short_error

__all__ = ["load_weights_file", "unwrap_state_dict"]


def unwrap_state_dict(obj: Any, source: str) -> dict[str, torch.Tensor]:
    """Find the state dict in a checkpoint and strip a DataParallel ``module.`` prefix."""
    for _ in range(3):
        if isinstance(obj, Mapping):
            nested = next(
                (obj[k] for k in ("state_dict", "model") if isinstance(obj.get(k), Mapping)), None
            )
            if nested is None:
                break
            obj = nested
    if not isinstance(obj, Mapping) or not obj:
        raise WeightsError(f"--weights {source} holds no state dict (found {type(obj).__name__})")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise WeightsError(
            f"--weights {source} holds a mapping without tensors; is it a state dict?"
        )
    if all(k.startswith("module.") for k in tensors):
        tensors = {k.removeprefix("module."): v for k, v in tensors.items()}
    return tensors


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any(n.endswith("/constants.pkl") or "/code/" in n for n in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _read_checkpoint(path: Path, allow_pickle: bool) -> tuple[Any, str]:
    """Read a weights file; pickles and TorchScript only with ``allow_pickle``."""
    refuse = (
        "Unpickling runs code, so featreport does not do it unless you pass --allow-pickle "
        "for a file you trust; or save a plain state dict with "
        "torch.save(model.state_dict(), path)"
    )
    if _is_torchscript(path):
        if not allow_pickle:
            raise WeightsError(
                f"--weights {path} is a TorchScript archive, not a state dict. {refuse}"
            )
        try:
            scripted = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
        except Exception as exc:
            raise WeightsError(
                f"--weights {path}: TorchScript could not load it ({short_error(exc)})"
            ) from None
        return scripted.state_dict(), "TorchScript archive, read with --allow-pickle"
    try:
        return torch.load(path, map_location="cpu", weights_only=True), ""
    except pickle.UnpicklingError as exc:
        # torch wraps every refusal alike; a pickled object shows as a GLOBAL it would import.
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if found is None:
            raise WeightsError(
                f"--weights {path} cannot be read as a state dict (not a file torch.save wrote); "
                "save it with torch.save(model.state_dict(), path)"
            ) from None
        if not allow_pickle:
            what = f" (it holds a {found.group(1)} object)"
            raise WeightsError(
                f"--weights {path} is a pickled Python object{what}, not a plain state dict. {refuse}"
            ) from None
    except Exception as exc:
        raise WeightsError(
            f"--weights {path} cannot be read as a state dict ({short_error(exc)}); "
            "save it with torch.save(model.state_dict(), path)"
        ) from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise WeightsError(
            f"--weights {path} could not be unpickled ({short_error(exc)})"
        ) from None
    if isinstance(obj, nn.Module):
        return obj.state_dict(), f"pickled {type(obj).__name__}, read with --allow-pickle"
    return obj, "pickle, read with --allow-pickle"


def _fit_prefix(
    state: dict[str, torch.Tensor], wanted: set[str], path: Path
) -> tuple[dict[str, torch.Tensor], str]:
    """Strip the prefix a training wrapper adds (Lightning's ``model.``) when that makes keys fit."""
    if set(state) == wanted:
        return state, ""
    fits = []
    for prefix in sorted({k.split(".", 1)[0] + "." for k in state if "." in k}):
        part = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
        if set(part) == wanted:
            fits.append((prefix, part))
    if len(fits) > 1:
        raise WeightsError(
            f"--weights {path} holds several copies of the model's weights, under "
            f"{' and '.join(repr(p) for p, _ in fits)}; save the one you want as its own state dict"
        )
    if not fits:
        return state, ""
    prefix, part = fits[0]
    ignored = len(state) - len(part)
    note = f"key prefix {prefix!r} removed" + (
        f", {ignored} other {'entry' if ignored == 1 else 'entries'} ignored" if ignored else ""
    )
    return part, note


def load_weights_file(module: nn.Module, path: Path, allow_pickle: bool = False) -> str:
    """Load a weights file into ``module``, naming missing and unexpected keys; describe how."""
    if not path.is_file():
        raise WeightsError(f"--weights {path}: no such file; pass a .pth/.pt state dict")
    obj, how = _read_checkpoint(path, allow_pickle)
    state = unwrap_state_dict(obj, str(path))
    state, fitted = _fit_prefix(state, set(module.state_dict()), path)
    try:
        result = module.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        raise WeightsError(f"--weights {path} does not fit the model: {detail[:600]}") from None
    if result.missing_keys or result.unexpected_keys:

        def listing(keys: list[str]) -> str:
            more = f" and {len(keys) - 5} more" if len(keys) > 5 else ""
            return ", ".join(keys[:5]) + more if keys else "none"

        raise WeightsError(
            f"--weights {path} does not match the model: missing keys: "
            f"{listing(result.missing_keys)}; unexpected keys: {listing(result.unexpected_keys)}"
        )
    return "; ".join(n for n in (how, fitted) if n)
