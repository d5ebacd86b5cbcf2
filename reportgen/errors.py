"""The exceptions featreport raises for problems a user can fix.

Every class derives from :class:`click.ClickException`, so the command line prints
``Error: <message>`` and exits non-zero without a traceback. Each message names the
bad input and says what to do about it. Bad input exits with status 2; findings past
``--fail-on`` exit with status 3, after the site is written.
"""

from __future__ import annotations

from pathlib import Path

import click

__all__ = [
    "ConfigError",
    "FeatreportError",
    "FindingsError",
    "ImagesError",
    "InferenceError",
    "LabelsError",
    "ModelError",
    "OutputError",
    "WeightsError",
    "short_error",
]


def short_error(exc: BaseException) -> str:
    """Describe an exception in one line: its type and the first line of its message."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


class FeatreportError(click.ClickException):
    """Base class of every expected featreport failure."""

    exit_code = 2


class ConfigError(FeatreportError):
    """An option, or a value in a config file, is unknown or invalid."""


class ModelError(FeatreportError):
    """The model spec cannot be resolved, or the model cannot be used."""


class WeightsError(FeatreportError):
    """The weights cannot be fetched, read or loaded into the model."""


class ImagesError(FeatreportError):
    """The image folder is missing, empty, or holds no readable image."""


class LabelsError(FeatreportError):
    """The class names or labels file cannot be read."""


class OutputError(FeatreportError):
    """The output folder cannot be written or would overwrite something that is not ours."""


class InferenceError(FeatreportError):
    """The model's forward pass failed on an image batch."""


class FindingsError(FeatreportError):
    """The report was written, and holds findings at or above ``--fail-on`` (exit status 3)."""

    exit_code = 3

    def __init__(self, message: str, index: Path) -> None:
        super().__init__(message)
        self.index = index
