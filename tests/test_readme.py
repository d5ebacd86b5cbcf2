"""Every command in README.md, run as written, in a copy of the examples.

Each fenced block in the README is marked by the comment line above it:
``<!-- ci: NAME -->`` blocks are run by ``.ci/run``, ``<!-- test: NAME -->`` blocks here,
and ``<!-- file: PATH -->`` blocks must equal that file. An unmarked block fails the suite,
so a command cannot be added to the README without being run somewhere.

Commands run in a subprocess whose PATH starts with this interpreter's folder, so
``featreport`` and ``python`` are the ones under test. Nothing may be downloaded: torchvision's
cache (``TORCH_HOME``) holds a resnet18 state dict made here (random weights, the
expected file name), and the proxy variables point at a closed port.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torchvision
from helpers import MODELS, check_site, read_report_json
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RESNET_FILE = "resnet18-f37072fd.pth"

BLOCK = re.compile(r"^<!-- (ci|test|file): (\S+) -->\n```(\w*)\n(.*?)^```$", re.M | re.S)
FENCE_OPEN = re.compile(r"^```(\w*)$", re.M)


@dataclass(frozen=True)
class Block:
    kind: str
    name: str
    language: str
    text: str


def readme_blocks() -> dict[str, Block]:
    blocks = [Block(*m.groups()) for m in BLOCK.finditer(README.read_text(encoding="utf-8"))]
    names = [b.name for b in blocks]
    assert len(names) == len(set(names)), f"README block names repeat: {names}"
    return {b.name: b for b in blocks}


def test_every_code_block_in_the_readme_is_marked() -> None:
    text = README.read_text(encoding="utf-8")
    # Every other fence line closes a block; the opening ones must follow a marker.
    openings = [m for i, m in enumerate(FENCE_OPEN.finditer(text)) if i % 2 == 0]
    marked = {text.index("```", m.start()) for m in BLOCK.finditer(text)}
    unmarked = [text.count("\n", 0, m.start()) + 1 for m in openings if m.start() not in marked]
    assert openings, "README.md has no code blocks?"
    assert unmarked == [], (
        f"README.md code blocks without a ci/test/file marker, at lines {unmarked}"
    )
    blocks = readme_blocks()
    assert {b.name for b in blocks.values() if b.kind == "ci"} == {"build", "test"}
    tested = {b.name for b in blocks.values() if b.kind == "test"}
    assert tested == set(RUNS_HERE), "each test: block needs a test below, and each test a block"


def test_file_blocks_show_the_files_as_they_are() -> None:
    files = [b for b in readme_blocks().values() if b.kind == "file"]
    assert files
    for block in files:
        assert block.text == (ROOT / block.name).read_text(encoding="utf-8"), block.name


def test_the_ci_build_command_builds_the_trained_shapes_example() -> None:
    command = readme_blocks()["build"].text
    assert "--config examples/shapes/featreport.toml" in command
    toml = (ROOT / "examples" / "shapes" / "featreport.toml").read_text(encoding="utf-8")
    assert 'weights = "weights.pt"' in toml
    assert (ROOT / ".ci" / "run").read_text().count("readme_command build") == 1


@pytest.fixture(scope="module")
def resnet_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).state_dict()


@pytest.fixture
def sandbox(tmp_path: Path, resnet_state: dict[str, torch.Tensor]) -> Path:
    """A working folder with a copy of examples/, a resnet18 file and a filled torch cache."""
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    shutil.copytree(ROOT / "benchmarks", tmp_path / "benchmarks")
    torch.save(resnet_state, tmp_path / RESNET_FILE)
    cache = tmp_path / "torch-home" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    shutil.copy(tmp_path / RESNET_FILE, cache / RESNET_FILE)
    return tmp_path


def run(name: str, cwd: Path, extra: str = "") -> str:
    """Run a README block as written (plus ``extra`` arguments) and return its output."""
    block = readme_blocks()[name]
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["TORCH_HOME"] = str(cwd / "torch-home")
    for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env[proxy] = "http://127.0.0.1:9"
    env.pop("NO_PROXY", None)
    env.pop("no_proxy", None)
    if block.language == "python":
        first = block.text.splitlines()[0]
        script = cwd / (first[2:].strip() if first.startswith("# ") else f"{name}.py")
        script.write_text(block.text, encoding="utf-8")
        if script.name != f"{name}.py":
            return ""  # a module for a later command, not a script
        argv = [sys.executable, str(script)]
    else:
        argv = ["bash", "-euo", "pipefail", "-c", block.text.rstrip("\n") + extra]
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"README block {name!r} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def shapes_build_command() -> str:
    """The featreport part of the README's ci: build command."""
    return readme_blocks()["build"].text.split("&&")[-1].strip()


