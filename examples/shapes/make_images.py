"""Draw the shapes data set: ImageFolder layout, fixed seed, the same files every run.

python examples/shapes/make_images.py OUT_DIR [--per-class N] [--seed S]

Each picture is one shape (circle, square, triangle, cross or stripes) with a random
colour, size, position and rotation, on a textured background with clutter, blur and
noise. Some are small, faint or partly hidden: the model is meant to get most of them
right and some of them wrong.
"""

from __future__ import annotations

import argparse
import math
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

SIZE = 64
CLASSES = ("circle", "square", "triangle", "cross", "stripes")
Colour = tuple[int, int, int]
Points = list[tuple[float, float]]


def _colour(rng: random.Random, avoid: Colour | None = None, distance: int = 0) -> Colour:
    while True:
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        if avoid is None or sum(abs(a - b) for a, b in zip(colour, avoid, strict=True)) > distance:
            return colour


def _shade(rng: random.Random, base: Colour, spread: int) -> Colour:
    r, g, b = (max(0, min(255, c + rng.randrange(-spread, spread + 1))) for c in base)
    return (r, g, b)


def _background(rng: random.Random) -> tuple[Image.Image, Colour]:
    """Draw a flat, gradient or speckled background and return it with its base colour."""
    base = _colour(rng)
    image = Image.new("RGB", (SIZE, SIZE), base)
    draw = ImageDraw.Draw(image)
    style = rng.randrange(3)
    if style == 1:
        other = _shade(rng, base, 90)
        for y in range(SIZE):
            t = y / (SIZE - 1)
            row = tuple(round(a + (b - a) * t) for a, b in zip(base, other, strict=True))
            draw.line((0, y, SIZE, y), fill=row)
    for _ in range(rng.randrange(0, 30 if style == 2 else 10)):
        x, y, r = rng.randrange(SIZE), rng.randrange(SIZE), rng.randrange(1, 6)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=_shade(rng, base, 45))
    return image, base


def _rotated(points: Points, cx: float, cy: float, angle: float) -> Points:
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + (x - cx) * c - (y - cy) * s, cy + (x - cx) * s + (y - cy) * c) for x, y in points]


def _outline(kind: str, rng: random.Random, cx: float, cy: float, r: float) -> list[Points]:
    """Return the polygons (or one circle's bounding box pair) that make up a shape."""
    angle = rng.uniform(0, math.pi)
    if kind == "square":
        h = r * 0.8
        box = [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
        return [_rotated(box, cx, cy, angle)]
    if kind == "triangle":
        return [
            [
                (cx + r * math.cos(a), cy + r * math.sin(a))
                for a in (angle, angle + 2.094, angle + 4.189)
            ]
        ]
    if kind == "cross":
        w = r * rng.uniform(0.22, 0.35)
        bar = [(cx - r, cy - w), (cx + r, cy - w), (cx + r, cy + w), (cx - r, cy + w)]
        return [_rotated(bar, cx, cy, angle), _rotated(bar, cx, cy, angle + math.pi / 2)]
    if kind == "stripes":
        period, half = rng.uniform(5, 11), rng.uniform(1.2, 2.2)
        reach = r * 1.4
        bands = []
        for k in range(-int(reach / period), int(reach / period) + 1):
            off = k * period
            band = [
                (cx + off - half, cy - reach),
                (cx + off + half, cy - reach),
                (cx + off + half, cy + reach),
                (cx + off - half, cy + reach),
            ]
            bands.append(_rotated(band, cx, cy, angle))
        return bands
    raise ValueError(kind)


def draw_shape(kind: str, rng: random.Random) -> Image.Image:
    """Draw one ``kind`` shape with random colour, size, position, rotation and noise."""
    image, base = _background(rng)
    # Faint shapes are part of the task: the fill only has to differ a little from the ground.
    fill = _colour(rng, avoid=base, distance=rng.choice((150, 220, 300)))
    draw = ImageDraw.Draw(image)
    r = rng.uniform(9, 22)
    cx, cy = rng.uniform(r + 4, SIZE - r - 4), rng.uniform(r + 4, SIZE - r - 4)
    if kind == "circle":
        squash = rng.uniform(0.8, 1.0)
        draw.ellipse((cx - r, cy - r * squash, cx + r, cy + r * squash), fill=fill)
    else:
        for polygon in _outline(kind, rng, cx, cy, r):
            draw.polygon(polygon, fill=fill)
    # Clutter: a few strokes and blobs in other colours, some across the shape.
    for _ in range(rng.randrange(0, 4)):
        x0, y0 = rng.uniform(0, SIZE), rng.uniform(0, SIZE)
        if rng.random() < 0.5:
            x1, y1 = x0 + rng.uniform(-20, 20), y0 + rng.uniform(-20, 20)
            draw.line((x0, y0, x1, y1), fill=_colour(rng), width=rng.randrange(1, 3))
        else:
            s = rng.uniform(2, 5)
            draw.ellipse((x0 - s, y0 - s, x0 + s, y0 + s), fill=_colour(rng))
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.0)))
    noise = Image.frombytes("L", (SIZE, SIZE), rng.randbytes(SIZE * SIZE)).convert("RGB")
    return Image.blend(image, noise, rng.uniform(0.0, 0.2))


def draw_set(per_class: int, seed: int) -> list[tuple[str, int, Image.Image]]:
    """Draw ``per_class`` pictures of every class, as (class, index, image), in a fixed order."""
    rng = random.Random(seed)
    return [(kind, i, draw_shape(kind, rng)) for kind in CLASSES for i in range(per_class)]


def main() -> None:
    """Draw the evaluation pictures the command line asks for."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for kind, i, image in draw_set(args.per_class, args.seed):
        folder = args.out / kind
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{kind}-{i:03d}.png", optimize=True)


if __name__ == "__main__":
    main()
