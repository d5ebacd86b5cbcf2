"""The ``featreport`` command: options in (from the command line and a config file), the
pipeline called, the index path out."""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType

import click

from .. import __version__
from ..config import BuildConfig, read_options
from ..errors import FindingsError
from .configfile import find_config
from .options import config_options, given_options

__all__ = ["build", "diff", "main"]

CONTEXT = {"help_option_names": ["-h", "--help"]}


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, prog_name="featreport")
def main() -> None:
    """Write static HTML reports of what a PyTorch CNN sees, from shallow to deep layers."""


config_file_option = click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help="Read options from this TOML file  [default: featreport.toml, or [tool.featreport] in pyproject.toml, in the working folder].",
)


def _read_config(
    ctx: click.Context, config_file: Path | None, values: dict[str, object]
) -> BuildConfig:
    """Take the options from the config file found, then the command line, and check them."""
    signal.signal(signal.SIGTERM, _terminate)
    found = find_config(config_file, Path.cwd())
    options = dict(found.options) if found is not None else {}
    options.update(read_options(given_options(ctx, values), "the command line"))
    config = BuildConfig.from_options(options)
    if found is not None and not config.run.quiet:
        click.echo(f"Options from {found.path}", err=True)
    return config


@main.command(context_settings=CONTEXT)
@config_options
@config_file_option
@click.pass_context
def build(ctx: click.Context, /, config_file: Path | None, **values: object) -> None:
    """Run a CNN over a folder of images and write an HTML report of what it sees."""
    config = _read_config(ctx, config_file, values)
    try:
        from ..pipeline import build as run

        index = run(config)
    except FindingsError as failed:
        click.echo(str(failed.index))  # the site was written: say where, then fail the gate
        raise
    except KeyboardInterrupt:
        raise click.ClickException(
            "interrupted; the previous site, if any, was left as it was"
        ) from None
    from ..processes import secondary

    if not secondary():
        click.echo(str(index))


@main.command(context_settings=CONTEXT)
@config_options
@click.option(
    "--weights-b",
    metavar="W",
    help="Model B: other weights for --model's architecture (a weight set, a .pth/.pt state dict, or none for its seeded untrained initialisation).",
)
@click.option(
    "--model-b",
    metavar="SPEC",
    help="Model B of another architecture (its weights: --weights-b, default DEFAULT); layers are then compared all against all.",
)
@click.option(
    "--checkpoints",
    "checkpoint_list",
    multiple=True,
    type=click.Path(path_type=Path),
    metavar="FILE|DIR",
    help="Follow --model over its training: checkpoint files in order (the first after --checkpoints, the rest as arguments), or a folder of them sorted by the number in their names.",
)
@click.argument(
    "more_checkpoints", nargs=-1, type=click.Path(path_type=Path), metavar="[CHECKPOINT]..."
)
@config_file_option
@click.pass_context
def diff(
    ctx: click.Context,
    /,
    weights_b: str | None,
    model_b: str | None,
    checkpoint_list: tuple[Path, ...],
    more_checkpoints: tuple[Path, ...],
    config_file: Path | None,
    **values: object,
) -> None:
    """Compare two models, or one over its training, on a folder of images: which layers changed, which filters moved, which images flipped."""
    config = _read_config(ctx, config_file, values)
    if more_checkpoints and not checkpoint_list:
        raise click.UsageError(
            f"unexpected argument {more_checkpoints[0]}: checkpoints follow --checkpoints"
        )
    checkpoints: tuple[Path, ...] = ()
    if checkpoint_list:
        from ..diff.build import checkpoint_files

        checkpoints = checkpoint_files((*checkpoint_list, *more_checkpoints))
    try:
        from ..diff.build import DiffConfig
        from ..diff.build import diff as run

        index = run(DiffConfig(config, model_b, weights_b, checkpoints))
    except KeyboardInterrupt:
        raise click.ClickException(
            "interrupted; the previous site, if any, was left as it was"
        ) from None
    click.echo(str(index))
