"""Golden files: every page kind, a single-file site and report.json, of one fixed tiny build.

Versions and local paths are scrubbed. A mismatch writes what was built to
``tests/actual/`` (gitignored), so ``diff -r tests/golden tests/actual`` shows it. When a
page changes on purpose, rewrite the golden files with
``FEATREPORT_UPDATE_GOLDEN=1 pytest tests/test_golden.py`` and review the diff.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch
from helpers import MODELS, draw, image_folder
from models import TinyNet

from reportgen.config import BuildConfig
from reportgen.diff.build import DiffConfig, diff
from reportgen.pipeline import build
from reportgen.report.provenance import versions

GOLDEN = Path(__file__).with_name("golden")
ACTUAL = Path(__file__).with_name("actual")

# One of each page kind, then the single-file site and report.json.
PAGES = [
    ("site", "index.html"),
    ("site", "filters.html"),
    ("site", "mistakes.html"),
    ("site", "mistakes/class-0001.html"),
    ("site", "layers/layer-002.html"),
    ("site", "units/layer-002/channel-0003.html"),
    ("site", "images/image-0002.html"),
    ("single", "index.html"),
    ("site", "report.json"),
    ("diff", "index.html"),
    ("diff", "report.json"),
]


@pytest.fixture(scope="module")
def golden_build(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, BuildConfig]]:
    root = tmp_path_factory.mktemp("golden")
    images = image_folder(root / "images", {"apple": 3, "banana": 3, "cherry": 2})
    draw(images / "loose.png", 50)  # unlabeled: directly in the image folder
    (images / "notes.txt").write_text("not a picture")  # skipped, with its reason
    classes = root / "classes.txt"
    classes.write_text("apple\nbanana\ncherry\n")
    config = BuildConfig.from_options(
        {
            "model": f"{MODELS}:TinyNet",
            "images": images,
            "out": root / "site",
            "weights": "none",
            "classes_file": classes,
            "input_size": 32,
            "batch_size": 3,
            "examples": 4,
            "max_channels": 4,
            "quiet": True,
        }
    )
    single = config.replace(out=root / "single", single_file=True)
    build(config)
    build(single)
    # featreport diff: A untrained (seed 0) against a state dict of other weights.
    with torch.random.fork_rng():
        torch.manual_seed(1)
        torch.save(TinyNet().state_dict(), root / "b.pt")
    compared = config.replace(out=root / "diff")
    diff(DiffConfig(compared, weights_b=str(root / "b.pt")))
    return {
        "site": (config.site.out, config),
        "single": (single.site.out, single),
        "diff": (compared.site.out, compared),
    }


def _rounded(value: object) -> object:
    """Round every float to four significant digits: the sixth differs between CPUs."""
    if isinstance(value, float):
        return float(f"{value:.4g}")
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def scrub(text: str, config: BuildConfig) -> str:
    for _, version in versions():
        text = text.replace(f"<dd>{version}</dd>", "<dd>VERSION</dd>")
        text = text.replace(f'": "{version}"', '": "VERSION"')
    text = text.replace(str(config.data.images), "IMAGES").replace(
        str(config.model.classes_file), "CLASSES"
    )
    # Inlined pictures are scrubbed: their bytes depend on the libwebp version, and the
    # byte-identity of pictures is test_build's concern.
    text = re.sub(r"(data:image/[a-z+]+;base64,)[A-Za-z0-9+/=]+", r"\1DATA", text)
    text = text.replace(str(config.site.out.parent), "ROOT")
    return re.sub(r"[^\s\"<>]*/tests/models\.py", "MODELS", text)


@pytest.mark.parametrize(("site", "page"), PAGES, ids=[f"{s}:{p}" for s, p in PAGES])
def test_page_matches_golden(
    golden_build: dict[str, tuple[Path, BuildConfig]], site: str, page: str
) -> None:
    out, config = golden_build[site]
    text = scrub((out / page).read_text(encoding="utf-8"), config)
    if page.endswith(".json"):
        rounded = _rounded(json.loads(text))
        text = json.dumps(rounded, sort_keys=True, indent=1, ensure_ascii=False) + "\n"
    name = f"{site}-{page.replace('/', '-')}"
    golden = GOLDEN / name
    if os.environ.get("FEATREPORT_UPDATE_GOLDEN"):
        GOLDEN.mkdir(exist_ok=True)
        golden.write_text(text, encoding="utf-8")
    assert golden.is_file(), f"no golden file {name}; run with FEATREPORT_UPDATE_GOLDEN=1"
    if text != golden.read_text(encoding="utf-8"):
        ACTUAL.mkdir(exist_ok=True)
        (ACTUAL / name).write_text(text, encoding="utf-8")
        pytest.fail(f"{page} differs from tests/golden/{name}; see tests/actual/{name}")
