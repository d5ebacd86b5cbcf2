"""ShapesNet: a small CNN for 64×64 pictures of simple shapes (``model.py:ShapesNet``)."""

from __future__ import annotations

import torch
from torch import nn

CLASSES = ("circle", "square", "triangle", "cross", "stripes")


class ShapesNet(nn.Module):
    """Five conv layers, each followed by batch norm and ReLU, then a linear classifier."""

    def __init__(self, num_classes: int = len(CLASSES)) -> None:
        super().__init__()

        def block(cin: int, cout: int, stride: int, kernel: int = 3) -> list[nn.Module]:
            return [
                nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            ]

        self.features = nn.Sequential(
            *block(3, 16, 1, kernel=5),
            *block(16, 32, 2),
            *block(32, 48, 2),
            *block(48, 64, 2),
            *block(64, 96, 2),
        )
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.classifier = nn.Linear(96, num_classes)
        # Start the first layer near zero: batch norm undoes the scale, and what training
        # adds then dominates what the random start leaves, so the trained filters read as
        # edge and colour detectors rather than noise.
        nn.init.normal_(self.features[0].weight, std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the class logits of a batch of 64×64 pictures."""
        return self.classifier(self.pool(self.features(x)).flatten(1))
