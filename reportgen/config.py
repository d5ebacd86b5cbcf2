"""The build's options, declared once, as frozen records split by concern.

Each field of :class:`ModelSpec`, :class:`DataConfig`, :class:`SiteConfig` and
:class:`RunConfig` carries an :class:`Option`: its flags, help and kind. The command
line (``reportgen.commands.options``), config files (``reportgen.commands.configfile``)
and the Python API (``reportgen.build_report``) all derive from these declarations, and
:func:`read_options` is the one place where values from any of them are validated.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import click

from .errors import ConfigError

__all__ = [
    "WEIGHT_SUFFIXES",
    "BuildConfig",
    "DataConfig",
    "ModelSpec",
    "Option",
    "RunConfig",
    "SiteConfig",
    "all_options",
    "read_options",
]

Kind = Literal[
    "text", "flag", "int", "choice", "floats", "patterns", "dir", "file", "model", "weights"
]
WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
MODEL_FILE_SUFFIXES = (".onnx", ".keras", ".h5")  # --model files, not code
T = TypeVar("T")


@dataclass(frozen=True)
class Option:
    """How one config field is offered on the command line and in config files."""

    flags: tuple[str, ...]  # the long flag first; its name without dashes is the file key
    help: str = ""
    kind: Kind = "text"
    metavar: str | None = None
    minimum: int | None = None
    choices: tuple[str, ...] = ()
    positive: bool = False  # for floats: every value must be above zero
    show_default: bool = False

    @property
    def flag(self) -> str:
        """Return the long flag, such as ``--batch-size``."""
        return self.flags[0]

    @property
    def key(self) -> str:
        """Return the config-file key: the long flag without its dashes."""
        return self.flag.removeprefix("--")

    def click_type(self) -> click.ParamType[Any]:
        """Return the click type that parses and checks this option's value."""
        if self.kind == "int":
            return click.INT if self.minimum is None else click.IntRange(min=self.minimum)
        if self.kind == "choice":
            return click.Choice(self.choices)
        if self.kind == "dir":
            return click.Path(path_type=Path)
        if self.kind == "file":
            return click.Path(path_type=Path, dir_okay=False)
        return click.STRING


def _option(default: T, *flags: str, **settings: Any) -> T:
    """Declare a field with a default and the option that sets it."""
    return field(default=default, metadata={"option": Option(flags, **settings)})


def _required(*flags: str, **settings: Any) -> Any:
    """Declare a field without a default and the option that sets it."""
    return field(metadata={"option": Option(flags, **settings)})


@dataclass(frozen=True)
class ModelSpec:
    """Which model to run, with which weights, and how its inputs and outputs read."""

    model: Any = _required(
        "--model",
        kind="model",
        metavar="SPEC",
        help="torchvision model name (resnet18, vgg16, ...), path/to/file.py:Name or package.module:Name.",
    )
    weights: str = _option(
        "DEFAULT",
        "--weights",
        kind="weights",
        metavar="W",
        show_default=True,
        help="DEFAULT or a torchvision weight set (IMAGENET1K_V1), none (untrained), or a .pth/.pt state dict.",
    )
    allow_pickle: bool = _option(
        False,
        "--allow-pickle",
        kind="flag",
        help="Take the weights from a pickled model or TorchScript file. Unpickling runs code: only for files you trust.",
    )
    output_key: str | None = _option(
        None,
        "--output-key",
        metavar="KEY",
        help="Where the logits are in the model's output: a dict key, namedtuple field or tuple index  [default: the tensor; a dict's 'logits'; a tuple's first item].",
    )
    seed: int = _option(
        0, "--seed", kind="int", show_default=True, help="Seed for untrained weights."
    )
    classes_file: Path | None = _option(
        None,
        "--classes",
        kind="file",
        metavar="FILE",
        help="Class names: one a line, or a JSON list.",
    )
    input_size: int | None = _option(
        None,
        "--input-size",
        kind="int",
        minimum=8,
        help="Crop size when the weights bring no transforms  [default: 224].",
    )
    mean: tuple[float, ...] | None = _option(
        None,
        "--mean",
        kind="floats",
        metavar="LIST",
        help="Normalization mean, e.g. 0.485,0.456,0.406  [default: ImageNet's].",
    )
    std: tuple[float, ...] | None = _option(
        None,
        "--std",
        kind="floats",
        metavar="LIST",
        positive=True,
        help="Normalization std  [default: ImageNet's].",
    )
    bgr: bool = _option(
        False,
        "--bgr",
        kind="flag",
        help="Feed the colour channels in BGR order (Caffe-style models); --mean and --std are then in BGR order too.",
    )


