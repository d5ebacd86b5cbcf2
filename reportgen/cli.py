"""The ``featreport`` command: options in, a config out, the pipeline called."""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType

import click

from . import __version__
from .config import BuildConfig


def _floats(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        return tuple(float(part) for part in value.replace(",", " ").split())
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a list of numbers such as 0.5,0.5,0.5"
        ) from None


def _patterns(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> tuple[str, ...]:
    return tuple(p.strip() for v in value for p in v.split(",") if p.strip())


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@click.group()
@click.version_option(__version__, prog_name="featreport")
def main() -> None:
    """Static HTML reports of what a PyTorch CNN sees, from shallow to deep layers."""


@main.command()
@click.option(
    "--model",
    "model",
    required=True,
    metavar="SPEC",
    help="torchvision model name (resnet18, vgg16, ...), path/to/file.py:Name or package.module:Name.",
)
@click.option(
    "--images",
    required=True,
    type=click.Path(path_type=Path),
    metavar="DIR",
    help="Folder of images, walked recursively; subfolder names are the true labels.",
)
@click.option(
    "--weights",
    default="DEFAULT",
    show_default=True,
    metavar="W",
    help="DEFAULT or a torchvision weight set (IMAGENET1K_V1), none (untrained), or a .pth/.pt state dict.",
)
@click.option(
    "--allow-pickle",
    is_flag=True,
    help="Take the weights from a pickled model or TorchScript file. Unpickling runs code: only for files you trust.",
)
@click.option(
    "--output-key",
    metavar="KEY",
    help="Where the logits are in the model's output: a dict key, namedtuple field or tuple index  [default: the tensor; a dict's 'logits'; a tuple's first item].",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed for untrained weights.")
@click.option(
    "--classes",
    "classes_file",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help="Class names: one a line, or a JSON list.",
)
@click.option(
    "--labels",
    "labels_file",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="CSV",
    help="True labels from a CSV with columns path,label (paths relative to --images).",
)
@click.option(
    "--input-size",
    type=click.IntRange(min=8),
    default=None,
    help="Crop size when the weights bring no transforms  [default: 224].",
)
@click.option(
    "--mean",
    callback=_floats,
    default=None,
    help="Normalization mean, e.g. 0.485,0.456,0.406  [default: ImageNet's].",
)
@click.option(
    "--std", callback=_floats, default=None, help="Normalization std  [default: ImageNet's]."
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("featreport-site"),
    show_default=True,
    metavar="DIR",
    help="Output folder; a previous featreport site there is replaced.",
)
@click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default="auto", show_default=True
)
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option(
    "--layers",
    multiple=True,
    callback=_patterns,
    metavar="GLOB",
    help="Only conv layers whose names match (repeat or comma-separate)  [default: every conv layer].",
)
@click.option(
    "--max-channels",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="Channels per feature-map grid.",
)
@click.option(
    "--examples",
    type=click.IntRange(min=0),
    default=12,
    show_default=True,
    help="Images that get full shallow-to-deep pages.",
)
@click.option(
    "--image-format", type=click.Choice(["webp", "png"]), default="webp", show_default=True
)
@click.option("--single-file", is_flag=True, help="Write one HTML file with every image inlined.")
@click.option(
    "--open", "open_browser", is_flag=True, help="Open the report in a browser when done."
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or warnings.")
@click.option("--profile", is_flag=True, help="Print the seconds each build stage took, to stderr.")
def build(**options: object) -> None:
    """Run a CNN over a folder of images and write an HTML report of what it sees."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        from .pipeline import build as run

        index = run(BuildConfig(**options))  # type: ignore[arg-type]
    except KeyboardInterrupt:
        raise click.ClickException(
            "interrupted; the previous site, if any, was left as it was"
        ) from None
    click.echo(str(index))
