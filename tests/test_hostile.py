"""Hostile and broken inputs: any file and class name, an image zoo, unwritable output.

A build must never die on a bad file, never let a name escape into markup or a path,
and never write outside ``--out``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import struct
import tempfile
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest
from helpers import MODELS, assert_clean_error, check_site, cli_args, draw, read_report_json, run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from reportgen.config import BuildConfig
from reportgen.data.decode import load_image
from reportgen.errors import OutputError
from reportgen.pipeline import build

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"


def hostile_config(images: Path, out: Path, **changes: object) -> BuildConfig:
    """A small, quick build of TinyNet, with ``changes`` to its options."""
    options = {
        "model": f"{MODELS}:TinyNet",
        "images": images,
        "out": out,
        "weights": "none",
        "input_size": 16,
        "batch_size": 8,
        "examples": 12,
        "max_channels": 2,
        "quiet": True,
    }
    return BuildConfig.from_options({**options, **changes})


def tree(root: Path, skip: Path | None = None) -> dict[str, str]:
    """Every file under ``root`` (but not under ``skip``) with a hash of its bytes."""
    found = {}
    for path in sorted(root.rglob("*")):
        if skip is not None and (path == skip or skip in path.parents):
            continue
        if path.is_file():
            found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            found[str(path.relative_to(root))] = "dir"
    return found


# --- Names: hypothesis. -------------------------------------------------------------------


class _Markup(HTMLParser):
    """Collect every tag and attribute name, and all text and attribute values."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.attributes: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for name, value in attrs:
            self.attributes.add(name)
            self.text.append(value or "")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _template_vocabulary() -> tuple[set[str], set[str]]:
    """The tags and attribute names featreport's templates can produce: nothing else may appear."""
    source = "\n".join(p.read_text(encoding="utf-8") for p in TEMPLATES.glob("*.html"))
    source = re.sub(r"{%.*?%}|{{.*?}}|{#.*?#}", " ", source, flags=re.S)
    tags = set(re.findall(r"<([a-z][a-z0-9]*)", source))
    attributes = set(re.findall(r"\s([a-z][a-z-]*)=\"", source))
    return tags, attributes


TAGS, ATTRIBUTES = _template_vocabulary()

SPECIAL_NAMES = [
    "<script>alert(1)",
    "<img src=x onerror=alert(1)>",
    "\"quoted\" & 'single'",
    "..x",
    "%2e%2e",
    "%2F..%2Fescape",
    ".hidden",
    "_under",
    "a" * 200,
    "back\\slash",
    "spaces  and\ttab",
    "new\nline",
    "Ünïcödé 漢字 😀",
    "&lt;already-escaped&gt;",
    "javascript:alert(1)",
    "CON",
]


def _fits(name: str) -> bool:
    return "/" not in name and name not in (".", "..") and len(name.encode("utf-8")) <= 200


names = st.one_of(
    st.sampled_from(SPECIAL_NAMES),
    st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"),
        min_size=1,
        max_size=40,
    ),
).filter(_fits)