@dataclass(frozen=True)
class DataConfig:
    """Which images to read, and where their true labels come from."""

    images: Path = _required(
        "--images",
        kind="dir",
        metavar="DIR",
        help="Folder of images, walked recursively; subfolder names are the true labels.",
    )
    labels_file: Path | None = _option(
        None,
        "--labels",
        kind="file",
        metavar="CSV",
        help="True labels from a CSV with columns path,label (paths relative to --images).",
    )
    masks: Path | None = _option(
        None,
        "--masks",
        kind="dir",
        metavar="DIR|CSV",
        help="Object masks laid out like --images, or a CSV of boxes path,x0,y0,x1,y1: how much of each class activation map lies on the object.",
    )


@dataclass(frozen=True)
class SiteConfig:
    """Where the site goes, and how much of what was measured it shows."""

    out: Path = _option(
        Path("featreport-site"),
        "--out",
        kind="dir",
        metavar="DIR",
        show_default=True,
        help="Output folder; a previous featreport site there is replaced.",
    )
    max_channels: int = _option(
        16,
        "--max-channels",
        kind="int",
        minimum=1,
        show_default=True,
        help="Channels per feature-map grid.",
    )
    examples: int = _option(
        12,
        "--examples",
        kind="int",
        minimum=0,
        show_default=True,
        help="Images that get full shallow-to-deep pages.",
    )
    unit_examples: int = _option(
        9,
        "--unit-examples",
        kind="int",
        minimum=0,
        show_default=True,
        help="Images kept per channel: those it responds to most (its spatial maximum) and least; 0 keeps none.",
    )
    units: str = _option(
        "4",
        "--units",
        metavar="N|all",
        show_default=True,
        help="Channels per layer that get a unit page of their top examples: the strongest, the most class-selective and those named in findings; all for every channel.",
    )
    unit: tuple[str, ...] = _option(
        (),
        "--unit",
        kind="patterns",
        metavar="LAYER:CHANNEL",
        help="Also give this channel a unit page (repeat or comma-separate).",
    )
    point: Literal["activation", "conv"] = _option(
        "activation",
        "--point",
        kind="choice",
        choices=("activation", "conv"),
        show_default=True,
        help="Where the pages measure each layer: after its norm and activation (where it has them), or the conv's own output.",
    )
    rank: Literal["relative", "mean"] = _option(
        "relative",
        "--rank",
        kind="choice",
        choices=("relative", "mean"),
        show_default=True,
        help="How an image's channels are ranked: by activation relative to each channel's typical response, or by plain mean.",
    )
    strip_scale: Literal["class", "tile"] = _option(
        "class",
        "--strip-scale",
        kind="choice",
        choices=("class", "tile"),
        show_default=True,
        help="How the mistakes pages scale each depth-strip tile: one range per layer shared by a true class's cards (compare magnitudes), or each tile by its own (compare patterns).",
    )
    cam: Literal["selected", "all", "none"] = _option(
        "selected",
        "--cam",
        kind="choice",
        choices=("selected", "all", "none"),
        show_default=True,
        help="Class activation maps (where the model looked) for the images the site shows, for every image, or none.",
    )
    cam_method: Literal["gradcam", "layercam"] = _option(
        "gradcam",
        "--cam-method",
        kind="choice",
        choices=("gradcam", "layercam"),
        show_default=True,
        help="Grad-CAM (channels weighted by their mean gradient) or LayerCAM (each position by its own).",
    )
    cam_layer: str | None = _option(
        None,
        "--cam-layer",
        metavar="NAME",
        help="The module the maps are computed at  [default: the last conv block with spatial extent, after its activation].",
    )
    image_format: Literal["webp", "png"] = _option(
        "webp", "--image-format", kind="choice", choices=("webp", "png"), show_default=True
    )
    single_file: bool = _option(
        False, "--single-file", kind="flag", help="Write one HTML file with every image inlined."
    )
    predictions: str | None = _option(
        None,
        "--predictions",
        metavar="FILE",
        help="Write every image's record to this gzip-compressed JSON-lines file in the site (a name ending .jsonl.gz), leaving report.json a bounded summary  [default: only above 10,000 images, as predictions.jsonl.gz].",
    )
    open_browser: bool = _option(
        False, "--open", kind="flag", help="Open the report in a browser when done."
    )


