"""Benchmark featreport against the floor and against the tutorial approach, on the same images.

python benchmarks/bench_build.py [--model resnet18] [--images 256] [--size 224]
                                 [--memory 400,4000] [--tutorial-images 12]

It draws its own images (seeded, JPEG), then measures in one run:

1. the floor: decoding, preprocessing and a bare batched forward pass over every image,
   with a hook on every conv layer that records nothing;
2. ``featreport build`` end to end (``--weights none``), with its ``--profile`` stage table;
3. the tutorial approach: one matplotlib figure per showcased image and conv layer
   (``plt.subplots``, ``imshow`` per channel, ``savefig``), the same grids featreport draws;
4. peak resident memory of ``featreport build`` at each ``--memory`` image count, and
   the size of the site.

Absolute times drift on shared machines, so it reports ratios measured side by side.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from reportgen import visuals
from reportgen.collect import collect_images
from reportgen.config import BuildConfig
from reportgen.hooks import find_conv_layers
from reportgen.infer import _batches
from reportgen.model import load_model
from reportgen.pictures import Pictures

CLASSES = ("alpha", "beta", "gamma", "delta")


def draw_images(root: Path, count: int, size: int) -> Path:
    """Write ``count`` seeded pictures of rectangles and ellipses as JPEGs, in class folders."""
    rng = random.Random(0)
    for i in range(count):
        image = Image.new("RGB", (size, size), tuple(rng.randrange(256) for _ in range(3)))
        pen = ImageDraw.Draw(image)
        for _ in range(6):
            x, y = rng.randrange(size), rng.randrange(size)
            w, h = rng.randrange(size // 8, size // 2), rng.randrange(size // 8, size // 2)
            shape = pen.ellipse if rng.random() < 0.5 else pen.rectangle
            shape((x, y, x + w, y + h), fill=tuple(rng.randrange(256) for _ in range(3)))
        folder = root / CLASSES[i % len(CLASSES)]
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{i:05d}.jpg", quality=90)
    return root


def floor(config: BuildConfig) -> dict[str, float]:
    """Time decode + preprocess and a bare forward pass with do-nothing hooks on every conv."""
    loaded = load_model(config)
    files, _ = collect_images(config.images)
    handles = [
        module.register_forward_hook(lambda *args: None)
        for _, module in find_conv_layers(loaded.module, ())
    ]
    decode = forward = 0.0
    loaded.module.eval()
    with torch.inference_mode():
        batches = iter(_batches(files, range(len(files)), loaded.preprocess, config.batch_size))
        while True:
            start = time.perf_counter()
            item = next(batches, None)
            decode += time.perf_counter() - start
            if item is None:
                break
            start = time.perf_counter()
            loaded.module(item[1].to(loaded.device))
            forward += time.perf_counter() - start
    for handle in handles:
        handle.remove()
    return {"decode": decode, "forward": forward, "total": decode + forward}


def run_build(images: Path, out: Path, model: str, extra: list[str]) -> tuple[float, int, str]:
    """Run ``featreport build`` in a child process; return wall seconds, peak RSS bytes, stderr."""
    command = [
        sys.executable,
        "-m",
        "reportgen",
        "build",
        "--model",
        model,
        "--weights",
        "none",
        "--images",
        str(images),
        "--out",
        str(out),
        "-q",
        "--profile",
        *extra,
    ]
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read()
    if child.returncode != 0:
        raise SystemExit(f"featreport build failed:\n{stderr}")
    return wall, usage.ru_maxrss * 1024, stderr


def stage_table(stderr: str) -> dict[str, float]:
    stages = {}
    for line in stderr.splitlines():
        match = re.match(r"(.+?)\s{2,}([\d.]+)\s+[\d.]+%$", line)
        if match:
            stages[match.group(1).strip()] = float(match.group(2))
    return stages


def showcased(site: Path, files: list[Path]) -> list[Path]:
    indices = [
        int(p.stem.split("-")[1]) - 1 for p in sorted((site / "images").glob("image-*.html"))
    ]
    return [files[i] for i in indices]


def conv_outputs(config: BuildConfig, path: Path) -> list[torch.Tensor]:
    """One image's output at every conv layer, as the tutorial would capture it."""
    loaded = load_model(config)
    outputs: list[torch.Tensor] = []
    handles = [
        m.register_forward_hook(lambda _m, _i, o: outputs.append(o.detach()))
        for _, m in find_conv_layers(loaded.module, ())
    ]
    with Image.open(path) as image, torch.inference_mode():
        loaded.module.eval()
        loaded.module(loaded.preprocess(image.convert("RGB")).unsqueeze(0))
    for handle in handles:
        handle.remove()
    return outputs


