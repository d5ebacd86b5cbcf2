"""Models from code: ``path/to/file.py:Name`` or ``package.module:Name``."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import traceback
from pathlib import Path
from typing import Any

from torch import nn

from ..config import ModelSpec
from ..errors import ModelError, WeightsError, short_error
from .source import Built, seeded

__all__ = ["code_model", "given_model"]


def _import_target(spec: str) -> tuple[Any, str]:
    """Import the object a ``file.py:name`` or ``package.module:name`` spec names."""
    location, _, attr = spec.rpartition(":")
    if not location or not attr:
        raise ModelError(
            f"--model {spec!r} must look like path/to/file.py:Name or package.module:Name"
        )
    if location.endswith(".py") or "/" in location or "\\" in location:
        path = Path(location)
        if not path.is_file():
            raise ModelError(f"--model {spec!r}: no such file {path}; check the path before ':'")
        digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
        module_name = f"featreport_user_{path.stem}_{digest}"
        import_spec = importlib.util.spec_from_file_location(module_name, path)
        if import_spec is None or import_spec.loader is None:
            raise ModelError(f"--model {spec!r}: {path} cannot be imported as Python")
        module = importlib.util.module_from_spec(import_spec)
        # The file may import its sibling modules, as it would when run from its folder.
        sys.path.insert(0, str(path.resolve().parent))
        sys.modules[module_name] = module
        try:
            import_spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(module_name, None)
            where = traceback.extract_tb(exc.__traceback__)[-1]
            raise ModelError(
                f"importing {path} failed at line {where.lineno}: {short_error(exc)}"
            ) from None
        finally:
            sys.path.remove(str(path.resolve().parent))
    else:
        try:
            module = importlib.import_module(location)
        except ImportError as exc:
            raise ModelError(
                f"--model {spec!r}: cannot import {location} ({exc}); is it installed?"
            ) from None
    if not hasattr(module, attr):
        choices = sorted(
            n for n, v in vars(module).items() if isinstance(v, type) and issubclass(v, nn.Module)
        )
        hint = f"; it defines {', '.join(choices)}" if choices else ""
        raise ModelError(f"--model {spec!r}: {location} has no attribute {attr!r}{hint}")
    return getattr(module, attr), attr


def _build_from_target(target: Any, spec: str) -> nn.Module:
    if isinstance(target, nn.Module):
        return target
    if not callable(target):
        raise ModelError(f"--model {spec!r} names neither an nn.Module class nor a function")
    try:
        built = target()
    except TypeError as exc:
        raise ModelError(
            f"--model {spec!r} could not be called without arguments ({exc}); "
            "wrap it in a function that takes none and returns the model"
        ) from None
    if not isinstance(built, nn.Module):
        raise ModelError(f"--model {spec!r} returned {type(built).__name__}, not an nn.Module")
    return built


def code_model(spec: ModelSpec, target_spec: str, weights_file: bool) -> Built:
    """Build the module a ``file.py:Name`` or ``package.module:Name`` spec names."""
    untrained = spec.weights.lower() == "none"
    if not (untrained or weights_file or spec.weights.upper() == "DEFAULT"):
        raise WeightsError(
            f"--weights {spec.weights}: no such file. For {target_spec}, pass a .pth/.pt state "
            "dict, none for untrained weights, or leave --weights out to keep the weights the "
            "model's own code sets"
        )
    target, _ = _import_target(target_spec)
    module = seeded(spec.seed, lambda: _build_from_target(target, target_spec))
    weights = f"as built by {target_spec} (featreport loaded none)"
    if untrained:
        weights = f"none: untrained, initialized with seed {spec.seed}"
    # A spec naming a module instance cannot build a second, untrained one, and a factory
    # run without a weights file may load trained weights itself: neither is a reference.
    fresh = (
        None
        if isinstance(target, nn.Module) or not weights_file
        else lambda: _build_from_target(target, target_spec)
    )
    return Built(module, target_spec, weights, untrained, categories=None, fresh=fresh)


def given_model(module: nn.Module, spec: ModelSpec) -> Built:
    """Take a module the caller built (the Python API) as it is."""
    if spec.weights.lower() == "none":
        raise ModelError("--weights none needs a model spec, not a built module")
    return Built(
        module,
        type(module).__name__,
        "as passed in (featreport loaded none)",
        untrained=False,
        categories=None,
    )
