"""The wheel ships the templates and data, and code in it finds them; the code is lint-clean."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (found,) = out.glob("featreport-*.whl")
    return found


def test_wheel_contains_templates_and_data(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = {p.name for p in (ROOT / "templates").iterdir()}
    assert templates, "templates/ is empty"
    for name in templates:
        assert f"reportgen/templates/{name}" in names
    assert "reportgen/data/imagenet_wnids.txt" in names
    assert any(n.endswith("entry_points.txt") for n in names)


def test_installed_wheel_finds_its_own_templates(wheel: Path, tmp_path: Path) -> None:
    zipfile.ZipFile(wheel).extractall(tmp_path)
    code = "from reportgen.site.render import templates_dir; print(templates_dir())"
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=True,
    )
    assert Path(result.stdout.strip()) == tmp_path / "reportgen" / "templates"


def test_source_checkout_finds_templates() -> None:
    from reportgen.site.render import templates_dir

    assert (templates_dir() / "page.html").is_file()


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is in the test extras")
def test_ruff_lint_and_format_are_clean() -> None:
    lint = subprocess.run(["ruff", "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = subprocess.run(
        ["ruff", "format", "--check", "."], cwd=ROOT, capture_output=True, text=True
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


@pytest.mark.skipif(shutil.which("mypy") is None, reason="mypy is in the test extras")
def test_mypy_is_clean() -> None:
    result = subprocess.run(["mypy"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