@dataclass(frozen=True)
class RunConfig:
    """How to run the passes: on which device, in what batches, over which layers."""

    device: Literal["auto", "cpu", "cuda", "mps"] = _option(
        "auto",
        "--device",
        kind="choice",
        choices=("auto", "cpu", "cuda", "mps"),
        show_default=True,
    )
    batch_size: int = _option(
        16,
        "--batch-size",
        kind="int",
        minimum=1,
        show_default=True,
        help="Images per forward pass.",
    )
    workers: str = _option(
        "auto",
        "--workers",
        metavar="N|auto",
        show_default=True,
        help="Processes that decode and preprocess images while the model runs; auto: none when the model runs on the CPU (its forward pass takes every core), else one fewer than the CPUs available, at most 8.",
    )
    decode: Literal["auto", "cpu", "gpu"] = _option(
        "auto",
        "--decode",
        kind="choice",
        choices=("auto", "cpu", "gpu"),
        show_default=True,
        help="Where JPEGs are decoded: gpu on the CUDA device (torchvision.io.decode_jpeg), resized and cropped there, other files with Pillow on the CPU; auto: gpu when the model runs on CUDA.",
    )
    amp: bool = _option(
        False,
        "--amp",
        kind="flag",
        help="Run forward passes in bfloat16 (float16 where the GPU lacks it) under autocast; statistics are still summed in float32 and float64.",
    )
    layers: tuple[str, ...] = _option(
        (),
        "--layers",
        kind="patterns",
        metavar="GLOB",
        help="Only conv layers whose names match (repeat or comma-separate)  [default: every conv layer].",
    )
    quiet: bool = _option(False, "--quiet", "-q", kind="flag", help="No progress bar or warnings.")
    profile: bool = _option(
        False, "--profile", kind="flag", help="Print the seconds each build stage took, to stderr."
    )
    fail_on: Literal["warning", "error"] | None = _option(
        None,
        "--fail-on",
        kind="choice",
        choices=("warning", "error"),
        help="Exit with status 3 after writing the site when a finding is this severe or more (for CI).",
    )


_GROUPS: dict[str, type[ModelSpec | DataConfig | SiteConfig | RunConfig]] = {
    "model": ModelSpec,
    "data": DataConfig,
    "site": SiteConfig,
    "run": RunConfig,
}


def all_options() -> Iterator[tuple[str, Option, object]]:
    """Yield each option's field name, declaration and default (None when it is required)."""
    for group in _GROUPS.values():
        for f in dataclasses.fields(group):
            default = None if f.default is dataclasses.MISSING else f.default
            yield f.name, f.metadata["option"], default


def _floats(option: Option, value: object) -> tuple[float, ...]:
    if isinstance(value, str):
        parts: list[object] = list(value.replace(",", " ").split())
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        raise click.BadParameter(f"{value!r} is not a list of numbers such as 0.5,0.5,0.5")
    try:
        numbers = tuple(float(cast("str | float", p)) for p in parts)
    except (TypeError, ValueError):
        raise click.BadParameter(
            f"{value!r} is not a list of numbers such as 0.5,0.5,0.5"
        ) from None
    if not numbers:
        raise click.BadParameter("give at least one number, such as 0.5,0.5,0.5")
    if option.positive and any(n <= 0 for n in numbers):
        raise click.BadParameter(f"{option.flag} values must be positive")
    return numbers


def _patterns(value: object) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(v, str) for v in items):
        raise click.BadParameter(f"{value!r} is not a glob pattern or a list of them")
    return tuple(p.strip() for v in items for p in cast("str", v).split(",") if p.strip())


def _relative_to(base: Path, value: Path) -> Path:
    return value if value.is_absolute() else base / value


def _model_spec(value: object, base: Path | None) -> object:
    if not isinstance(value, str):
        if base is not None:
            raise click.BadParameter(f"{value!r} is not a model spec such as resnet18")
        return value  # a module the caller built (the Python API)
    location, colon, attr = value.rpartition(":")
    if base is not None and colon and (location.endswith(".py") or "/" in location):
        return f"{_relative_to(base, Path(location))}:{attr}"
    if base is not None and value.lower().endswith(MODEL_FILE_SUFFIXES):
        return str(_relative_to(base, Path(value)))
    return value


