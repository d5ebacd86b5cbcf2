"""Wall time of one build in one process and in several under torchrun, on the same images.

python benchmarks/bench_processes.py [--model resnet18] [--images 2000] [--processes 2]

It draws seeded 224-px JPEGs, builds the default site once with ``featreport build`` and
once with ``torchrun --standalone --nproc-per-node N -m reportgen build`` (``--weights
none``), and prints both wall times, with interpreter start and imports, and how many of
the two sites' files differ. On a machine with fewer cores than processes times threads
this measures the overhead of several processes, not a speed-up. torchrun gives each
process one thread; one process keeps PyTorch's default, and float32 convolutions
with different thread counts may differ in their last bits, so a few numbers may differ
in their last printed digit.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_build import draw_images


def run(command: list[str]) -> float:
    """Run a command, fail loudly if it fails, and return its wall time in seconds."""
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def differing(a: Path, b: Path) -> tuple[int, int]:
    """Return how many files differ between two sites, and how many there are."""
    names = sorted({p.relative_to(a) for p in a.rglob("*") if p.is_file()})
    names += [
        p.relative_to(b)
        for p in b.rglob("*")
        if p.is_file() and not (a / p.relative_to(b)).exists()
    ]
    changed = sum(
        not (a / n).is_file()
        or not (b / n).is_file()
        or (a / n).read_bytes() != (b / n).read_bytes()
        for n in names
    )
    return changed, len(names)


def main() -> None:
    """Build in one process and in several, and print the wall times."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="featreport-bench-processes-"))
    try:
        images = draw_images(work / "images", args.images, 224)
        common = ["--model", args.model, "--weights", "none", "--images", str(images), "-q"]
        build = [sys.executable, "-m", "reportgen", "build", *common]
        one = run([*build, "--out", str(work / "one")])
        launch = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        several = run(
            [
                *launch,
                f"--nproc-per-node={args.processes}",
                "-m",
                "reportgen",
                "build",
                *common,
                "--out",
                str(work / "several"),
            ]
        )
        changed, total = differing(work / "one", work / "several")
        print(f"{args.model}, --weights none, {args.images} JPEGs of 224 px")
        print(f"one process:              {one:7.1f} s")
        print(f"{args.processes} processes (torchrun):  {several:7.1f} s ({several / one:.2f}x)")
        print(f"files that differ between the two sites: {changed} of {total}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
