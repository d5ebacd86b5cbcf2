"""Tiny models for the tests, importable as tests/models.py:Name."""

from __future__ import annotations

import collections
import os

import torch
from torch import nn


class TinyNet(nn.Module):
    """Three convs (the middle one grouped), batch norm, ReLU, three classes."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=2),
            nn.ReLU(),
            nn.Conv2d(8, 12, 1),
            nn.ReLU(),
        )
        self.head = nn.Linear(12, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


class InplaceReluNet(nn.Module):
    """A conv followed by an in-place ReLU, as in VGG and AlexNet."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.relu(self.conv(x)).mean(dim=(2, 3)))


class TwiceNet(nn.Module):
    """One conv module called twice in a forward pass (weight sharing)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.shared = nn.Conv2d(6, 6, 3, padding=1)
        self.head = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        x = torch.relu(self.shared(x))
        x = torch.relu(self.shared(x))
        return self.head(x.mean(dim=(2, 3)))


class DictNet(TinyNet):
    """Returns a dict holding the logits."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return {"logits": super().forward(x), "features": x.mean()}


Out = collections.namedtuple("Out", ["logits", "aux"])


class TupleNet(TinyNet):
    """Returns a namedtuple whose first field is the logits."""

    def forward(self, x: torch.Tensor) -> Out:  # type: ignore[override]
        return Out(super().forward(x), None)


class GrayNet(nn.Module):
    """Takes one-channel images."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.up = nn.ConvTranspose2d(4, 4, 2, stride=2, groups=2)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.up(torch.relu(self.conv(x))).mean(dim=(2, 3)))


class NoConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.mean(dim=(2, 3)))


class BrokenNet(TinyNet):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("deliberately broken")


def make_tiny() -> nn.Module:
    """A zero-argument factory, as --model file.py:function takes."""
    return TinyNet(num_classes=3)


class SlowNet(TinyNet):
    """Takes a while per batch, so a test can interrupt a build midway."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import os
        import pathlib
        import time

        marker = os.environ.get("FEATREPORT_TEST_MARKER")
        if marker:
            pathlib.Path(marker).touch()  # tells the test that inference is under way
        time.sleep(0.4)
        return super().forward(x)


class MixedConvNet(nn.Module):
    """Every kind of conv: plain, grouped, depthwise, 1×1 and transposed."""

    def __init__(self) -> None:
        super().__init__()
        self.plain = nn.Conv2d(3, 8, 3, padding=1)
        self.grouped = nn.Conv2d(8, 8, 3, padding=1, groups=4)
        self.depthwise = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8)
        self.pointwise = nn.Conv2d(8, 6, 1)
        self.up = nn.ConvTranspose2d(6, 4, 2, stride=2)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in (self.plain, self.grouped, self.depthwise, self.pointwise, self.up):
            x = torch.relu(conv(x))
        return self.head(x.mean(dim=(2, 3)))


class ChannelsLastNet(TinyNet):
    """TinyNet whose weights and activations are in channels_last memory format."""

    def __init__(self) -> None:
        super().__init__()
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.contiguous(memory_format=torch.channels_last))


class ScoresNet(TinyNet):
    """Returns a dict without a 'logits' key: --output-key must say which entry."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return {"embedding": x.mean(dim=(2, 3)), "scores": super().forward(x)}


class PairNet(TinyNet):
    """Returns (features, logits): the logits are the second item."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        return x.mean(dim=(2, 3)), super().forward(x)


class RedSquareNet(nn.Module):
    """Channel 0 fires only on saturated red, by how red: R − G − B − 0.2 on 0..1 pixels."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)
        self.relu = nn.ReLU()
        self.head = nn.Linear(2, 2)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.bias.zero_()
            self.conv.weight[0, :, 0, 0] = torch.tensor([1.0, -1.0, -1.0])
            self.conv.bias[0] = -0.2
            self.conv.weight[1, :, 0, 0] = torch.tensor([0.3, 0.3, 0.3])  # brightness

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.relu(self.conv(x)).amax(dim=(2, 3)))


class ShiftingNet(RedSquareNet):
    """RedSquareNet whose conv answers half as much again after two batches of images:
    a model that changes between pass 1 and pass 2."""

    def __init__(self) -> None:
        super().__init__()
        self.batches = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 1:
            self.batches += 1
        y = self.conv(x)
        if self.batches > 2:
            y = y * 1.5
        return self.head(self.relu(y).amax(dim=(2, 3)))


class RankOneFailsNet(TinyNet):
    """TinyNet whose forward fails in the second process of a torchrun build."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if os.environ.get("RANK") == "1":
            raise RuntimeError("planted failure in the second process")
        return super().forward(x)


class RankShiftNet(TinyNet):
    """TinyNet whose first block's output is 1.0 higher in the second process of a torchrun
    build (after its ReLU, so every process finds the same blocks)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.features[:3](x)
        if os.environ.get("RANK") == "1":
            y = y + 1.0
        return self.head(self.features[3:](y).mean(dim=(2, 3)))


class FiveClassNet(TinyNet):
    """TinyNet with five outputs, as many as the shapes example's classes."""

    def __init__(self) -> None:
        super().__init__(num_classes=5)
