"""Helpers the tests share: images drawn on the spot, and a link checker for sites."""

from __future__ import annotations

import json
import random
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

from click.testing import CliRunner
from PIL import Image, ImageDraw

from reportgen.commands.cli import main

MODELS = Path(__file__).with_name("models.py")


def run(*args: str) -> tuple[int, str, str]:
    """Run ``featreport build`` with ``args`` in process; return exit code, stdout, stderr."""
    result = CliRunner().invoke(main, ["build", *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def assert_clean_error(code: int, out: str, err: str, *needles: str) -> None:
    """Check a failure printed one ``Error:`` line holding every needle, and no traceback."""
    assert code != 0
    assert "Traceback" not in out + err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]


def cli_args(
    images: Path, out: Path | None, *extra: str, model: str = "TinyNet", weights: str = "none"
) -> list[str]:
    """Arguments of ``featreport build`` for a model in tests/models.py (or a full spec)."""
    spec = model if ":" in model else f"{MODELS}:{model}"
    args = ["--model", spec, "--images", str(images), "--weights", weights]
    if out is not None:
        args += ["--out", str(out)]
    return [*args, *extra]


def draw(path: Path, seed: int, size: int = 40, mode: str = "RGB") -> None:
    """Write a small picture of a few random rectangles and ellipses."""
    rng = random.Random(seed)
    image = Image.new("RGB", (size, size), tuple(rng.randrange(256) for _ in range(3)))
    pen = ImageDraw.Draw(image)
    for _ in range(4):
        x0, y0 = rng.randrange(size - 8), rng.randrange(size - 8)
        box = (x0, y0, x0 + rng.randrange(4, 20), y0 + rng.randrange(4, 20))
        colour = tuple(rng.randrange(256) for _ in range(3))
        (pen.ellipse if rng.random() < 0.5 else pen.rectangle)(box, fill=colour)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.convert(mode).save(path)


def image_folder(root: Path, classes: dict[str, int], ext: str = "png") -> Path:
    """Make an ImageFolder tree: ``classes`` maps a folder name to how many images it holds."""
    seed = 0
    for name, count in classes.items():
        for i in range(count):
            seed += 1
            draw(root / name / f"img{i}.{ext}", seed)
    return root


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self.ids: set[str] = set()
        self.imgs: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])  # type: ignore[arg-type]
        for key in ("href", "src"):
            if a.get(key):
                self.links.append((tag, a[key]))  # type: ignore[arg-type]
        if tag == "img":
            self.imgs.append(a)


def parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def check_site(site: Path) -> list[str]:
    """Return every problem with the site's links: unresolved files, missing anchors, remote URLs."""
    problems: list[str] = []
    pages = sorted(site.rglob("*.html"))
    parsed = {p: parse(p) for p in pages}
    for page, links in parsed.items():
        for _tag, url in links.links:
            parts = urlsplit(url)
            if parts.scheme == "data":
                continue
            if parts.scheme or parts.netloc or url.startswith("/"):
                problems.append(f"{page.relative_to(site)}: non-relative URL {url}")
                continue
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page.resolve()
            if not target.is_relative_to(site.resolve()):
                problems.append(f"{page.relative_to(site)}: {url} leaves the site")
            elif not target.is_file():
                problems.append(f"{page.relative_to(site)}: {url} does not resolve")
            elif parts.fragment and target.suffix == ".html":
                ids = parsed[target].ids if target in parsed else parse(target).ids
                if unquote(parts.fragment) not in ids:
                    problems.append(
                        f"{page.relative_to(site)}: no #{parts.fragment} in {target.name}"
                    )
        for img in links.imgs:
            for attr in ("alt", "width", "height"):
                if not img.get(attr):
                    problems.append(
                        f"{page.relative_to(site)}: <img {img.get('src')}> lacks {attr}"
                    )
            if img.get("loading") != "lazy":
                problems.append(f"{page.relative_to(site)}: <img {img.get('src')}> is not lazy")
    return problems


def read_report_json(site: Path) -> dict:
    """Read a site's report.json."""
    return json.loads((site / "report.json").read_text(encoding="utf-8"))
