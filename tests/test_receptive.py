"""Receptive fields, measured by a gradient on a linear copy, against the textbook formula."""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from reportgen.models.receptive import receptive_fields


def formula(layers: list[tuple[int, int, int]]) -> list[int]:
    """Return the field after each (kernel, stride, dilation): r += (k − 1)·d·jump; jump *= s."""
    field, jump, out = 1, 1, []
    for kernel, stride, dilation in layers:
        field += (kernel - 1) * dilation * jump
        jump *= stride
        out.append(field)
    return out


class Stack(nn.Module):
    """Convs of known geometry, a max pool, a residual add and a head that needs 32×32 input."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 5, stride=2, padding=2)
        self.b = nn.Conv2d(8, 8, 3, padding=2, dilation=2)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.c = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.d = nn.Conv2d(16, 16, 3, padding=1)
        self.head = nn.Linear(5, 4)  # fails on every input: only what comes before it counts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.b(torch.relu(self.a(x))))
        x = self.c(self.pool(x))
        x = x + torch.relu(self.d(x))  # a residual sum: the wider path counts
        return self.head(x.flatten(1))


def test_a_stack_of_known_geometry_matches_the_formula() -> None:
    torch.manual_seed(0)
    model = Stack().eval()
    found = receptive_fields(model, ["a", "b", "c", "d"], 3, 256)
    a, b, pooled, c, d = formula([(5, 2, 1), (3, 1, 2), (3, 2, 1), (3, 2, 1), (3, 1, 1)])
    assert pooled > b
    for name, expected in (("a", a), ("b", b), ("c", c), ("d", d)):
        field = found[name]
        assert (field.height, field.width, field.at_least) == (expected, expected, False), name
    # By hand: 5; 5 + 2·2·2 = 13; the pool 13 + 2·2 = 17; 17 + 2·4 = 25; 25 + 2·8 = 41. The
    # head rejects every size tried: the fields were taken before it failed.
    assert found["d"].height == 41


def test_resnet18_layer4_is_435_pixels_and_a_small_input_says_at_least() -> None:
    model = torchvision.models.resnet18(weights=None).eval()
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    found = receptive_fields(model, convs, 3, 512)
    assert found["layer4.1.conv2"].height == 435 and not found["layer4.1.conv2"].at_least
    assert found["conv1"].height == 7 and found["layer1.0.conv1"].height == 19
    capped = receptive_fields(model, ["layer4.1.conv2"], 3, 224)["layer4.1.conv2"]
    assert (capped.height, capped.at_least) == (224, True)
    # The model itself is untouched: same weights, still in eval mode, no gradients kept.
    again = torchvision.models.resnet18(weights=None)
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    assert model.conv1.weight.shape == again.conv1.weight.shape


def test_a_squeeze_and_excite_gate_does_not_widen_the_field() -> None:
    model = torchvision.models.mobilenet_v3_small(weights=None).eval()
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    found = receptive_fields(model, convs, 3, 224)
    # The block after the first gate: stem 3×3/2, depthwise 3×3/2, then 1×1 convs.
    assert found["features.1.block.2.0"].height == found["features.1.block.0.0"].height == 7
    # The gate's own convs see one pooled value per map: no spatial field.
    assert "features.1.block.1.fc1" not in found
