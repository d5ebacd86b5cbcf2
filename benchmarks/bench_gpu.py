"""Throughput of featreport against a best-practice evaluation loop, on the same images.

python benchmarks/bench_gpu.py [--model resnet50] [--images 2000] [--batch-size 64]
                               [--device auto] [--workers N] [--input-size N]

It draws seeded 500×375 JPEGs, then measures in one run, in images per second:

1. a best-practice evaluation loop: a Dataset that decodes with Pillow and applies the
   model's resize, crop and normalization, a DataLoader with worker processes (pinned
   memory on CUDA), the model on the device under ``torch.inference_mode``;
2. the compute floor: the forward pass alone on synthetic input already on the device;
3. featreport's pass 1 and its whole build (``--weights none``) with ``--decode cpu``;
4. the same with ``--decode gpu`` (CUDA only; skipped, and said, elsewhere).

Targets on a CUDA GPU: featreport with CPU decode at least 0.9 times the loop; with GPU
decode at least 1.3 times the loop and at least 0.6 times the floor. On the CPU only the
CPU paths are measured. It uses featreport's public names only.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import torch
import torchvision
from PIL import Image, ImageDraw
from torch.utils.data import DataLoader, Dataset

from reportgen.config import BuildConfig
from reportgen.data.decode import load_image
from reportgen.data.files import collect_images
from reportgen.models.load import load_model, resolve_device
from reportgen.pipeline import build
from reportgen.timing import Timings

WIDTH, HEIGHT = 500, 375


def draw_images(root: Path, count: int) -> Path:
    """Write ``count`` seeded 500×375 JPEGs of rectangles and ellipses, in four folders."""
    rng = random.Random(0)
    for i in range(count):
        image = Image.new("RGB", (WIDTH, HEIGHT), tuple(rng.randrange(256) for _ in range(3)))
        pen = ImageDraw.Draw(image)
        for _ in range(8):
            x, y = rng.randrange(WIDTH), rng.randrange(HEIGHT)
            w, h = rng.randrange(20, 200), rng.randrange(20, 200)
            shape = pen.ellipse if rng.random() < 0.5 else pen.rectangle
            shape((x, y, x + w, y + h), fill=tuple(rng.randrange(256) for _ in range(3)))
        folder = root / f"class{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{i:06d}.jpg", quality=90)
    return root


class _Folder(Dataset[torch.Tensor]):
    """Decode with Pillow and prepare as the model's preprocessing says (the usual loop)."""

    def __init__(self, paths: list[Path], prepare: object) -> None:
        self.paths, self.prepare = paths, prepare

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        image = load_image(self.paths[i], "RGB")
        assert not isinstance(image, str)
        return self.prepare(image)  # type: ignore[operator,no-any-return]


def _torchvision(config: BuildConfig, device: torch.device) -> torch.nn.Module:
    """Build the torchvision model untrained, as an evaluation script would."""
    name = str(config.model.model)
    model: torch.nn.Module = torchvision.models.get_model(name, weights=None)
    return model.eval().to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def best_practice(config: BuildConfig, workers: int) -> float:
    """Return the images per second of a DataLoader evaluation loop."""
    loaded = load_model(config.model, config.run)
    device = loaded.adapter.device
    module = _torchvision(config, device)
    files, _ = collect_images(config.data.images)
    loader = DataLoader(
        _Folder([f.path for f in files], loaded.preprocess),
        batch_size=config.run.batch_size,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        prefetch_factor=4 if workers else None,
    )
    start = time.perf_counter()
    with torch.inference_mode():
        for pixels in loader:
            module(pixels.to(device, non_blocking=True)).argmax(dim=1)
    _sync(device)
    return len(files) / (time.perf_counter() - start)


def compute_floor(config: BuildConfig, count: int) -> float:
    """Return the images per second of the forward pass alone, input already on the device."""
    loaded = load_model(config.model, config.run)
    device, size = loaded.adapter.device, loaded.preprocess.crop
    module = _torchvision(config, device)
    batch = torch.randn(config.run.batch_size, 3, size, size, device=device)
    with torch.inference_mode():
        module(batch)  # warm up (cuDNN picks its algorithms)
        _sync(device)
        start = time.perf_counter()
        for _ in range(-(-count // config.run.batch_size)):
            module(batch)
        _sync(device)
    return count / (time.perf_counter() - start)


def featreport(options: dict[str, object], count: int) -> tuple[float, float]:
    """Return featreport's images per second: pass 1 alone, and the whole build."""
    clock = Timings()
    start = time.perf_counter()
    build(BuildConfig.from_options(options), timings=clock)
    whole = time.perf_counter() - start
    first = sum(s for name, s in clock.as_dict().items() if name.startswith("pass 1"))
    return count / first, count / whole


def main() -> None:
    """Run every measurement and print images per second and the ratios."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--input-size", type=int, default=None, help="passed to featreport")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    parser.add_argument("--workers", type=int, default=cpus or 2, help="for the loop")
    args = parser.parse_args()
    device = resolve_device(args.device)
    work = Path(tempfile.mkdtemp(prefix="featreport-bench-gpu-"))
    try:
        images = draw_images(work / "images", args.images)
        options: dict[str, object] = {
            "model": args.model,
            "images": images,
            "weights": "none",
            "batch_size": args.batch_size,
            "device": args.device,
            "input_size": args.input_size,
            "quiet": True,
        }
        config = BuildConfig.from_options({**options, "out": work / "site"})
        name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
        print(
            f"{args.model}, --weights none, {args.images} JPEGs of {WIDTH}x{HEIGHT}, batch "
            f"{args.batch_size}, {device} ({name}), {cpus} CPUs, torch {torch.__version__}"
        )
        loop = best_practice(config, args.workers)
        print(f"1. best-practice loop ({args.workers} workers): {loop:8.1f} images/s")
        floor = compute_floor(config, args.images)
        print(f"2. compute floor (forward alone):       {floor:8.1f} images/s")
        first, whole = featreport({**options, "decode": "cpu", "out": work / "cpu"}, args.images)
        print(
            f"3. featreport, --decode cpu: pass 1 {first:8.1f} images/s ({first / loop:.2f}x the "
            f"loop; target at least 0.9x), whole build {whole:8.1f} images/s"
        )
        if device.type != "cuda":
            print("4. featreport, --decode gpu: not measured (no CUDA device here)")
            return
        first, whole = featreport({**options, "decode": "gpu", "out": work / "gpu"}, args.images)
        print(
            f"4. featreport, --decode gpu: pass 1 {first:8.1f} images/s ({first / loop:.2f}x the "
            f"loop, target at least 1.3x; {first / floor:.2f}x the floor, target at least "
            f"0.6x), whole build {whole:8.1f} images/s"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
