"""Hooks: what they capture, and that they leave the model exactly as they found it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from helpers import MODELS, report
from models import BrokenNet, InplaceReluNet, TinyNet, TwiceNet

from reportgen.config import BuildConfig
from reportgen.errors import InferenceError
from reportgen.hooks import ConvRecorder, find_conv_layers
from reportgen.pipeline import build
from reportgen.stats import ChannelAccumulator


def _hook_count(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_inplace_relu_after_conv_keeps_negative_conv_outputs(tiny_config: BuildConfig) -> None:
    model = InplaceReluNet()
    torch.manual_seed(0)
    x = torch.randn(4, 3, 16, 16)
    expected = model.conv(x).detach()
    assert expected.min() < 0
    accumulator = ChannelAccumulator()
    with (
        ConvRecorder(model, find_conv_layers(model), lambda i, out: accumulator.update(out)) as rec,
        torch.inference_mode(),
    ):
        rec.forward(x)
    stats = accumulator.finish(4)
    assert stats.activation_min == pytest.approx(float(expected.min()), rel=1e-5)
    assert stats.channel_mean == pytest.approx(
        expected.mean(dim=(0, 2, 3)).tolist(), rel=1e-4, abs=1e-6
    )

    config = dataclasses.replace(
        tiny_config, model=f"{MODELS}:InplaceReluNet", classes_file=None, input_size=24, examples=2
    )
    build(config)
    layer = report(config.out)["layers"][0]
    assert layer["activation_min"] < 0, (
        "statistics must be of the conv output, not the post-ReLU tensor"
    )
    assert min(layer["channel_mean"]) < 0 or layer["activation_min"] < 0


def test_maps_are_captured_before_the_inplace_relu(tmp_path: Path, images: Path) -> None:
    from reportgen.collect import collect_images
    from reportgen.infer import capture_maps, run_inference
    from reportgen.model import load_model

    config = BuildConfig(
        model=f"{MODELS}:InplaceReluNet", images=images, weights="none", input_size=24, quiet=True
    )
    loaded = load_model(config)
    files, _ = collect_images(images)
    layers = find_conv_layers(loaded.module)
    result = run_inference(loaded, files, layers, 4, 4, lambda n: None)
    captured = capture_maps(loaded, files, {0: True}, result, 4, 4, lambda n: None)
    maps = captured[0].layers[0].maps
    assert maps is not None and float(maps.min()) < 0


def test_build_leaves_the_model_unchanged(tmp_path: Path, images: Path) -> None:
    from reportgen import build_report

    model = TinyNet()
    model.train()
    model.features[1].eval()  # a mixed state must come back exactly as it was
    flags = [m.training for m in model.modules()]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    build_report(model, images, tmp_path / "site", input_size=32, examples=2)
    assert [m.training for m in model.modules()] == flags
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before), "batch-norm buffers must not move"
    assert _hook_count(model) == 0


def test_hooks_are_removed_and_flags_restored_when_forward_raises(
    tmp_path: Path, images: Path
) -> None:
    from reportgen import build_report

    model = BrokenNet()
    model.train()
    with pytest.raises(InferenceError, match="deliberately broken"):
        build_report(model, images, tmp_path / "site", input_size=32)
    assert model.training
    assert _hook_count(model) == 0
    assert not (tmp_path / "site").exists()


def test_recorder_cleans_up_on_any_exception() -> None:
    model = TinyNet()
    model.train()
    with pytest.raises(KeyError), ConvRecorder(model, find_conv_layers(model), lambda i, o: None):
        assert not model.training
        assert _hook_count(model) == 3
        raise KeyError("boom")
    assert model.training and _hook_count(model) == 0


def test_module_called_twice_is_recorded_once_and_says_so(tiny_config: BuildConfig) -> None:
    config = dataclasses.replace(
        tiny_config, model=f"{MODELS}:TwiceNet", classes_file=None, input_size=24, examples=1
    )
    build(config)
    layers = report(config.out)["layers"]
    assert [(layer["name"], layer["calls_per_forward"]) for layer in layers] == [
        ("stem", 1),
        ("shared", 2),
    ]
    page = (config.out / "layers" / "layer-002.html").read_text()
    assert "first call only" in page

    model = TwiceNet()
    seen: list[int] = []
    with ConvRecorder(model, find_conv_layers(model), lambda i, o: seen.append(i)) as rec:
        rec.forward(torch.randn(1, 3, 8, 8))
        rec.forward(torch.randn(1, 3, 8, 8))
    assert seen == [0, 1, 0, 1]
    assert rec.calls_per_forward == [1, 2]


def test_depth_is_forward_order_not_definition_order() -> None:
    class Reversed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.late = torch.nn.Conv2d(4, 4, 1)
            self.early = torch.nn.Conv2d(3, 4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.late(self.early(x))

    model = Reversed()
    with ConvRecorder(model, find_conv_layers(model), lambda i, o: None) as rec:
        rec.forward(torch.randn(1, 3, 4, 4))
    names = [find_conv_layers(model)[i][0] for i in rec.call_order]
    assert names == ["early", "late"]


def test_layers_glob_that_matches_nothing_is_an_error(tiny_config: BuildConfig) -> None:
    from reportgen.errors import ModelError

    with pytest.raises(ModelError, match="matches none of the 3 conv layers"):
        build(dataclasses.replace(tiny_config, layers=("nothing.*",)))
