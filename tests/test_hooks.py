"""Hooks: what they capture, and that they leave the model exactly as they found it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import MODELS, read_report_json
from models import BrokenNet, InplaceReluNet, TinyNet, TwiceNet

from reportgen.config import BuildConfig
from reportgen.errors import InferenceError
from reportgen.models.adapter import Tap
from reportgen.models.hooks import Hooked, TapRecorder
from reportgen.models.torch_adapter import TorchAdapter, conv_modules
from reportgen.pipeline import build
from reportgen.tally.moments import ChannelMomentsReducer


def recorder(model: torch.nn.Module, sink=lambda tap, x: None) -> TapRecorder:
    """A recorder with a tap on every conv layer's output."""
    return TapRecorder(model, [Hooked(Tap(n), m) for n, m in conv_modules(model)], sink)


def _hook_count(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_inplace_relu_after_conv_keeps_negative_conv_outputs(tiny_config: BuildConfig) -> None:
    model = InplaceReluNet()
    torch.manual_seed(0)
    x = torch.randn(4, 3, 16, 16)
    expected = model.conv(x).detach()
    assert expected.min() < 0
    reducer = ChannelMomentsReducer()
    indices = torch.arange(4)
    with (
        recorder(model, lambda tap, out: reducer.update(out, indices)) as rec,
        torch.inference_mode(),
    ):
        rec.forward(x)
    moments = reducer.finish(reducer.state())
    assert min(moments.min) == pytest.approx(float(expected.min()), rel=1e-5)
    assert moments.mean == pytest.approx(expected.mean(dim=(0, 2, 3)).tolist(), rel=1e-4, abs=1e-6)

    config = tiny_config.replace(
        model=f"{MODELS}:InplaceReluNet", classes_file=None, input_size=24, examples=2
    )
    build(config)
    layer = read_report_json(config.site.out)["layers"][0]
    assert layer["activation_min"] < 0, (
        "statistics must be of the conv output, not the post-ReLU tensor"
    )
    assert min(layer["channel_mean"]) < 0 or layer["activation_min"] < 0


def test_maps_are_captured_before_the_inplace_relu(tmp_path: Path, images: Path) -> None:
    from reportgen.data.files import collect_images
    from reportgen.gather.maps import gather_maps
    from reportgen.models.load import load_model

    config = BuildConfig.from_options(
        {"model": f"{MODELS}:InplaceReluNet", "images": images, "weights": "none", "input_size": 24}
    )
    loaded = load_model(config.model, config.run)
    files, _ = collect_images(images)
    (image,) = gather_maps(loaded.adapter, files, loaded.preprocess, ["conv"], {0: True}, 4, 4)
    maps = image.layers[0].maps
    assert maps is not None and float(maps.min()) < 0


def _autograd_state(model: torch.nn.Module) -> list[tuple[bool, torch.Tensor | None]]:
    return [(p.requires_grad, p.grad) for p in model.parameters()]


def _with_gradients(model: torch.nn.Module) -> torch.nn.Module:
    """Give the model a gradient on its first parameters and freeze the last ones."""
    params = list(model.parameters())
    for p in params[:2]:
        p.grad = torch.full_like(p, 0.5)
    for p in params[-2:]:
        p.requires_grad_(False)
    return model


def test_build_leaves_the_model_unchanged(tmp_path: Path, images: Path) -> None:
    from reportgen import build_report

    model = _with_gradients(TinyNet())
    model.train()
    model.features[1].eval()  # a mixed state must come back exactly as it was
    flags = [m.training for m in model.modules()]
    autograd = _autograd_state(model)
    grads = [None if g is None else g.clone() for _, g in autograd]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    build_report(model, images, tmp_path / "site", input_size=32, examples=2)
    assert [m.training for m in model.modules()] == flags
    after_autograd = _autograd_state(model)
    assert [r for r, _ in after_autograd] == [r for r, _ in autograd]
    assert all(a is b for (_, a), (_, b) in zip(after_autograd, autograd, strict=True))
    assert all(
        (g is None and a is None) or (a is not None and g is not None and torch.equal(a, g))
        for (_, a), g in zip(after_autograd, grads, strict=True)
    )
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
    model = _with_gradients(TinyNet())
    model.train()
    autograd = _autograd_state(model)
    with pytest.raises(KeyError), recorder(model):
        assert not model.training
        assert _hook_count(model) == 3
        for p in model.parameters():  # what a gradient pass would leave behind
            p.requires_grad_(True)
            p.grad = torch.zeros_like(p)
        raise KeyError("boom")
    assert model.training and _hook_count(model) == 0
    after = _autograd_state(model)
    assert [r for r, _ in after] == [r for r, _ in autograd]
    assert all(a is b for (_, a), (_, b) in zip(after, autograd, strict=True))


def test_module_called_twice_is_recorded_once_and_says_so(tiny_config: BuildConfig) -> None:
    config = tiny_config.replace(
        model=f"{MODELS}:TwiceNet", classes_file=None, input_size=24, examples=1
    )
    build(config)
    layers = read_report_json(config.site.out)["layers"]
    assert [(layer["name"], layer["calls_per_forward"]) for layer in layers] == [
        ("stem", 1),
        ("shared", 2),
    ]
    page = (config.site.out / "layers" / "layer-002.html").read_text()
    assert "first call only" in page

    model = TwiceNet()
    seen: list[str] = []
    with recorder(model, lambda tap, o: seen.append(tap.layer)) as rec:
        rec.forward(torch.randn(1, 3, 8, 8))
        rec.forward(torch.randn(1, 3, 8, 8))
    assert seen == ["stem", "shared", "stem", "shared"]
    assert rec.calls_per_forward == {Tap("stem"): 1, Tap("shared"): 2}


def test_depth_is_forward_order_not_definition_order() -> None:
    class Reversed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.late = torch.nn.Conv2d(4, 4, 1)
            self.early = torch.nn.Conv2d(3, 4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.late(self.early(x)).mean(dim=(2, 3))

    model = Reversed()
    adapter = TorchAdapter(model, torch.device("cpu"))
    assert [c.name for c in adapter.conv_layers()] == ["late", "early"]  # definition order
    with adapter.recording([Tap("late"), Tap("early")], lambda tap, x: None) as rec:
        rec.forward(torch.randn(1, 3, 4, 4))
    assert rec.call_order == ("early", "late")


def test_layers_glob_that_matches_nothing_is_an_error(tiny_config: BuildConfig) -> None:
    from reportgen.errors import ModelError

    with pytest.raises(ModelError, match="matches none of the 3 conv layers"):
        build(tiny_config.replace(layers=("nothing.*",)))
