"""The package's shape: arrows one way, ``__all__`` everywhere, pages without torch."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "reportgen"

# Each subpackage may import only from packages of a lower rank: arrows point one way.
RANKS = {
    "errors": 0,
    "timing": 0,
    "report": 1,
    "config": 1,
    "processes": 1,
    "data": 2,
    "analysis": 2,
    "drawing": 2,
    "models": 3,
    "tally": 4,
    "gather": 4,
    "site": 5,
    "pipeline": 6,
    "diff": 7,
    "commands": 8,
}


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__main__.py")


def part_of(path: Path) -> str | None:
    """Name the subpackage (or top-level module) a file belongs to; None for the root."""
    rel = path.relative_to(PACKAGE)
    if rel.parts == ("__init__.py",):
        return None
    return rel.parts[0].removesuffix(".py")


def imported_parts(path: Path) -> set[str]:
    """The subpackages and top-level modules of reportgen that a module imports from."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - node.level + 1]
            target = [*base[1:], *(node.module.split(".") if node.module else [])]
            names = target or [alias.name for alias in node.names]
            found.add(names[0])
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = (
                [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            )
            for name in names:
                if name and name.startswith("reportgen."):
                    found.add(name.split(".")[1])
    return found


def test_every_part_has_a_rank() -> None:
    parts = {part_of(p) for p in modules()} - {None}
    assert parts == set(RANKS)


def test_arrows_point_one_way() -> None:
    wrong = []
    for path in modules():
        part = part_of(path)
        if part is None:
            continue
        for target in imported_parts(path) - {part, "__version__"}:
            if target not in RANKS or RANKS[target] >= RANKS[part]:
                wrong.append(f"{path.relative_to(ROOT)} imports from {target}")
    assert wrong == []


def test_the_import_reader_sees_relative_imports() -> None:
    fake = PACKAGE / "data" / "files.py"
    assert "report" in imported_parts(fake)
    assert "site" not in imported_parts(fake)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_module_declares_all_and_has_its_names(path: Path) -> None:
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    module = importlib.import_module(name)
    assert isinstance(getattr(module, "__all__", None), list), f"{name} lacks __all__"
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert missing == []
    assert module.__all__ == sorted(module.__all__, key=lambda n: (not n.isupper(), n))


PAGES_BY_HAND = """
import sys

class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision"):
            raise ImportError(f"{name} is not available to page building")

sys.meta_path.insert(0, NoTorch())

sys.path.insert(0, "tests")
from handmade import image, layer, moments, report as hand_report
from reportgen.analysis.selection import ClassMistakes, Selection
from reportgen.report.facts import BlockFacts, Correlations, Finding, FilterStats
from reportgen.site import urls
from reportgen.site.choices import SiteChoices
from reportgen.site.pages import PageContext, iter_pages
from reportgen.site.render import render_page

block = BlockFacts(None, "act", "ReLU")
filters = FilterStats((1.0, 1.0, 0.0, 1.0), (2,), ((0, 1, 0.995),), True, 0.4)
conv = layer(
    "stem.conv",
    after=moments([0.5, 0.1, 0.2, 0.0], high=[2.0, 2.0, 2.0, 0.0]),
    block=block,
    filters=filters,
    correlations=Correlations("activation", 64, 640, ((0, 1, 0.97),), 1),
    silent=(3,),
)
finding = Finding("dead_filters", "warning", "A dead filter.", "stem.conv", (2,), (), (1,), (("dead", 1),))
report = hand_report(
    [conv],
    [image(0, 0, 0, path="cat/1.png"), image(2, 0, 1, confidence=0.7, path="dog/2.png")],
    findings=(finding,),
)
selection = Selection((0, 2), (ClassMistakes(1, (2,), (2,), (), 0),))
choices = SiteChoices(selection, {0: ((0, 2),), 2: ((2, 0),)}, 2)
sizes = {}
for i in (0, 2):
    for path in (urls.input_picture(i, "webp"), urls.strip_picture(i, 0, "webp"),
                 urls.mean_picture(i, 0, "webp"), urls.grid_picture(i, 0, "webp")):
        sizes[path] = (8, 8)
sizes[urls.filter_picture(0, "webp")] = (40, 40)
sizes[urls.norm_chart_picture(0)] = sizes[urls.channel_chart_picture(0)] = (900, 240)
ctx = PageContext(report, choices, sizes, "webp", urls.Linker(urls.INDEX, False))
pages = {page.chrome.path: render_page(page) for page in iter_pages(ctx)}
from reportgen.analysis.findings import find
found = find(report)
assert "torch" not in sys.modules
print(sorted(pages))
print(pages["mistakes.html"].count("card wrong"), pages["index.html"].count("HandNet"))
print("0–1 (cos 0.995)" in pages["filters.html"], "notes.txt" in pages["index.html"])
print("A dead filter." in pages["index.html"], "A dead filter." in pages["layers/layer-001.html"])
print(sorted({f.kind for f in found}))
"""


def test_pages_are_built_from_a_report_made_by_hand_without_torch() -> None:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PAGES_BY_HAND)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == str(
        sorted(
            [
                "filters.html",
                "images/image-0001.html",
                "images/image-0003.html",
                "index.html",
                "layers/layer-001.html",
                "mistakes.html",
                "mistakes/class-0002.html",
            ]
        )
    )
    wrong_cards, model_mentions = (int(n) for n in lines[1].split())
    assert wrong_cards == 1 and model_mentions >= 2
    assert lines[2] == "True True"
    assert lines[3] == "True True"  # a finding on the overview and on its layer's page
    # The detectors run without torch, on the hand-made facts.
    assert lines[4] == str(
        ["correlated_channels", "dead_filters", "duplicate_filters", "silent_channels"]
    )