@settings(
    max_examples=int(os.environ.get("FEATREPORT_HYPOTHESIS_EXAMPLES", "20")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    classes=st.lists(names.filter(lambda n: n != "spare"), min_size=2, max_size=2, unique=True),
    files=st.lists(names, min_size=1, max_size=3, unique_by=str.lower),
    case_twin=st.booleans(),
)
def test_any_names_build_a_site_that_shows_them_escaped(
    classes: list[str], files: list[str], case_twin: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        images = root / "images"
        wanted: set[str] = set()
        seed = 0
        for k, cls in enumerate(classes):
            for name in files:
                seed += 1
                draw(images / cls / f"{name}.png", seed, size=16)
                wanted.add(f"{cls}/{name}.png")
            if case_twin and k == 0 and files[0].upper() != files[0]:
                draw(images / cls / f"{files[0].upper()}.png", 999, size=16)
                wanted.add(f"{cls}/{files[0].upper()}.png")
        class_file = root / "classes.json"
        class_file.write_text(json.dumps([*classes, "spare"]), encoding="utf-8")
        before = tree(root)
        out = root / "out"

        build(hostile_config(images, out, classes_file=class_file, examples=len(wanted)))

        # Nothing was written outside --out, nothing inside the image folder changed.
        assert tree(root, skip=out) == before
        data = read_report_json(out)
        assert {i["path"] for i in data["images"]} == wanted
        assert {i["label"] for i in data["images"]} == set(classes)
        assert check_site(out) == []
        for page in out.rglob("*.html"):
            # Generated file names never come from user names.
            assert re.fullmatch(r"[a-z0-9/-]+\.html", str(page.relative_to(out)))
            markup = _Markup()
            markup.feed(page.read_text(encoding="utf-8"))
            assert markup.tags <= TAGS, f"{page.name}: tags from user text {markup.tags - TAGS}"
            assert markup.attributes <= ATTRIBUTES, markup.attributes - ATTRIBUTES
        index = _Markup()
        index.feed((out / "index.html").read_text(encoding="utf-8"))
        shown = "\n".join(index.text)
        for rel in wanted:
            # Pages are read as a browser reads them: CR and CRLF become LF.
            text = rel.replace("\r\n", "\n").replace("\r", "\n")
            assert text in shown, f"{rel!r} is not shown as text on the overview page"
        compare = _Markup()
        compare.feed((out / "mistakes.html").read_text(encoding="utf-8"))
        for cls in classes:
            assert cls.replace("\r\n", "\n").replace("\r", "\n") in "\n".join(compare.text)


# --- The image zoo. --------------------------------------------------------------------------


def _png_header_only(path: Path, width: int, height: int) -> None:
    """Write a PNG that declares ``width``×``height`` pixels but holds almost no data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


def make_zoo(root: Path) -> dict[str, str | None]:
    """Write every awkward kind of image; map each file to the reason it is skipped, or None."""
    root.mkdir(parents=True)
    Image.new("RGB", (64, 48), (200, 30, 30)).save(root / "whole.jpg", quality=90)
    full = (root / "whole.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(full[: len(full) // 2])
    (root / "zero.jpg").write_bytes(b"")
    (root / "text.jpg").write_text("this is a text file, renamed\n")
    Image.new("CMYK", (20, 20), (255, 0, 0, 0)).save(root / "cmyk.jpg")
    Image.new("I;16", (20, 20), 50000).save(root / "deep16.png")
    palette = Image.new("P", (20, 20), 0)
    palette.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    palette.paste(1, (10, 0, 20, 20))
    palette.save(root / "palette.png", transparency=0)
    frames = [Image.new("RGB", (16, 16), c) for c in ((0, 0, 255), (255, 0, 0), (0, 255, 0))]
    frames[0].save(root / "animated.gif", save_all=True, append_images=frames[1:], duration=40)
    Image.new("RGB", (1, 1), (9, 99, 199)).save(root / "one-pixel.png")
    _png_header_only(root / "bomb.png", 40_000, 40_000)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (40, 20), (0, 90, 0)).save(root / "exif-rotated.jpg", exif=exif)
    Image.new("RGBA", (20, 20), (0, 0, 255, 0)).save(root / "rgba.png")
    Image.new("L", (20, 20), 128).save(root / "gray.png")
    return {
        "whole.jpg": None,
        "truncated.jpg": "cannot be decoded",
        "zero.jpg": "empty file (0 bytes)",
        "text.jpg": "not an image Pillow can identify",
        "cmyk.jpg": None,
        "deep16.png": None,
        "palette.png": None,
        "animated.gif": None,
        "one-pixel.png": None,
        "bomb.png": "refused: too many pixels, possibly a decompression bomb",
        "exif-rotated.jpg": None,
        "rgba.png": None,
        "gray.png": None,
    }


def test_each_image_in_the_zoo_is_read_correctly(tmp_path: Path) -> None:
    make_zoo(tmp_path / "zoo")
    zoo = tmp_path / "zoo"

    def rgb(name: str) -> Image.Image:
        loaded = load_image(zoo / name, "RGB")
        assert isinstance(loaded, Image.Image), f"{name}: {loaded}"
        assert loaded.mode == "RGB"
        return loaded

    cyan = rgb("cmyk.jpg").getpixel((10, 10))
    assert cyan[0] < 40 and cyan[1] > 200 and cyan[2] > 200, cyan  # C=100% is cyan, not red
    assert rgb("deep16.png").getpixel((0, 0)) == (195, 195, 195)  # 50000/65535, not clipped to 255
    palette = rgb("palette.png")
    assert palette.getpixel((2, 2)) == (
        255,
        255,
        255,
    )  # transparent: white, not the palette's black
    assert palette.getpixel((15, 2)) == (0, 255, 0)
    assert rgb("animated.gif").getpixel((8, 8))[2] > 200  # the first frame, blue
    assert rgb("one-pixel.png").size == (1, 1)
    assert rgb("exif-rotated.jpg").size == (20, 40)  # shown upright
    assert rgb("rgba.png").getpixel((5, 5)) == (255, 255, 255)  # fully transparent blue
    gray = rgb("gray.png").getpixel((3, 3))
    assert gray == (128, 128, 128)
    one_channel = load_image(zoo / "cmyk.jpg", "L")
    assert isinstance(one_channel, Image.Image) and one_channel.mode == "L"


@pytest.mark.parametrize("model", ["TinyNet", "GrayNet"])
def test_the_zoo_builds_and_every_bad_file_is_skipped_with_its_reason(
    tmp_path: Path, model: str
) -> None:
    expected = make_zoo(tmp_path / "zoo")
    out = tmp_path / "site"
    build(hostile_config(tmp_path / "zoo", out, model=f"{MODELS}:{model}"))
    data = read_report_json(out)
    assert sorted(i["path"] for i in data["images"]) == sorted(
        name for name, reason in expected.items() if reason is None
    )
    skipped = {s["path"]: s["reason"] for s in data["skipped"]}
    assert sorted(skipped) == sorted(name for name, reason in expected.items() if reason)
    for name, reason in skipped.items():
        assert reason.startswith(expected[name] or "?"), (name, reason)
    index = (out / "index.html").read_text(encoding="utf-8")
    assert all(name in index for name in skipped)
    assert check_site(out) == []


# --- Output that cannot be written. ----------------------------------------------------------


def test_an_unwritable_out_gives_a_clear_error(tmp_path: Path) -> None:
    images = tmp_path / "images"
    for i in range(2):
        draw(images / "apple" / f"{i}.png", i)
    if os.geteuid() == 0:
        # Root writes through permission bits; a read-only mount stops it.
        locked = Path("/sys")
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
    before = sorted(locked.iterdir())
    code, out, err = run(*cli_args(images, locked / "site", "--input-size", "16", "-q"))
    assert_clean_error(code, out, err, f"cannot write in {locked} (", "choose an --out")
    assert sorted(locked.iterdir()) == before


def small_site(root: Path) -> tuple[Path, Path]:
    """Build a site of two pictures in ``root``; return the image folder and the site."""
    images = root / "images"
    for i in range(2):
        draw(images / "apple" / f"{i}.png", i)
    build(hostile_config(images, root / "site"))
    return images, root / "site"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may replace a folder whatever its permissions")
def test_a_site_that_cannot_be_replaced_is_refused_before_any_work(tmp_path: Path) -> None:
    images, site = small_site(tmp_path)
    before = tree(site)
    site.chmod(0o555)
    try:
        code, out, err = run(*cli_args(images, site, "--input-size", "16", "-q"))
    finally:
        site.chmod(0o755)
    assert_clean_error(code, out, err, f"cannot replace --out {site}")
    assert tree(site) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "site"]


def test_a_full_disk_gives_a_clear_error_and_keeps_the_old_site(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images, out = small_site(tmp_path)
    before = tree(out)
    real_write = Path.write_bytes

    def full(self: Path, data: bytes) -> int:
        if self.suffix == ".html":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(OutputError, match="No space left on device") as caught:
        build(hostile_config(images, out, seed=1))
    assert "free some space" in str(caught.value)
    assert tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "site"]


def test_the_site_writer_refuses_names_that_leave_the_site(tmp_path: Path) -> None:
    from reportgen.errors import OutputError
    from reportgen.site.writer import SiteWriter

    with SiteWriter(tmp_path / "site") as site:
        for rel in ("../x.html", "/etc/x.html", "a/../../x.html", "a\\..\\..\\x.html", ""):
            with pytest.raises(OutputError, match="outside the output folder"):
                site.write_text(rel, "no")
        site.write_text("a/b/ok.html", "yes")
        site.publish()
    assert (tmp_path / "site" / "a" / "b" / "ok.html").read_text() == "yes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]