def _weights(value: object, base: Path | None) -> str:
    """Keep a weight-set name as it is; take a weights file relative to the config file."""
    if not isinstance(value, str):
        raise click.BadParameter(f"{value!r} is not DEFAULT, none, a weight set or a file")
    looks_like_file = value.endswith(WEIGHT_SUFFIXES) or "/" in value
    if base is not None and (looks_like_file or (base / value).exists()):
        return str(_relative_to(base, Path(value)))
    return value


def _convert(option: Option, value: object, base: Path | None) -> object:
    """Check and normalize one value; ``base`` is the folder of the config file it came from."""
    if option.kind == "flag" and not isinstance(value, bool):
        raise click.BadParameter(f"{value!r} is not true or false")
    if option.kind == "int" and isinstance(value, bool):
        raise click.BadParameter(f"{value!r} is not a whole number")
    if value is None or option.kind == "flag":
        return value
    converted: object
    if option.kind == "floats":
        converted = _floats(option, value)
    elif option.kind == "patterns":
        converted = _patterns(value)
    elif option.kind == "model":
        converted = _model_spec(value, base)
    elif option.kind == "weights":
        converted = _weights(value, base)
    else:
        converted = option.click_type().convert(value, None, None)
        if option.kind in ("dir", "file") and base is not None:
            converted = _relative_to(base, Path(str(converted)))
    return converted


def _option_named(key: str, source: str) -> tuple[str, Option]:
    """Find the field a config-file key or keyword argument sets, or explain the mistake."""
    wanted = key.replace("_", "-").removeprefix("--")
    for name, option, _ in all_options():
        if wanted in (option.key, name.replace("_", "-")):
            return name, option
    keys = sorted(o.key for _, o, _ in all_options())
    close = difflib.get_close_matches(wanted, keys, n=3, cutoff=0.6)
    hint = (
        f"; did you mean {', '.join(close)}?" if close else f"; the options are {', '.join(keys)}"
    )
    raise ConfigError(f"{source}: unknown option {key!r}{hint}")


def read_options(
    values: Mapping[str, object], source: str, base: Path | None = None
) -> dict[str, object]:
    """Validate options given by name (field name or flag name) and return them by field name.

    ``source`` names where the values came from, for error messages; paths from a
    config file are taken relative to its folder, ``base``.
    """
    options: dict[str, object] = {}
    for key, value in values.items():
        name, option = _option_named(key, source)
        try:
            options[name] = _convert(option, value, base)
        except click.BadParameter as exc:
            raise ConfigError(f"{source}: {option.flag}: {exc.message}") from None
    return options


@dataclass(frozen=True)
class BuildConfig:
    """Everything a build needs to know, in four parts; the command line and the API make one."""

    model: ModelSpec
    data: DataConfig
    site: SiteConfig = SiteConfig()
    run: RunConfig = RunConfig()

    @classmethod
    def from_options(cls, values: Mapping[str, object], source: str = "options") -> BuildConfig:
        """Make a config from options by name, every one checked (see :func:`read_options`)."""
        options = read_options(values, source)
        parts: dict[str, object] = {}
        for part, group in _GROUPS.items():
            given = {
                f.name: options[f.name] for f in dataclasses.fields(group) if f.name in options
            }
            missing = [
                f.metadata["option"].flag
                for f in dataclasses.fields(group)
                if f.default is dataclasses.MISSING and f.name not in given
            ]
            if missing:
                raise ConfigError(
                    f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} required; "
                    "give it on the command line or in featreport.toml"
                )
            parts[part] = group(**cast("dict[str, Any]", given))
        return cls(**parts)  # type: ignore[arg-type]

    def options(self) -> dict[str, object]:
        """Return every option by field name: the inverse of :meth:`from_options`."""
        return {
            f.name: getattr(getattr(self, part), f.name)
            for part, group in _GROUPS.items()
            for f in dataclasses.fields(group)
        }

    def replace(self, **changes: object) -> BuildConfig:
        """Return a copy with some options changed, given by field name and checked."""
        return BuildConfig.from_options({**self.options(), **changes})
