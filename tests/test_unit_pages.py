"""Unit pages: each channel's top examples over the folder, checked in pass 2 and drawn."""

from __future__ import annotations

import dataclasses
import html
import random
import re
from pathlib import Path

import pytest
from helpers import assert_clean_error, check_site, cli_args, read_report_json, run
from PIL import Image, ImageDraw

from reportgen.analysis.units import choose_units, purity
from reportgen.report.facts import Example, Finding, UnitExamples

REDS = (0.95, 0.9, 0.85, 0.8, 0.7, 0.6)  # the planted squares' red, most intense first


@pytest.fixture(scope="module")
def squares(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """Twenty gray pictures; six carry a red square, in shuffled file order."""
    root = tmp_path_factory.mktemp("squares") / "images"
    rng = random.Random(4)
    slots = rng.sample(range(20), len(REDS))
    red_paths = []
    for i in range(20):
        folder = "red" if i in slots else "plain"
        path = root / folder / f"img{i:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        gray = rng.randrange(40, 200)
        image = Image.new("RGB", (32, 32), (gray, gray, gray))
        pen = ImageDraw.Draw(image)
        for _ in range(3):
            x, y, v = rng.randrange(28), rng.randrange(28), rng.randrange(256)
            pen.ellipse([x, y, x + 5, y + 5], fill=(v, v, v))
        if i in slots:
            red = REDS[slots.index(i)]
            x, y = rng.randrange(20), rng.randrange(20)
            pen.rectangle([x, y, x + 9, y + 9], fill=(round(255 * red), 0, 0))
            red_paths.append((red, f"red/img{i:02d}.png"))
        image.save(path)
    (root.parent / "classes.txt").write_text("plain\nred\n")
    return root, [p for _, p in sorted(red_paths, reverse=True)]


def build(images: Path, out: Path, *extra: str, model: str = "RedSquareNet") -> dict:
    code, _, err = run(
        *cli_args(
            images,
            out,
            "--input-size",
            "32",
            "--mean",
            "0,0,0",
            "--std",
            "1,1,1",
            "--classes",
            str(images.parent / "classes.txt"),
            "-q",
            *extra,
            model=model,
        )
    )
    assert code == 0, err
    return read_report_json(out)


def test_top_examples_are_the_planted_pattern_in_order_whatever_the_batch_size(
    squares: tuple[Path, list[str]], tmp_path: Path
) -> None:
    images, reds = squares
    runs = [build(images, tmp_path / f"b{b}", "--batch-size", str(b)) for b in (1, 4, 20)]
    units = [r["layers"][0]["points"]["activation"]["units"] for r in runs]
    assert units[0] == units[1] == units[2]
    top = units[0]["top"][0]
    # The six red squares, reddest first; then images where the channel is zero
    # everywhere after the ReLU: a tie, broken by image order.
    assert [path for path, *_ in top[:6]] == reds
    assert [value for _, value, *_ in top[:6]] == pytest.approx([r - 0.2 for r in REDS], abs=0.01)
    plain = sorted(i["path"] for i in runs[0]["images"] if i["path"].startswith("plain/"))
    assert [path for path, *_ in top[6:]] == plain[:3]
    assert all(value == 0 for _, value, *_ in top[6:])
    # The bottom at the conv output: the lowest minima (a bright gray gives −v − 0.2), lowest
    # first; after the ReLU there is none to keep.
    bottom = runs[0]["layers"][0]["points"]["conv"]["units"]["bottom"][0]
    values = [value for _, value, *_ in bottom]
    assert values == sorted(values) and values[-1] < -0.2
    assert runs[0]["layers"][0]["points"]["activation"]["units"]["bottom"] is None


def test_unit_pages_show_the_examples_and_link_from_the_layer(
    squares: tuple[Path, list[str]], tmp_path: Path
) -> None:
    images, reds = squares
    out = tmp_path / "site"
    build(images, out, "--units", "1", "--unit", "conv:0")
    page = out / "units" / "layer-001" / "channel-0000.html"
    text = page.read_text(encoding="utf-8")
    for path in reds:
        assert html.escape(path) in text
    assert "67% red" in text  # purity: six of the nine top images
    drawn = sorted((out / "img" / "units" / "layer-001" / "channel-0000").iterdir())
    assert len([p for p in drawn if p.name.startswith("top-")]) == 9
    assert len([p for p in drawn if p.name.startswith("bottom-")]) == 9
    assert len([p for p in drawn if p.name.startswith("quantile-")]) == 3
    layer = (out / "layers" / "layer-001.html").read_text(encoding="utf-8")
    assert "Unit pages for 2 of 2 channels" in layer or "Unit pages for 1 of 2 channels" in layer
    assert 'href="../units/layer-001/channel-0000.html"' in layer
    # Channel indices in the layer's lists link to the unit pages that exist.
    assert 'title="unit page of channel 0"' in layer
    assert check_site(out) == []


def test_pass_2_refuses_to_draw_what_it_cannot_reproduce(
    squares: tuple[Path, list[str]], tmp_path: Path
) -> None:
    images, _ = squares
    out = tmp_path / "site"
    data = build(images, out, "--batch-size", "10", "--unit", "conv:0", model="ShiftingNet")
    assert any("not drawn: pass 2 did not reproduce" in w for w in data["warnings"])
    text = (out / "units" / "layer-001" / "channel-0000.html").read_text(encoding="utf-8")
    # Every red square's example, among the top and the quantiles alike.
    assert len(re.findall(r"Not drawn: pass 2 gave", text)) >= 6
    # Where the map is zero everywhere, 1.5 × 0 is still 0: those are drawn.
    assert (out / "img" / "units" / "layer-001" / "channel-0000" / "top-07.webp").is_file()
    assert not (out / "img" / "units" / "layer-001" / "channel-0000" / "top-01.webp").exists()


def test_bad_unit_options_are_input_errors(
    squares: tuple[Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import reportgen.pipeline

    def no_inference(*args: object, **kwargs: object) -> None:
        raise AssertionError("a bad --unit must be refused before pass 1")

    monkeypatch.setattr(reportgen.pipeline.Pass1Tally, "run", no_inference)
    images, _ = squares
    base = ("--input-size", "32", "--mean", "0,0,0", "--std", "1,1,1", "-q")
    for extra, needle in (
        (("--units", "some"), "--units 'some'"),
        (("--unit", "nope:1"), "--unit 'nope:1'"),
        (("--unit", "conv:7"), "conv has channels 0 to 1"),
    ):
        code, out, err = run(*cli_args(images, tmp_path / "x", *base, *extra, model="RedSquareNet"))
        assert_clean_error(code, out, err, needle)
        assert code == 2


def test_purity_and_the_choice_of_units_by_hand() -> None:
    from handmade import layer, moments

    labels = {0: 0, 1: 0, 2: 1, 3: None}
    assert purity([Example(i, 1.0, 0, 0) for i in (0, 1, 2, 3)], labels) == (0.5, 0)
    assert purity([], labels) == (0.0, None)
    # Channel 1 is the strongest (highest mean); channel 1's top is two-thirds class 0 and
    # channel 0's too, channel 2's one of each; channel 3 is named by a finding.
    top = tuple(
        tuple(Example(i, 1.0, 0, 0) for i in images)
        for images in ((0, 1, 3), (0, 1, 2), (2, 3, 1), (0, 2, 3))
    )
    record = layer("stem", after=moments([0.1, 0.9, 0.5, 0.2]))
    point = dataclasses.replace(
        record.points[-1], units=UnitExamples(1, 1, top, None, top, (0.5,), 4)
    )
    stem = dataclasses.replace(record, points=(*record.points[:-1], point))
    finding = Finding("dead_channels", "warning", "dead", "stem", (3,))
    chosen = choose_units([stem], "activation", [finding], labels, 3, [(0, 2)])
    reasons = {u.channel: u.reasons for u in chosen}
    assert reasons == {
        0: ("class-selective",),
        1: ("strongest",),
        2: ("asked for",),
        3: ("named in a finding",),
    }
    assert len(choose_units([stem], "activation", [], labels, None, [])) == 4
    # Without labels nothing is class-selective: the strongest fill the places.
    unlabeled = choose_units([stem], "activation", [], dict.fromkeys(labels), 2, [])
    assert [(u.channel, u.reasons) for u in unlabeled] == [(1, ("strongest",)), (2, ("strongest",))]
    assert choose_units([stem], "activation", [], labels, 0, []) == ()


def test_units_all_and_no_examples_at_all(squares: tuple[Path, list[str]], tmp_path: Path) -> None:
    images, _ = squares
    build(images, tmp_path / "all", "--units", "all")
    pages = sorted(p.name for p in (tmp_path / "all" / "units" / "layer-001").iterdir())
    assert pages == ["channel-0000.html", "channel-0001.html"]
    data = build(images, tmp_path / "none", "--unit-examples", "0")
    assert data["layers"][0]["points"]["conv"]["units"] is None
    assert not (tmp_path / "none" / "units").exists()
    layer = (tmp_path / "none" / "layers" / "layer-001.html").read_text(encoding="utf-8")
    assert "the build kept no examples per channel (--unit-examples 0)" in layer
    assert check_site(tmp_path / "none") == []
