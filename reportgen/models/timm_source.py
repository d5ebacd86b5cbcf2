"""Models from timm: ``--model timm:NAME`` or ``timm:NAME.TAG`` (the optional extra
``featreport[timm]``).

The architecture comes from ``timm.create_model``, its preprocessing from timm's
``resolve_data_config`` (size, crop fraction, interpolation, mean, std), ImageNet class
names from timm's own tables, offline. Pretrained weights come through timm's Hugging Face
cache: first looked up with the hub offline (no network wait), then, only if a connection
to the hub can be opened, downloaded; otherwise the build stops with what to do.
RepVGG- and MobileOne-style models are reparameterised into their inference form.
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn
from torchvision.transforms import InterpolationMode

from ..config import ModelSpec
from ..errors import ModelError, WeightsError, short_error
from .preprocess import Preprocess
from .source import Built, seeded

__all__ = ["PREFIX", "timm_model", "timm_preprocess"]

PREFIX = "timm:"
HUB = ("huggingface.co", 443)


def _timm() -> Any:
    try:
        import timm
    except ImportError:
        raise ModelError("--model timm:... needs timm: pip install 'featreport[timm]'") from None
    return timm


@contextmanager
def _hub_offline(offline: bool) -> Iterator[None]:
    """Make the Hugging Face hub read only its cache (or not) for a ``with`` block.

    ``HF_HUB_OFFLINE`` is read when huggingface_hub is imported, so the module's constant is
    set too, and both are put back after the block.
    """
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - timm depends on it
        yield
        return
    before_env = os.environ.get("HF_HUB_OFFLINE")
    before = constants.HF_HUB_OFFLINE
    os.environ["HF_HUB_OFFLINE"] = "1" if offline else "0"
    constants.HF_HUB_OFFLINE = offline
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before
        if before_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = before_env


def _reachable(address: tuple[str, int] = HUB, timeout: float = 3.0) -> bool:
    """Say whether a TCP connection to the hub opens within ``timeout`` seconds."""
    try:
        with socket.create_connection(address, timeout=timeout):
            return True
    except OSError:
        return False


def _create(name: str, pretrained: bool, seed: int) -> nn.Module:
    timm = _timm()
    return seeded(seed, lambda: timm.create_model(name, pretrained=pretrained))


def _pretrained(name: str, seed: int) -> nn.Module:
    """Build ``name`` with its pretrained weights: from the cache, else from the hub."""
    try:
        with _hub_offline(True):
            return _create(name, True, seed)
    except Exception as cached:  # any failure means "not in the cache"
        first = cached
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip() not in ("", "0")
    if offline or not _reachable():
        reason = "HF_HUB_OFFLINE is set" if offline else "no connection to huggingface.co"
        raise WeightsError(
            f"could not fetch the pretrained weights of timm:{name} ({reason}; not in the "
            f"Hugging Face cache: {short_error(first)}). Run once with network access to fill "
            "the cache (HF_HOME), pass a local state dict with --weights PATH, or use "
            "--weights none for untrained weights"
        ) from None
    try:
        with _hub_offline(False):
            return _create(name, True, seed)
    except Exception as exc:
        raise WeightsError(
            f"could not fetch the pretrained weights of timm:{name} ({short_error(exc)}); "
            "pass a local state dict with --weights PATH, or use --weights none"
        ) from None


def _categories(module: nn.Module) -> tuple[tuple[str, ...] | None, bool]:
    """Return the class names timm knows for the model's head, and whether they are ImageNet-1k's."""
    data = _timm().data
    subset = data.infer_imagenet_subset(module)
    if not subset:
        return None, False
    info = data.ImageNetInfo(subset)
    names = tuple(d.split(",")[0].strip() for d in info.label_descriptions())
    return names, subset == "imagenet-1k"


def _reparameterized(module: nn.Module) -> tuple[nn.Module, bool]:
    """Fuse RepVGG/MobileOne-style training branches into one conv each, if the model has any."""
    if not any(hasattr(m, "reparameterize") for m in module.modules()):
        return module, False
    import timm.utils.model as timm_model_utils

    fused: nn.Module = timm_model_utils.reparameterize_model(module)
    return fused, True


def timm_preprocess(module: nn.Module, channels: int) -> Preprocess:
    """Take the preprocessing timm's data config gives for the model."""
    config: dict[str, Any] = _timm().data.resolve_data_config({}, model=module)
    crop = int(config["input_size"][-1])
    crop_pct = float(config.get("crop_pct") or 0.875)
    interpolation = str(config.get("interpolation") or "bilinear")
    if interpolation not in {m.value for m in InterpolationMode}:
        interpolation = InterpolationMode.BILINEAR.value
    mode = config.get("crop_mode", "center")
    return Preprocess(
        resize=math.floor(crop / crop_pct),
        crop=crop,
        mean=tuple(float(m) for m in config["mean"])[:channels],
        std=tuple(float(s) for s in config["std"])[:channels],
        interpolation=interpolation,
        channels=channels,
        source=f"timm's resolve_data_config (crop_pct {crop_pct:g}, crop mode {mode}"
        + ("; featreport crops the centre" if mode != "center" else "")
        + ")",
    )


def timm_model(spec: ModelSpec, weights_file: bool) -> Built:
    """Build ``timm:NAME[.TAG]``: untrained (for ``none`` or a weights file), or pretrained."""
    timm = _timm()
    name = str(spec.model)[len(PREFIX) :].strip()
    base = name.split(".", 1)[0]
    if not timm.is_model(base):
        close = timm.list_models(f"*{base[:6]}*")[:4]
        hint = f"; timm has {', '.join(close)}" if close else ""
        raise ModelError(f"unknown timm model {name!r}{hint}")
    untrained = spec.weights.lower() == "none"
    if untrained or weights_file:
        with _hub_offline(True):
            module = _create(name, False, spec.seed)
        weights = f"none: untrained, initialized with seed {spec.seed}"
    elif spec.weights.upper() == "DEFAULT":
        module = _pretrained(name, spec.seed)
        cfg: dict[str, Any] = getattr(module, "pretrained_cfg", None) or {}
        tag = cfg.get("tag")
        weights = f"timm pretrained {base}{'.' + tag if tag else ''}"
    else:
        raise WeightsError(
            f"--weights {spec.weights}: for timm:{name} give DEFAULT (timm's pretrained "
            "weights; choose a tag with timm:NAME.TAG), none, or a .pth/.pt state dict"
        )
    categories, imagenet = _categories(module)
    user_preprocess = spec.input_size or spec.mean or spec.std or spec.bgr

    def fresh() -> nn.Module:
        with _hub_offline(True):
            return _reparameterized(_create(name, False, spec.seed))[0]

    return Built(
        module=module,
        name=f"timm:{name}",
        weights=weights,
        untrained=untrained,
        categories=categories,
        fresh=fresh,
        imagenet=imagenet,
        finish=_finish,
        preprocess=None if user_preprocess else timm_preprocess,
    )


def _finish(module: nn.Module) -> tuple[nn.Module, str | None]:
    """Put a loaded timm model in the form the report shows, and say what changed."""
    fused, changed = _reparameterized(module)
    note = (
        "shown in inference form: timm's reparameterize_model fused each block's training "
        "branches into one conv"
        if changed
        else None
    )
    return fused, note
