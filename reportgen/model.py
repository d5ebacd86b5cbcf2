"""Resolve ``--model`` and ``--weights`` into a ready module, its classes and preprocessing."""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import pickle
import re
import sys
import traceback
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.error import URLError

import torch
import torchvision
from PIL import Image
from torch import nn
from torchvision.models import _api as tv_api
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as tvf

from .config import DEFAULT_INPUT_SIZE, IMAGENET_MEAN, IMAGENET_STD, BuildConfig
from .errors import ModelError, WeightsError, short_error

CONV_TYPES: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.ConvTranspose2d)


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes the model's input tensor."""

    resize: int
    crop: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str
    channels: int  # 3 for RGB, 1 for grayscale
    source: str  # where these settings came from

    @property
    def mode(self) -> str:
        return "L" if self.channels == 1 else "RGB"

    def describe(self) -> str:
        colour = "grayscale" if self.channels == 1 else "RGB"
        mean = ", ".join(f"{m:g}" for m in self.mean)
        std = ", ".join(f"{s:g}" for s in self.std)
        return (
            f"{colour}; resize shorter side to {self.resize} px ({self.interpolation}), "
            f"centre crop {self.crop}×{self.crop}; normalize mean ({mean}), std ({std})"
        )

    def __call__(self, image: Image.Image) -> torch.Tensor:
        mode = InterpolationMode(self.interpolation)
        image = tvf.resize(image, [self.resize], interpolation=mode, antialias=True)
        image = tvf.center_crop(image, [self.crop, self.crop])
        tensor = tvf.pil_to_tensor(image).to(torch.float32).div_(255.0)
        return tvf.normalize(tensor, list(self.mean), list(self.std))


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for inference, and the facts the report states about it."""

    module: nn.Module
    name: str
    weights: str
    untrained: bool
    categories: tuple[str, ...] | None
    imagenet_classes: bool
    preprocess: Preprocess
    device: torch.device
    parameters: int
    output_key: str | None = None  # which part of the model's output holds the logits


def resolve_device(name: str) -> torch.device:
    """Turn ``auto|cpu|cuda|mps`` into a device that exists here."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ModelError("--device cuda was asked for but CUDA is not available; use --device cpu")
    if name == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise ModelError("--device mps was asked for but MPS is not available; use --device cpu")
    return torch.device(name)


def classification_models() -> list[str]:
    return sorted(torchvision.models.list_models(module=torchvision.models))


