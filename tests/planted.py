"""A small CNN trained for the tests in seconds, and the pictures it learns from.

Three classes of shapes (disc, square, bar) at 32×32 px with random colours and
positions. With ``background="coded"`` each class sits on a background of its own hue;
``"random"`` gives every picture a random background. ``train("shortcut")`` trains on
coded backgrounds with shapes drawn at random, so the background is all it can learn.
"""

from __future__ import annotations

import colorsys
import random
from pathlib import Path

import torch
from PIL import Image, ImageDraw
from torch import nn

from reportgen.models.preprocess import Preprocess

CLASSES = ("disc", "square", "bar")
SIZE = 32
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
CODED_HUES = {"disc": 0.0, "square": 0.33, "bar": 0.66}


class PlantNet(nn.Module):
    """Three conv blocks with batch norm and ReLU, a global max pool and a linear head."""

    def __init__(self, num_classes: int = len(CLASSES)) -> None:
        super().__init__()

        def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
            return [
                nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            ]

        self.features = nn.Sequential(*block(3, 12, 1), *block(12, 16, 2), *block(16, 24, 2))
        self.head = nn.Linear(24, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).amax(dim=(2, 3)))


def _rgb(hue: float, saturation: float, value: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(hue % 1.0, saturation, value)
    return (round(r * 255), round(g * 255), round(b * 255))


def picture(
    kind: str, rng: random.Random, background: str, ground_of: str | None = None
) -> Image.Image:
    """Draw one shape of ``kind`` on a random background, or one coded for ``ground_of``."""
    if background == "coded":
        hue = CODED_HUES[ground_of or kind] + rng.uniform(-0.03, 0.03)
        ground = _rgb(hue, rng.uniform(0.5, 0.9), rng.uniform(0.45, 0.85))
    else:
        ground = _rgb(rng.random(), rng.uniform(0.2, 0.9), rng.uniform(0.3, 0.9))
    image = Image.new("RGB", (SIZE, SIZE), ground)
    pen = ImageDraw.Draw(image)
    ink = tuple(255 - c for c in ground)  # always visible against its background
    half = rng.randrange(6, 10)
    cx, cy = rng.randrange(half + 2, SIZE - half - 2), rng.randrange(half + 2, SIZE - half - 2)
    if kind == "disc":
        pen.ellipse((cx - half, cy - half, cx + half, cy + half), fill=ink)
    elif kind == "square":
        pen.rectangle((cx - half, cy - half, cx + half, cy + half), fill=ink)
    else:
        pen.rectangle((2, cy - 2, SIZE - 3, cy + 2), fill=ink)
    return image


def draw_folder(root: Path, per_class: int, seed: int, background: str = "random") -> Path:
    """Write ``per_class`` pictures of each class into ``root/<class>/``.

    ``background`` is "random", "coded" (each class on its own hue) or "shuffled" (the
    coded hues, each picture's drawn at random, whatever its class).
    """
    rng = random.Random(seed)
    for kind in CLASSES:
        (root / kind).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            if background == "shuffled":
                image = picture(kind, rng, "coded", ground_of=rng.choice(CLASSES))
            else:
                image = picture(kind, rng, background)
            image.save(root / kind / f"{kind}-{i:03d}.png")
    return root


# What `featreport build --input-size 32 --mean 0.5,0.5,0.5 --std 0.25,0.25,0.25` does.
PREPARE = Preprocess(round(SIZE / 0.875), SIZE, MEAN, STD, "bilinear", 3, "the tests")
OPTIONS = {"input_size": SIZE, "mean": MEAN, "std": STD}


def _tensors(per_class: int, seed: int, background: str) -> tuple[torch.Tensor, torch.Tensor]:
    rng = random.Random(seed)
    images, labels = [], []
    for _ in range(per_class):
        for label, kind in enumerate(CLASSES):
            if background == "shortcut":  # the class shows in the background only
                image = picture(rng.choice(CLASSES), rng, "coded", ground_of=kind)
            else:
                image = picture(kind, rng, background)
            images.append(PREPARE(image))
            labels.append(label)
    return torch.stack(images), torch.tensor(labels)


def train(background: str = "random", per_class: int = 300, epochs: int = 8) -> nn.Module:
    """Train PlantNet from a fixed seed for a few seconds and return it in eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = PlantNet()
        x, y = _tensors(per_class, seed=1000, background=background)
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        generator = torch.Generator().manual_seed(0)
        for _ in range(epochs):
            model.train()
            for batch in torch.randperm(len(x), generator=generator).split(64):
                loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    return model.eval()
