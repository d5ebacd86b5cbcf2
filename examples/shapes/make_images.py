"""Draw the shapes data set: ImageFolder layout, fixed seed, the same files every run.

python examples/shapes/make_images.py OUT_DIR [--per-class N] [--seed S]
"""

from __future__ import annotations

import argparse
import math
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

SIZE = 64
CLASSES = ("circle", "square", "triangle", "cross", "stripes")


def _colour(rng: random.Random, avoid: tuple[int, int, int] | None = None) -> tuple[int, int, int]:
    while True:
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        if avoid is None or sum(abs(a - b) for a, b in zip(colour, avoid, strict=True)) > 200:
            return colour


def _background(rng: random.Random) -> Image.Image:
    base = _colour(rng)
    image = Image.new("RGB", (SIZE, SIZE), base)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randrange(0, 25)):
        x, y = rng.randrange(SIZE), rng.randrange(SIZE)
        r = rng.randrange(1, 6)
        shade = tuple(max(0, min(255, c + rng.randrange(-40, 41))) for c in base)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=shade)
    return image


def _rotated(
    points: list[tuple[float, float]], cx: float, cy: float, angle: float
) -> list[tuple[float, float]]:
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + (x - cx) * c - (y - cy) * s, cy + (x - cx) * s + (y - cy) * c) for x, y in points]


def draw_shape(kind: str, rng: random.Random) -> Image.Image:
    """Draw one ``kind`` shape with random colour, size, position, rotation and noise."""
    image = _background(rng)
    fill = _colour(rng, avoid=image.getpixel((0, 0)))
    draw = ImageDraw.Draw(image)
    r = rng.uniform(11, 22)
    cx, cy = rng.uniform(r + 2, SIZE - r - 2), rng.uniform(r + 2, SIZE - r - 2)
    angle = rng.uniform(0, math.pi)
    if kind == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif kind == "square":
        h = r * 0.8
        draw.polygon(
            _rotated(
                [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)],
                cx,
                cy,
                angle,
            ),
            fill=fill,
        )
    elif kind == "triangle":
        pts = [
            (cx + r * math.cos(a), cy + r * math.sin(a))
            for a in (angle, angle + 2.094, angle + 4.189)
        ]
        draw.polygon(pts, fill=fill)
    elif kind == "cross":
        w = r * 0.3
        bar = [(cx - r, cy - w), (cx + r, cy - w), (cx + r, cy + w), (cx - r, cy + w)]
        draw.polygon(_rotated(bar, cx, cy, angle), fill=fill)
        draw.polygon(_rotated(bar, cx, cy, angle + math.pi / 2), fill=fill)
    elif kind == "stripes":
        period = rng.uniform(6, 12)
        for k in range(-12, 13):
            off = k * period
            band = [
                (cx + off - 1.5, cy - 40),
                (cx + off + 1.5, cy - 40),
                (cx + off + 1.5, cy + 40),
                (cx + off - 1.5, cy + 40),
            ]
            draw.polygon(_rotated(band, cx, cy, angle), fill=fill)
    else:
        raise ValueError(kind)
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0, 0.8)))
    # Seeded noise: Image.effect_noise draws from C's rand(), which this seed does not reach.
    noise = Image.frombytes(
        "L", (SIZE, SIZE), bytes(rng.randrange(256) for _ in range(SIZE * SIZE))
    )
    noise = noise.convert("RGB")
    return Image.blend(image, noise, rng.uniform(0.0, 0.2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    for kind in CLASSES:
        folder = args.out / kind
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(args.per_class):
            draw_shape(kind, rng).save(folder / f"{kind}-{i:03d}.png", optimize=True)


if __name__ == "__main__":
    main()
