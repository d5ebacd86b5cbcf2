"""The command-line options, derived from the config records' declarations."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from ..config import Option, all_options

__all__ = ["config_options", "given_options"]

F = TypeVar("F", bound=Callable[..., Any])


def _click_option(name: str, option: Option, default: object) -> Callable[[F], F]:
    """Turn one declared option into a click option that stores into ``name``."""
    settings: dict[str, Any] = {"help": option.help or None, "metavar": option.metavar}
    if option.kind == "flag":
        settings.update(is_flag=True, default=False)
    elif option.kind == "patterns":
        settings.update(multiple=True, default=())
    else:
        settings.update(type=option.click_type(), default=default)
        settings["show_default"] = option.show_default and default is not None
    return click.option(*option.flags, name, **settings)


def config_options(command: F) -> F:
    """Add every option of a build to a click command, in the order ``--help`` lists them."""
    for name, option, default in reversed(list(all_options())):
        command = _click_option(name, option, default)(command)
    return command


def given_options(ctx: click.Context, values: Mapping[str, object]) -> dict[str, object]:
    """Keep the options the user gave, not click's defaults, so a config file fills the rest."""
    return {
        name: value
        for name, value in values.items()
        if ctx.get_parameter_source(name) not in (None, ParameterSource.DEFAULT)
    }