def build_shapes_report(cwd: Path, *extra: str) -> None:
    """Build shapes-report in ``cwd`` with the README's own command (quietly), plus ``extra``."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    subprocess.run(
        ["bash", "-c", " ".join([shapes_build_command(), "-q", *extra])],
        cwd=cwd,
        env={**os.environ, "PATH": path},
        check=True,
    )


def test_photos(sandbox: Path) -> None:
    out = run("photos", sandbox)
    site = sandbox / "photos-report"
    assert Path(out.strip()) == site / "index.html"
    data = read_report_json(site)
    assert data["model"]["weights"] == "torchvision ResNet18_Weights.IMAGENET1K_V1"
    labels = {i["path"]: i["label"] for i in data["images"]}
    assert labels == {
        "astronaut.jpg": None,
        "espresso/coffee.jpg": "espresso",
        "missile/rocket.jpg": "missile",
        "tabby/chelsea.jpg": "tabby",
        "tripod/camera.jpg": "tripod",
    }
    assert data["warnings"] == []
    assert [s["path"] for s in data["skipped"]] == ["SOURCES.md", "labels.csv"]
    assert check_site(site) == []


def test_labels_csv(sandbox: Path) -> None:
    run("labels-csv", sandbox)
    data = read_report_json(sandbox / "photos-report")
    assert data["label_source"] == "csv"
    assert data["warnings"] == []
    labels = {i["path"]: i["label"] for i in data["images"]}
    assert labels["tabby/chelsea.jpg"] == "tabby"  # by WordNet id
    assert labels["tripod/camera.jpg"] == "tripod"  # ignoring case
    assert labels["missile/rocket.jpg"] == "missile"
    assert labels["astronaut.jpg"] is None


def test_own_model(sandbox: Path) -> None:
    out = run("own-model", sandbox)
    site = sandbox / "shapes-review"
    assert Path(out.strip()) == site / "index.html"
    assert sorted(p.name for p in site.iterdir() if not p.name.startswith(".")) == [
        "index.html",
        "report.json",
    ]
    assert "data:image/webp;base64," in (site / "index.html").read_text(encoding="utf-8")
    assert 0.85 <= read_report_json(site)["accuracy"]["top1"] <= 0.95
    assert check_site(site) == []


def test_python_api(sandbox: Path) -> None:
    out = run("python-api", sandbox)
    site = sandbox / "notebook-report"
    assert Path(out.strip()) == site / "index.html"
    data = read_report_json(site)
    assert len(data["images"]) == 5
    assert data["model"]["untrained"] is False
    assert check_site(site) == []


def test_zip(sandbox: Path) -> None:
    build_shapes_report(sandbox)
    run("zip", sandbox)
    with zipfile.ZipFile(sandbox / "shapes-report.zip") as archive:
        names = set(archive.namelist())
        unpacked = sandbox / "unpacked"
        archive.extractall(unpacked)
    assert {"shapes-report/index.html", "shapes-report/report.json"} <= names
    site = sandbox / "shapes-report"
    assert sorted(p.relative_to(site) for p in site.rglob("*") if p.is_file()) == sorted(
        p.relative_to(unpacked / "shapes-report")
        for p in (unpacked / "shapes-report").rglob("*")
        if p.is_file()
    )
    assert check_site(unpacked / "shapes-report") == []


def test_offline_weights(sandbox: Path, resnet_state: dict[str, torch.Tensor]) -> None:
    shutil.rmtree(sandbox / "torch-home")  # the file named on the command line is enough
    run("offline-weights", sandbox)
    data = read_report_json(sandbox / "photos-report")
    assert RESNET_FILE in data["model"]["weights"]
    expected = torch.linalg.vector_norm(resnet_state["conv1.weight"].flatten(1), dim=1)
    assert data["layers"][0]["filter_norms"] == pytest.approx(expected.tolist(), rel=1e-5)
    # A state dict for a torchvision architecture keeps ImageNet's class names.
    assert data["classes"][281] == "tabby"


def test_low_memory(sandbox: Path) -> None:
    run("low-memory", sandbox)
    site = sandbox / "photos-report"
    assert read_report_json(site)["model"]["device"] == "cpu"
    assert len(list((site / "images").glob("*.html"))) == 3


FUSION = """
import torch
from torch import nn


class FusionNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=4)
        self.meta = nn.Linear(8, 4)
        self.head = nn.Linear(4, 3)

    def forward(self, image: torch.Tensor, metadata: torch.Tensor) -> torch.Tensor:
        pooled = self.conv(image).mean(dim=(2, 3))
        return self.head(pooled + self.meta(metadata))
"""


def test_wrapper(sandbox: Path) -> None:
    (sandbox / "fusion.py").write_text(FUSION, encoding="utf-8")
    sys.path.insert(0, str(sandbox))
    try:
        from fusion import FusionNet  # type: ignore[import-not-found]

        torch.manual_seed(1)
        state = FusionNet().state_dict()
    finally:
        sys.path.remove(str(sandbox))
        sys.modules.pop("fusion", None)
    torch.save(state, sandbox / "fusion.pt")
    run("wrapper", sandbox)
    assert (sandbox / "wrapper.py").is_file()
    run("wrapper-build", sandbox)
    data = read_report_json(sandbox / "fusion-report")
    assert [layer["name"] for layer in data["layers"]] == ["net.conv"]
    expected = torch.linalg.vector_norm(state["conv.weight"].flatten(1), dim=1)
    assert data["layers"][0]["filter_norms"] == pytest.approx(expected.tolist(), rel=1e-5)


def test_make_images(sandbox: Path) -> None:
    images = sandbox / "examples" / "shapes" / "images"
    shutil.rmtree(images)
    run("make-images", sandbox)
    committed = ROOT / "examples" / "shapes" / "images"
    made = sorted(p.relative_to(images) for p in images.rglob("*.png"))
    assert made == sorted(p.relative_to(committed) for p in committed.rglob("*.png"))
    assert len(made) == 100
    for rel in made:
        with Image.open(images / rel) as a, Image.open(committed / rel) as b:
            assert a.tobytes() == b.tobytes(), f"{rel} differs from the committed picture"


def test_train(sandbox: Path) -> None:
    # The README's command as written trains for about two minutes; here it runs as
    # written but with a small data set and one epoch, to prove the script works end to end.
    weights = sandbox / "examples" / "shapes" / "weights.pt"
    weights.unlink()
    out = run("train", sandbox, extra=" --per-class 8 --epochs 1")
    assert "epoch 1/1" in out
    assert "eval accuracy" in out
    state = torch.load(weights, weights_only=True)
    committed = torch.load(ROOT / "examples" / "shapes" / "weights.pt", weights_only=True)
    assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in committed.items()}


def test_diff(sandbox: Path) -> None:
    out = run("diff", sandbox)
    site = sandbox / "shapes-diff"
    assert Path(out.strip()) == site / "index.html"
    assert check_site(site) == []
    document = read_report_json(site)
    assert document["schema_version"] == 1 and document["aligned"] is True
    layers = document["layers"]
    first, last = layers[0], layers[-1]
    # Early layers mostly reflect the input; the deepest is barely above unrelated images.
    assert first["cka"]["value"] > first["shuffled"] + 0.2
    assert first["cka"]["low"] <= first["cka"]["value"] <= first["cka"]["high"]
    assert last["cka"]["value"] - last["shuffled"] < 0.1
    assert all(layer["shuffled"] < 0.2 for layer in layers)
    # A and B are two models, not one compared with itself: every layer differs.
    assert all(layer["cka"]["value"] < 0.99 for layer in layers)
    assert all(layer["mean_cosine_drift"] > 0.05 for layer in layers)
    assert document["a"]["top1"] > 0.8 and document["b"]["untrained"] is True
    assert len(document["flips"]["a_right_b_wrong"]) > len(document["flips"]["a_wrong_b_right"])
    page = (site / "index.html").read_text(encoding="utf-8")
    assert "shuffled reference" in page and "Kornblith" in page
    assert "features.0" in page and "A right, B wrong" in page


def test_benchmark(sandbox: Path) -> None:
    # The README's command as written runs for minutes; here it runs as written with a
    # small image set and a tiny model (its seven child builds cost mostly their imports),
    # to prove the script works and prints every figure it promises.
    out = run(
        "benchmark",
        sandbox,
        extra=" --images 8 --size 64 --input-size 64 --memory 8,12 --examples-memory 2,6"
        f" --tutorial-images 1 --model {MODELS}:TinyNet",
    )
    for needle in (
        "1. floor",
        "build / floor:",
        "tutorial (a matplotlib figure per grid)",
        "featreport as a build renders",
        "site:",
        "peak RSS at 12 images",
        "12 vs 8 images",
        "peak RSS with --examples 6",
        "--examples 6 vs 2",
    ):
        assert needle in out, needle


def test_torchrun(sandbox: Path) -> None:
    run("torchrun", sandbox)
    data = json.loads((sandbox / "shapes-torchrun" / "report.json").read_text(encoding="utf-8"))
    assert len(data["images"]) == len(list((sandbox / "examples/shapes/images").rglob("*.png")))


def test_bench_gpu(sandbox: Path) -> None:
    out = run("bench-gpu", sandbox, extra=" --images 4 --batch-size 4 --workers 1 --input-size 32")
    for needle in ("1. best-practice loop", "2. compute floor", "3. featreport, --decode cpu"):
        assert needle in out, needle


RUNS_HERE = set(re.findall(r'\brun\(\s*"([\w-]+)"', Path(__file__).read_text(encoding="utf-8")))


def test_report_json_fields_are_all_documented(tmp_path: Path) -> None:
    """The README's report.json table names every field a report has, and no others."""
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    (tmp_path / "examples" / "shapes" / "images" / "notes.txt").write_text("not a picture")
    build_shapes_report(tmp_path)
    data = json.loads((tmp_path / "shapes-report" / "report.json").read_text(encoding="utf-8"))
    # Unnormalized input: the preprocessing finding fires, and the conventions are tried.
    build_shapes_report(
        tmp_path, "--mean 0,0,0 --std 1,1,1 --predictions p.jsonl.gz --out wrong-report"
    )
    wrong = json.loads((tmp_path / "wrong-report" / "report.json").read_text(encoding="utf-8"))
    assert wrong["conventions"] and data["conventions"] == []

    def fields(value: object, prefix: str) -> set[str]:
        if isinstance(value, dict) and prefix not in OPAQUE:
            return set().union(
                *(fields(v, f"{prefix}.{k}" if prefix else k) for k, v in value.items())
            )
        if isinstance(value, list) and value and isinstance(value[0], dict):
            # Every item: a field may be empty in one (an image's cams) and full in another.
            return set().union(*(fields(item, f"{prefix}[]") for item in value))
        return {prefix}

    section = README.read_text(encoding="utf-8").split("## report.json", 1)[1].split("\n## ", 1)[0]
    documented = {
        name
        for row in section.splitlines()
        if row.startswith("| `")
        for name in re.findall(r"`([a-z_0-9.\[\]]+)`", row.split(" | ")[0])
    }
    found = fields(data, "") | fields(wrong, "")
    # An empty list (or a null) in one report and records in the other: keep the records.
    found = {f for f in found if not any(g.startswith((f + "[]", f + ".")) for g in found)}
    assert found == documented


# Maps whose keys are data, documented as a whole.
OPAQUE = {"generator", "definitions", "findings[].evidence"}


def test_the_findings_table_states_every_definition_word_for_word() -> None:
    from reportgen.analysis.rules import DEFINITIONS

    section = README.read_text(encoding="utf-8").split("<!-- definitions -->", 1)[1]
    rows = {}
    for line in section.split("\n\n", 1)[0].strip().splitlines()[2:]:
        name, text = re.fullmatch(r"\| `([a-z_]+)` \| (.+) \|", line).groups()
        rows[name] = text
    assert rows == DEFINITIONS


def test_the_options_table_lists_every_option() -> None:
    from reportgen.commands.cli import build

    options = {o for p in build.params for o in p.opts if o.startswith("--")} - {"--help"}
    section = README.read_text(encoding="utf-8").split("## Options", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`(--[a-z-]+)", section)) - {"--help"}
    assert options == documented