def _imagenet_categories() -> tuple[str, ...]:
    return tuple(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


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
            scripted = torch.jit.load(str(path), map_location="cpu")
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


def _torchvision_weights(name: str, weights: str) -> tv_api.WeightsEnum:
    try:
        enum = torchvision.models.get_model_weights(name)
    except (ValueError, KeyError):
        raise WeightsError(
            f"{name} has no pretrained weights in torchvision; use --weights none or a file"
        ) from None
    if weights.upper() == "DEFAULT":
        return enum.DEFAULT
    members = [m for m in enum.__members__ if m != "DEFAULT"]
    key = weights.split(".")[-1]
    if key in enum.__members__:
        return enum[key]
    raise WeightsError(
        f"--weights {weights!r} is not a weight set of {name}; choose one of "
        f"{', '.join(['DEFAULT', *members])}, none, or a path to a .pth file"
    )


def _fetch_torchvision(name: str, weights: tv_api.WeightsEnum) -> nn.Module:
    try:
        return torchvision.models.get_model(name, weights=weights)
    except (URLError, OSError, RuntimeError) as exc:
        filename = weights.url.rsplit("/", 1)[-1]
        cache = Path(torch.hub.get_dir()) / "checkpoints" / filename
        raise WeightsError(
            f"could not fetch the {weights} weights for {name} ({short_error(exc)}). "
            f"Without network access, place the file at {cache} (from {weights.url}), "
            "pass a local state dict with --weights PATH, or use --weights none for untrained weights"
        ) from None


def _preprocess_from_options(config: BuildConfig, channels: int, source: str) -> Preprocess:
    size = config.input_size or DEFAULT_INPUT_SIZE
    mean = tuple(config.mean or IMAGENET_MEAN)
    std = tuple(config.std or IMAGENET_STD)
    if channels == 1:
        mean = (sum(mean) / len(mean),) if len(mean) != 1 else mean
        std = (sum(std) / len(std),) if len(std) != 1 else std
    for label, values in (("--mean", mean), ("--std", std)):
        if len(values) != channels:
            raise ModelError(
                f"{label} has {len(values)} values but the model takes {channels} channels"
            )
    if any(s <= 0 for s in std):
        raise ModelError("--std values must be positive")
    return Preprocess(
        resize=round(size / 0.875),
        crop=size,
        mean=mean,
        std=std,
        interpolation=InterpolationMode.BILINEAR.value,
        channels=channels,
        source=source,
    )


def _preprocess_from_weights(weights: tv_api.WeightsEnum, channels: int) -> Preprocess:
    transform = weights.transforms()
    return Preprocess(
        resize=int(transform.resize_size[0]),
        crop=int(transform.crop_size[0]),
        mean=tuple(float(m) for m in transform.mean),
        std=tuple(float(s) for s in transform.std),
        interpolation=transform.interpolation.value,
        channels=channels,
        source=f"the transforms() of torchvision's {weights}",
    )


def conv_layers(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """List the conv layers (subclasses included) by name, in definition order."""
    convs = [(name, m) for name, m in module.named_modules() if isinstance(m, CONV_TYPES)]
    if not convs:
        raise ModelError(
            "the model has no nn.Conv2d or nn.ConvTranspose2d layer; featreport visualizes CNNs"
        )
    return convs


def input_channels(module: nn.Module) -> int:
    """Say how many channels the first conv layer takes (1 or 3)."""
    _, first = conv_layers(module)[0]
    channels = int(cast("nn.Conv2d", first).in_channels)
    if channels not in (1, 3):
        raise ModelError(
            f"the first conv layer takes {channels} input channels; featreport feeds RGB (3) "
            "or grayscale (1) images"
        )
    return channels


def _seeded(seed: int, build: Callable[[], nn.Module]) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def load_model(config: BuildConfig) -> LoadedModel:
    """Build the model the config names, load its weights, and pick its preprocessing."""
    spec = config.model
    weights_arg = config.weights
    is_file_weights = weights_arg.lower() not in ("default", "none") and (
        weights_arg.endswith((".pth", ".pt", ".bin", ".ckpt")) or Path(weights_arg).exists()
    )
    untrained = weights_arg.lower() == "none"
    categories: tuple[str, ...] | None = None
    tv_weights = None

    if isinstance(spec, nn.Module):
        name = type(spec).__name__
        module = spec
        weights_desc = "as passed in (featreport loaded none)"
        if untrained:
            raise ModelError("--weights none needs a model spec, not a built module")
    elif ":" in spec:
        if not (untrained or is_file_weights or weights_arg.upper() == "DEFAULT"):
            raise WeightsError(
                f"--weights {weights_arg}: no such file. For {spec}, pass a .pth/.pt state dict, "
                "none for untrained weights, or leave --weights out to keep the weights the "
                "model's own code sets"
            )
        target, _ = _import_target(spec)
        name = spec
        module = _seeded(config.seed, lambda: _build_from_target(target, spec))
        weights_desc = f"as built by {spec} (featreport loaded none)"
        if untrained:
            weights_desc = f"none: untrained, initialized with seed {config.seed}"
    else:
        name = spec
        known = classification_models()
        if spec not in known:
            close = difflib.get_close_matches(spec.lower(), known, n=4, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ModelError(
                f"unknown model {spec!r}{hint} Pass a torchvision classification model name, "
                "path/to/file.py:Name or package.module:Name"
            )
        if untrained or is_file_weights:
            module = _seeded(config.seed, lambda: torchvision.models.get_model(spec, weights=None))
            weights_desc = f"none: untrained, initialized with seed {config.seed}"
        else:
            tv_weights = _torchvision_weights(spec, weights_arg)
            module = _fetch_torchvision(spec, tv_weights)
            weights_desc = f"torchvision {tv_weights}"
            categories = tuple(tv_weights.meta.get("categories") or ()) or None
        if categories is None:
            try:
                meta = torchvision.models.get_model_weights(spec).DEFAULT.meta
                categories = tuple(meta.get("categories") or ()) or None
            except (ValueError, KeyError, AttributeError):
                categories = None

    if is_file_weights:
        how = load_weights_file(module, Path(weights_arg), config.allow_pickle)
        weights_desc = f"state dict from {weights_arg}" + (f" ({how})" if how else "")

    channels = input_channels(module)
    user_preprocess = config.input_size or config.mean or config.std
    if tv_weights is not None and not user_preprocess:
        preprocess = _preprocess_from_weights(tv_weights, channels)
    else:
        source = ", ".join(
            [
                "--input-size" if config.input_size else f"the default size {DEFAULT_INPUT_SIZE}",
                "--mean" if config.mean else "ImageNet's mean",
                "--std" if config.std else "ImageNet's std",
            ]
        )
        preprocess = _preprocess_from_options(config, channels, source)

    if isinstance(spec, nn.Module) and config.device == "auto":
        # A module the caller built stays where it is: the build must not move it.
        device = next((p.device for p in module.parameters()), torch.device("cpu"))
    else:
        device = resolve_device(config.device)
    module.to(device)
    return LoadedModel(
        module=module,
        name=name,
        weights=weights_desc,
        untrained=untrained,
        categories=categories,
        imagenet_classes=categories == _imagenet_categories() if categories else False,
        preprocess=preprocess,
        device=device,
        parameters=sum(p.numel() for p in module.parameters()),
        output_key=config.output_key,
    )
