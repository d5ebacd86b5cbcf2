from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers import MODELS, image_folder

from reportgen.config import BuildConfig


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """Three labeled classes of small pictures."""
    return image_folder(tmp_path / "images", {"apple": 3, "banana": 3, "cherry": 2})


@pytest.fixture
def classes_file(tmp_path: Path) -> Path:
    path = tmp_path / "classes.txt"
    path.write_text("apple\nbanana\ncherry\n")
    return path


@pytest.fixture
def tiny_config(images: Path, classes_file: Path, tmp_path: Path) -> BuildConfig:
    return BuildConfig.from_options(
        {
            "model": f"{MODELS}:TinyNet",
            "images": images,
            "out": tmp_path / "site",
            "weights": "none",
            "classes_file": classes_file,
            "input_size": 32,
            "batch_size": 3,
            "examples": 4,
            "max_channels": 4,
            "quiet": True,
        }
    )
