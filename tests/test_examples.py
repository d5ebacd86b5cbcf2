"""The shapes example as committed: a trained model that is mostly right, with real mistakes."""

from __future__ import annotations

import html
import re
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from helpers import check_site, read_report_json

from reportgen.commands.cli import main

SHAPES = Path(__file__).resolve().parents[1] / "examples" / "shapes"


def shapes_net() -> type[torch.nn.Module]:
    sys.path.insert(0, str(SHAPES))
    try:
        from model import ShapesNet  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(SHAPES))
        sys.modules.pop("model", None)
    return ShapesNet


def smoothness(weight: torch.Tensor) -> float:
    """Correlation of neighbouring kernel weights: near 0 for noise, high for edges and blobs."""
    w = weight - weight.mean(dim=(2, 3), keepdim=True)
    pairs = (w[..., 1:, :] * w[..., :-1, :]).sum() + (w[..., :, 1:] * w[..., :, :-1]).sum()
    squares = (
        (w[..., 1:, :] ** 2).sum()
        + (w[..., :-1, :] ** 2).sum()
        + (w[..., :, 1:] ** 2).sum()
        + (w[..., :, :-1] ** 2).sum()
    )
    return float(2 * pairs / squares)


def test_committed_files_stay_small() -> None:
    assert (SHAPES / "weights.pt").stat().st_size < 2_000_000
    images = sorted((SHAPES / "images").rglob("*.png"))
    assert 90 <= len(images) <= 110
    assert sum(p.stat().st_size for p in images) < 2_000_000


@pytest.fixture(scope="module")
def shapes_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shapes") / "site"
    result = CliRunner().invoke(
        main,
        [
            "build",
            "--model",
            f"{SHAPES / 'model.py'}:ShapesNet",
            "--weights",
            str(SHAPES / "weights.pt"),
            "--classes",
            str(SHAPES / "classes.txt"),
            "--images",
            str(SHAPES / "images"),
            "--input-size",
            "64",
            "--mean",
            "0.5,0.5,0.5",
            "--std",
            "0.25,0.25,0.25",
            "--out",
            str(out),
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output + result.stderr
    return out


def test_the_trained_model_is_mostly_right(shapes_site: Path) -> None:
    data = read_report_json(shapes_site)
    assert data["model"]["untrained"] is False
    assert data["accuracy"]["labeled_images"] == len(data["images"])
    assert 0.85 <= data["accuracy"]["top1"] <= 0.95
    assert check_site(shapes_site) == []


def test_the_comparison_page_shows_real_mistakes(shapes_site: Path) -> None:
    data = read_report_json(shapes_site)
    wrong = {i["path"] for i in data["images"] if i["correct"] is False}
    compare = (shapes_site / "mistakes.html").read_text(encoding="utf-8")
    card = r'<figure class="card wrong">\s*(?:<a [^>]*>)?<img [^>]*alt="Input image ([^"]+) as'
    cards = re.findall(card, compare)
    assert cards, "no wrong prediction appears on mistakes.html"
    assert set(cards) <= wrong
    # Every mistake is on its true class's page, as a card or in the list under them.
    pages = sorted((shapes_site / "mistakes").glob("class-*.html"))
    text = "".join(page.read_text(encoding="utf-8") for page in pages)
    assert len(pages) == len({i["label"] for i in data["images"] if i["correct"] is False})
    assert all(html.escape(path) in text for path in wrong)


def test_trained_first_layer_filters_are_not_a_fresh_initialization(shapes_site: Path) -> None:
    trained = torch.load(SHAPES / "weights.pt", weights_only=True)["features.0.weight"]
    norms = read_report_json(shapes_site)["layers"][0]["filter_norms"]
    assert norms == pytest.approx(
        torch.linalg.vector_norm(trained.flatten(1), dim=1).tolist(), rel=1e-5
    )
    net = shapes_net()
    # Trained filters are smooth edges and colour blobs; a fresh start is speckle.
    assert smoothness(trained) > 0.45
    for seed in range(5):
        torch.manual_seed(seed)
        assert smoothness(net().features[0].weight.detach()) < 0.2
