"""Class names and true labels: reading them and matching folder names to classes."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import LabelsError
from .files import ImageFile

__all__ = [
    "LabelMatcher",
    "LabelResult",
    "imagenet_wnids",
    "name_classes",
    "read_class_names",
    "read_labels_csv",
    "resolve_labels",
]


def read_class_names(path: Path) -> tuple[str, ...]:
    """Read class names from a JSON list or a text file with one name a line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelsError(f"cannot read --classes {path}: {exc}") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LabelsError(f"--classes {path} is not valid JSON: {exc}") from None
        if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
            raise LabelsError(f"--classes {path} must hold a JSON list of strings")
        names = tuple(data)
    else:
        names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not names:
        raise LabelsError(f"--classes {path} holds no class names; write one name a line")
    return names


def read_labels_csv(path: Path) -> dict[str, str]:
    """Read a ``path,label`` CSV into a mapping from image path (relative, '/') to label."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise LabelsError(f"cannot read --labels {path}: {exc}") from None
    if not rows or not {"path", "label"} <= set(rows[0]):
        raise LabelsError(f"--labels {path} needs a header row with the columns path,label")
    return {row["path"].replace("\\", "/").removeprefix("./"): row["label"] for row in rows}


def name_classes(
    classes_file: Path | None, categories: Sequence[str] | None, num_classes: int
) -> tuple[tuple[str, ...], str]:
    """Name the model's outputs, and say where the names came from."""
    if classes_file is not None:
        names = read_class_names(classes_file)
        if len(names) != num_classes:
            raise LabelsError(
                f"--classes {classes_file} has {len(names)} names but the model has "
                f"{num_classes} outputs; give one name per output, in output order"
            )
        return names, f"from {classes_file}"
    if categories and len(categories) == num_classes:
        return tuple(categories), "from the torchvision weights' metadata"
    return tuple(
        str(i) for i in range(num_classes)
    ), "class indices (no names given; see --classes)"


def _loose(name: str) -> str:
    return re.sub(r"[\s_]+", " ", name).strip().casefold()


def imagenet_wnids() -> tuple[str, ...]:
    """Return ImageNet's 1,000 WordNet ids in class-index order."""
    text = resources.files("reportgen").joinpath("data/imagenet_wnids.txt").read_text("ascii")
    return tuple(text.split())


class LabelMatcher:
    """Match a label name to a class index: exactly, then loosely, then as a WordNet id."""

    def __init__(self, class_names: Sequence[str], imagenet: bool) -> None:
        self._exact = {name: i for i, name in reversed(list(enumerate(class_names)))}
        self._loose = {_loose(name): i for i, name in reversed(list(enumerate(class_names)))}
        self._wnid = {w: i for i, w in enumerate(imagenet_wnids())} if imagenet else {}

    def match(self, name: str) -> int | None:
        """Return the class index that ``name`` names, or None."""
        if name in self._exact:
            return self._exact[name]
        if _loose(name) in self._loose:
            return self._loose[_loose(name)]
        return self._wnid.get(name.strip().lower())


@dataclass(frozen=True)
class LabelResult:
    """The true class of every image (None where unknown) and the warnings raised."""

    labels: tuple[int | None, ...]
    warnings: tuple[str, ...]
    source: str  # "folders", "csv" or "none"


def resolve_labels(
    files: Sequence[ImageFile],
    class_names: Sequence[str],
    imagenet: bool,
    labels_csv: Path | None,
) -> LabelResult:
    """Give every image its true class index from its folder or the CSV."""
    matcher = LabelMatcher(class_names, imagenet)
    if labels_csv is not None:
        table = read_labels_csv(labels_csv)
        names: list[str | None] = [table.get(f.rel) for f in files]
        source = "csv"
    else:
        names = [f.folder_label for f in files]
        source = "folders" if any(n is not None for n in names) else "none"
    labels: list[int | None] = []
    unmatched: dict[str, int] = {}
    for name in names:
        index = matcher.match(name) if name is not None else None
        if name is not None and index is None:
            unmatched[name] = unmatched.get(name, 0) + 1
        labels.append(index)
    warnings = tuple(
        f"label {name!r} ({count} image{'s' if count != 1 else ''}) matches no class name; "
        "those images count as unlabeled"
        for name, count in sorted(unmatched.items())
    )
    if source != "none" and all(label is None for label in labels):
        source = "none"
    return LabelResult(tuple(labels), warnings, source)
