"""End-to-end builds of tiny models: pages, links, report.json, determinism, single file."""

from __future__ import annotations

import hashlib
import html
import re
from pathlib import Path

import pytest
from helpers import MODELS, check_site, draw, image_folder, read_report_json

from reportgen.config import BuildConfig
from reportgen.pipeline import build


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_every_page_exists_and_every_link_resolves(tiny_config: BuildConfig) -> None:
    index = build(tiny_config)
    site = tiny_config.site.out
    assert index == site / "index.html"
    for name in (
        "index.html",
        "filters.html",
        "mistakes.html",
        "report.json",
        ".nojekyll",
        "assets/style.css",
    ):
        assert (site / name).is_file(), name
    data = read_report_json(site)
    assert len(list((site / "layers").glob("*.html"))) == len(data["layers"]) == 3
    assert len(list((site / "images").glob("*.html"))) == 4
    assert check_site(site) == []
    text = (site / "index.html").read_text()
    assert "Untrained weights" in text
    assert "http://" not in text and "https://" not in text


def test_report_json_has_the_documented_fields(tiny_config: BuildConfig) -> None:
    build(tiny_config)
    data = read_report_json(tiny_config.site.out)
    assert data["schema_version"] == 2
    assert len(data["images"]) == 8
    image = data["images"][0]
    assert image["path"] == "apple/img0.png"
    assert image["label"] == "apple"
    assert set(image) >= {"path", "label", "prediction", "confidence", "correct", "top5"}
    assert set(image["properties"]) == {
        "brightness",
        "contrast",
        "hue",
        "saturation",
        "border_brightness",
        "border_hue",
        "centre_minus_border",
    }
    assert 0.0 <= image["properties"]["brightness"] <= 1.0
    assert len(image["top5"]) == 3  # three classes: top-k stops at the class count
    assert image["correct"] == (image["prediction"] == "apple")
    layer = data["layers"][1]
    assert layer["name"] == "features.3"
    assert layer["depth"] == 1
    assert layer["groups"] == 2
    assert layer["output_shape"] == [8, 16, 16]
    # TinyNet's second conv feeds a ReLU module directly: measured before and after it.
    assert layer["block"] == {
        "norm": None,
        "norm_type": None,
        "activation": "features.4",
        "activation_type": "ReLU",
    }
    assert set(layer["points"]) == {"conv", "activation"}
    for point in layer["points"].values():
        assert len(point["channel_mean"]) == len(point["channel_max"]) == 8
        assert set(point) >= {"activation_min", "activation_max", "positive_share", "label"}
    assert layer["points"]["activation"]["activation_min"] >= 0.0
    assert len(layer["filter_norms"]) == 8
    assert data["layers"][0]["block"]["norm_type"] == "BatchNorm2d"
    assert data["layers"][0]["points"]["activation"]["label"] == "after BatchNorm2d and ReLU"
    assert isinstance(data["findings"], list)
    for key in (
        "dead_channels",
        "silent_channels",
        "correlated_channels",
        "dead_filters",
        "duplicate_filters",
        "in_channels",
        "out_channels",
        "kernel_size",
        "stride",
        "type",
    ):
        assert key in layer
    acc = data["accuracy"]
    correct = sum(i["correct"] for i in data["images"])
    assert acc["top1"] == pytest.approx(correct / 8)
    assert acc["top5"] == 1.0
    assert data["skipped"] == []