def tutorial_grid(maps: torch.Tensor) -> bytes:
    """The notebook way: one figure, one imshow per channel, savefig."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    side = int(len(maps) ** 0.5 + 0.999)
    fig, axes = plt.subplots(side, side, figsize=(8, 8))
    for ax, channel in zip(axes.flat, maps, strict=False):
        ax.imshow(channel.numpy(), cmap="viridis")
    for ax in axes.flat:
        ax.axis("off")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def featreport_grid(maps: torch.Tensor, ext: str) -> bytes:
    """featreport's way: normalize, colour and tile in torch, encode once."""
    return visuals.encode(visuals.feature_grid(maps), ext)


def folder_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--memory", default="400,4000", help="image counts for peak memory")
    parser.add_argument("--tutorial-images", type=int, default=12)
    parser.add_argument("--input-size", type=int, default=None, help="passed to featreport")
    args = parser.parse_args()
    torch.manual_seed(0)
    work = Path(tempfile.mkdtemp(prefix="featreport-bench-"))
    extra = ["--input-size", str(args.input_size)] if args.input_size else []
    try:
        images = draw_images(work / "images", args.images, args.size)
        config = BuildConfig(
            model=args.model,
            images=images,
            out=work / "site",
            weights="none",
            input_size=args.input_size,
            quiet=True,
        )
        print(
            f"{args.model}, --weights none, {args.images} JPEGs of {args.size} px, "
            f"{torch.get_num_threads()} threads, torch {torch.__version__}"
        )

        base = floor(config)
        wall, rss, stderr = run_build(images, work / "site", args.model, extra)
        stages = stage_table(stderr)
        build_total = stages.get("total", wall)
        print("\n1. floor (decode + preprocess + bare forward with empty hooks)")
        print(
            f"   decode {base['decode']:.2f} s + forward {base['forward']:.2f} s = {base['total']:.2f} s"
        )
        print("\n2. featreport build (stage table from --profile)")
        print("   " + "\n   ".join(stderr.strip().splitlines()))
        print(f"   child process wall time, with interpreter start and imports: {wall:.2f} s")
        print(f"   build / floor: {build_total / base['total']:.2f}x (target at most 1.5x)")

        files = [f.path for f in collect_images(images)[0]]
        shown = showcased(work / "site", files)[: args.tutorial_images]
        all_maps = [o[0, :16].float() for path in shown for o in conv_outputs(config, path)]
        start = time.perf_counter()
        for maps in all_maps:
            tutorial_grid(maps)
        tutorial = (time.perf_counter() - start) / len(all_maps)
        start = time.perf_counter()
        for maps in all_maps:
            featreport_grid(maps, "webp")
        serial = (time.perf_counter() - start) / len(all_maps)
        # As a build renders them: drawn in torch on this thread, encoded on the pool.
        start = time.perf_counter()
        with Pictures(lambda path, data: None, "webp", inline=False) as pictures:
            for i, maps in enumerate(all_maps):
                pictures.add(f"grid-{i}.webp", visuals.feature_grid(maps))
        pooled = (time.perf_counter() - start) / len(all_maps)
        print(
            f"\n3. one 16-channel grid, {len(all_maps)} grids ({len(shown)} images x conv layers)"
        )
        print(f"   tutorial (a matplotlib figure per grid): {tutorial * 1000:.1f} ms per grid")
        print(
            f"   featreport, one grid after another: {serial * 1000:.2f} ms per grid "
            f"({tutorial / serial:.0f}x)"
        )
        print(
            f"   featreport as a build renders (encoding on {pictures.workers} threads): "
            f"{pooled * 1000:.2f} ms per grid ({tutorial / pooled:.0f}x; target at least 100x)"
        )

        site_bytes = folder_size(work / "site")
        pages = len(list((work / "site" / "images").glob("*.html")))
        print(
            f"\n4. site: {site_bytes / 1e6:.1f} MB with {pages} showcased images (target under 15 MB)"
        )
        print(f"   peak RSS of the {args.images}-image build: {rss / 1e9:.2f} GB")
        counts = [int(c) for c in args.memory.split(",") if c.strip()]
        peaks = {}
        for count in counts:
            folder = draw_images(work / f"images-{count}", count, args.size)
            _, peaks[count], _ = run_build(folder, work / f"site-{count}", args.model, extra)
            shutil.rmtree(folder)
            print(f"   peak RSS at {count} images: {peaks[count] / 1e9:.2f} GB")
        if len(counts) >= 2:
            low, high = counts[0], counts[-1]
            print(
                f"   {high} vs {low} images: {peaks[high] / peaks[low]:.2f}x (target at most 1.1x)"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
