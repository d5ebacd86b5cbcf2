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

__all__ = ["build", "main"]

CONTEXT = {"help_option_names": ["-h", "--help"]}


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, prog_name="featreport")
def main() -> None:
    """Write static HTML reports of what a PyTorch CNN sees, from shallow to deep layers."""


@main.command(context_settings=CONTEXT)
@config_options
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help="Read options from this TOML file  [default: featreport.toml, or [tool.featreport] in pyproject.toml, in the working folder].",
)
@click.pass_context
def build(ctx: click.Context, /, config_file: Path | None, **values: object) -> None:
    """Run a CNN over a folder of images and write an HTML report of what it sees."""
    signal.signal(signal.SIGTERM, _terminate)
    found = find_config(config_file, Path.cwd())
    options = dict(found.options) if found is not None else {}
    options.update(read_options(given_options(ctx, values), "the command line"))
    config = BuildConfig.from_options(options)
    if found is not None and not config.run.quiet:
        click.echo(f"Options from {found.path}", err=True)
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
