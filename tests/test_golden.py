"""Golden HTML: the pages of a fixed tiny build, with versions and paths scrubbed.

When a template changes on purpose, rewrite the files with
``FEATREPORT_UPDATE_GOLDEN=1 pytest tests/test_golden.py`` and review the diff.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from reportgen.config import BuildConfig
from reportgen.pipeline import build, versions

GOLDEN = Path(__file__).with_name("golden")


def scrub(text: str, config: BuildConfig) -> str:
    for _, version in versions():
        text = text.replace(f"<dd>{version}</dd>", "<dd>VERSION</dd>")
    text = text.replace(str(config.images), "IMAGES").replace(str(config.classes_file), "CLASSES")
    return re.sub(r"[^\s\"<>]*/tests/models\.py", "MODELS", text)


@pytest.mark.parametrize("page", ["index.html", "filters.html", "layers/layer-002.html"])
def test_page_matches_golden(tiny_config: BuildConfig, page: str) -> None:
    build(tiny_config)
    text = scrub((tiny_config.out / page).read_text(encoding="utf-8"), tiny_config)
    golden = GOLDEN / page.replace("/", "-")
    if os.environ.get("FEATREPORT_UPDATE_GOLDEN"):
        golden.write_text(text, encoding="utf-8")
    assert golden.is_file(), f"no golden file {golden.name}; run with FEATREPORT_UPDATE_GOLDEN=1"
    assert text == golden.read_text(encoding="utf-8")