def test_unreadable_files_are_skipped_with_their_reason(tiny_config: BuildConfig) -> None:
    images = tiny_config.data.images
    (images / "apple" / "empty.png").write_bytes(b"")
    (images / "apple" / "text.jpg").write_text("not a jpeg at all")
    good = (images / "apple" / "img0.png").read_bytes()
    (images / "banana" / "truncated.png").write_bytes(good[: len(good) // 2])
    (images / "notes.txt").write_text("hello")
    build(tiny_config)
    skipped = {s["path"]: s["reason"] for s in read_report_json(tiny_config.site.out)["skipped"]}
    assert set(skipped) == {
        "apple/empty.png",
        "apple/text.jpg",
        "banana/truncated.png",
        "notes.txt",
    }
    assert "empty" in skipped["apple/empty.png"]
    assert "not an image" in skipped["notes.txt"]
    index = (tiny_config.site.out / "index.html").read_text()
    assert "banana/truncated.png" in index
    assert len(read_report_json(tiny_config.site.out)["images"]) == 8


def test_same_inputs_give_a_byte_identical_site(tiny_config: BuildConfig, tmp_path: Path) -> None:
    build(tiny_config)
    first = tree_digest(tiny_config.site.out)
    again = tiny_config.replace(out=tmp_path / "again")
    build(again)
    assert tree_digest(again.site.out) == first
    assert "Built" not in (again.site.out / "index.html").read_text()


def test_source_date_epoch_is_the_only_clock(
    tiny_config: BuildConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    build(tiny_config)
    assert "2023-11-14 22:13 UTC" in (tiny_config.site.out / "index.html").read_text()
    assert read_report_json(tiny_config.site.out)["built_at"] == "2023-11-14 22:13 UTC"


def test_single_file_inlines_everything(tiny_config: BuildConfig) -> None:
    build(tiny_config.replace(single_file=True, image_format="png"))
    site = tiny_config.site.out
    htmls = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html"))
    assert htmls == ["index.html"]
    assert not (site / "img").exists()
    text = (site / "index.html").read_text()
    assert text.count("data:image/png;base64,") > 20
    assert check_site(site) == []  # every #fragment link finds its id
    assert '<link rel="stylesheet"' not in text and "<style>" in text


def test_png_format_and_layer_glob(tiny_config: BuildConfig) -> None:
    build(tiny_config.replace(image_format="png", layers=("features.0", "features.5")))
    site = tiny_config.site.out
    assert [layer["name"] for layer in read_report_json(site)["layers"]] == [
        "features.0",
        "features.5",
    ]
    assert list(site.rglob("*.png")) and not list(site.rglob("*.webp"))
    assert check_site(site) == []


def test_names_are_escaped_and_never_used_as_file_names(
    tiny_config: BuildConfig, tmp_path: Path
) -> None:
    hostile = '<script>alert("x")</script>'
    images = tmp_path / "images"
    draw(images / "apple" / f"{hostile}.png", 1)
    draw(images / "apple" / "..%2e & 'quote'.png", 2)
    draw(images / "banana" / "b.png", 3)
    config = tiny_config.replace(images=images, examples=3)
    build(config)
    site = config.site.out
    pages = [p.read_text() for p in site.rglob("*.html")]
    assert all("<script>" not in p for p in pages)
    assert any(html.escape(hostile, quote=False) in p or "&lt;script&gt;" in p for p in pages)
    for path in site.rglob("*"):
        assert "script" not in path.name and "quote" not in path.name
    assert check_site(site) == []


def test_unlabeled_images_build_and_compare_page_asks_for_labels(
    tiny_config: BuildConfig, tmp_path: Path
) -> None:
    images = tmp_path / "flat"
    for i in range(3):
        draw(images / f"{i}.png", i)
    config = tiny_config.replace(images=images, classes_file=None)
    build(config)
    compare = (config.site.out / "mistakes.html").read_text()
    assert "needs true labels" in compare
    data = read_report_json(config.site.out)
    assert data["accuracy"]["top1"] is None
    assert all(i["label"] is None and i["correct"] is None for i in data["images"])
    assert data["classes"] == ["0", "1", "2"]


def test_compare_page_puts_wrong_beside_correct(tiny_config: BuildConfig, tmp_path: Path) -> None:
    images = image_folder(tmp_path / "more", {"apple": 12, "banana": 12, "cherry": 12})
    config = tiny_config.replace(images=images, examples=12, seed=3)
    build(config)
    site = config.site.out
    data = read_report_json(site)
    wrong = [i for i in data["images"] if i["correct"] is False]
    assert wrong, "an untrained 3-class model gets some of 36 images wrong"
    compare = (site / "mistakes.html").read_text()
    first = max((i for i in wrong), key=lambda i: i["confidence"])
    assert html.escape(first["path"]) in compare
    assert "Confusion matrix" in compare
    sections = re.findall(r'<section class="comparerow" id="class-(\d+)"', compare)
    assert sections and len(set(sections)) == len(sections)
    # The pairs come before the cards, and every confusion-matrix count links to its pair.
    assert compare.index("Most confused pairs") < compare.index('class="comparerow"')
    links = re.findall(
        r'<td class="off"[^>]*><a href="mistakes/class-(\d+)\.html#taken-for-(\d+)"', compare
    )
    assert len(links) == len({(i["label_index"], i["prediction_index"]) for i in wrong})
    # Every wrong prediction is on its true class's page: drawn as a card or listed.
    for image in wrong:
        page = (site / f"mistakes/class-{image['label_index'] + 1:04d}.html").read_text()
        assert html.escape(image["path"]) in page, image["path"]
    crowded = max(
        {i["label_index"] for i in wrong}, key=lambda c: sum(i["label_index"] == c for i in wrong)
    )
    page = (site / f"mistakes/class-{crowded + 1:04d}.html").read_text()
    total = sum(i["label_index"] == crowded for i in wrong)
    assert total > 8, "the untrained model crowds one class with mistakes"
    assert f"8 of the {total} are drawn as cards" in page
    assert page.count('class="card wrong"') == 8
    assert check_site(site) == []


def test_python_api_accepts_a_module(tmp_path: Path, images: Path) -> None:
    import sys

    sys.path.insert(0, str(MODELS.parent))
    from models import TinyNet

    from reportgen import build_report

    model = TinyNet()
    model.train()
    index = build_report(model, images, tmp_path / "api-site", input_size=32, examples=2)
    assert index.is_file()
    assert model.training, "the caller's training flag is restored"
    assert read_report_json(tmp_path / "api-site")["model"]["name"] == "TinyNet"


def test_out_inside_the_image_folder_is_not_read_as_input(tiny_config: BuildConfig) -> None:
    config = tiny_config.replace(out=tiny_config.data.images / "report")
    build(config)
    build(config)  # the second build must not see the first one's pictures
    paths = [i["path"] for i in read_report_json(config.site.out)["images"]]
    assert len(paths) == 8 and not any(p.startswith("report/") for p in paths)
    assert not any(
        s["path"].startswith("report/") for s in read_report_json(config.site.out)["skipped"]
    )


def test_labels_from_csv(tiny_config: BuildConfig, tmp_path: Path) -> None:
    csv = tmp_path / "labels.csv"
    csv.write_text(
        "path,label\napple/img0.png,cherry\nbanana/img1.png,Banana\nbanana/img2.png,durian\n"
    )
    build(tiny_config.replace(labels_file=csv))
    images = {i["path"]: i["label"] for i in read_report_json(tiny_config.site.out)["images"]}
    assert images["apple/img0.png"] == "cherry"  # the CSV wins over the folder
    assert images["banana/img1.png"] == "banana"  # matched without regard to case
    assert images["banana/img2.png"] is None  # no class "durian": unlabeled, with a warning
    assert images["apple/img1.png"] is None  # not in the CSV
    assert "durian" in read_report_json(tiny_config.site.out)["warnings"][0]


def test_no_showcased_images_still_gives_a_linked_site(tiny_config: BuildConfig) -> None:
    build(tiny_config.replace(examples=0))
    site = tiny_config.site.out
    assert not (site / "images").exists()
    assert check_site(site) == []
    index = (site / "index.html").read_text()
    assert "no depth overview" in index
    assert "Correct vs wrong" in (site / "mistakes.html").read_text()
