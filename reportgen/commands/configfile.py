"""Options from a file: ``--config FILE``, else ``featreport.toml`` or a ``pyproject.toml``
with a ``[tool.featreport]`` table in the working folder.

Keys are the long option names (``batch-size``; ``batch_size`` is read the same), and
relative paths are taken from the file's folder. Options on the command line win.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import read_options
from ..errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["ConfigFile", "find_config", "read_config"]

FILE_NAME = "featreport.toml"


@dataclass(frozen=True)
class ConfigFile:
    """The options one config file sets, checked, with paths resolved against its folder."""

    path: Path
    options: dict[str, object]


def _load(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            document: dict[str, Any] = tomllib.load(handle)
            return document
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None


def _table(path: Path, document: dict[str, Any]) -> dict[str, Any] | None:
    """Take featreport's table: the whole file, or ``[tool.featreport]`` of a pyproject.toml."""
    if path.name != "pyproject.toml":
        return document
    tool = document.get("tool", {})
    table = tool.get("featreport") if isinstance(tool, dict) else None
    if table is not None and not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.featreport] must be a table of options")
    return table


def read_config(path: Path) -> ConfigFile | None:
    """Read one config file; None for a pyproject.toml that has no ``[tool.featreport]``."""
    table = _table(path, _load(path))
    if table is None:
        return None
    nested = sorted(k for k, v in table.items() if isinstance(v, dict))
    if nested:
        raise ConfigError(
            f"{path}: {nested[0]!r} is a table; featreport's options are plain keys such as "
            "batch-size = 8"
        )
    return ConfigFile(path, read_options(table, str(path), base=path.parent))


def find_config(explicit: Path | None, folder: Path) -> ConfigFile | None:
    """Read ``explicit``, else the first of featreport.toml and pyproject.toml in ``folder``."""
    if explicit is not None:
        found = read_config(explicit)
        if found is None:
            raise ConfigError(f"--config {explicit} has no [tool.featreport] table")
        return found
    for name in (FILE_NAME, "pyproject.toml"):
        candidate = folder / name
        if candidate.is_file():
            found = read_config(candidate)
            if found is not None:
                return found
    return None
