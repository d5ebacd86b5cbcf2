"""Hooks: what they capture, and that they leave the model exactly as they found it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import MODELS, read_report_json
from models import BrokenNet, InplaceReluNet, TinyNet, TwiceNet

from reportgen.analysis.ranking import Ranking
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
    conv, after = layer["points"]["conv"], layer["points"]["activation"]
    assert conv["activation_min"] < 0, (
        "the conv point must be the conv output, not the tensor the in-place ReLU overwrote"
    )
    assert after["activation_min"] == 0.0 and layer["block"]["activation_type"] == "ReLU"
    assert conv["positive_share"] is None and all(0 < v < 1 for v in after["positive_share"])
    assert all(m >= c for m, c in zip(after["channel_mean"], conv["channel_mean"], strict=True))


def test_maps_are_captured_before_the_inplace_relu(tmp_path: Path, images: Path) -> None:
    from reportgen.data.files import collect_images
    from reportgen.gather.maps import gather_maps
    from reportgen.models.load import load_model

    config = BuildConfig.from_options(
        {"model": f"{MODELS}:InplaceReluNet", "images": images, "weights": "none", "input_size": 24}
    )
    loaded = load_model(config.model, config.run)
    files, _ = collect_images(images)
    rankings = [
        Ranking("conv", point, "mean", (0.0,) * 4, (1.0,) * 4) for point in ("conv", "activation")
    ]
    (image,) = gather_maps(loaded.adapter, files, loaded.preprocess, rankings, {0: True}, 4, 4)
    before, after = (layer.maps for layer in image.layers)
    assert before is not None and float(before.min()) < 0
    assert after is not None and float(after.min()) == 0.0


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


# ------------------------------------------------------------------ norm and activation blocks


def test_blocks_follow_the_conv_output_through_its_norm_and_activation() -> None:
    import torchvision

    from reportgen.models.blocks import find_blocks

    model = torchvision.models.resnet18(weights=None)
    found = find_blocks(model, dict(conv_modules(model)), torch.randn(1, 3, 64, 64))

    def named(name: str) -> tuple[str | None, str | None, int | None]:
        block = found[name]
        return (
            block.norm[0] if block.norm else None,
            block.activation[0] if block.activation else None,
            block.activation[2] if block.activation else None,
        )

    assert named("conv1") == ("bn1", "relu", 1)
    assert named("layer1.0.conv1") == ("layer1.0.bn1", "layer1.0.relu", 1)
    # `out += identity` changes bn2's output in place before the ReLU: the chain stops there.
    assert named("layer1.0.conv2") == ("layer1.0.bn2", None, None)
    assert named("layer2.0.downsample.0") == ("layer2.0.downsample.1", None, None)
    # Bottleneck-style reuse of one ReLU module: the second call serves the second conv.
    tiny = TinyNet()
    blocks = find_blocks(tiny, dict(conv_modules(tiny)), torch.randn(1, 3, 16, 16))
    assert blocks["features.3"].norm is None and blocks["features.3"].activation[0] == "features.4"


def test_a_shared_activation_module_is_tapped_on_the_call_that_serves_the_layer() -> None:
    import torchvision

    model = torchvision.models.resnet18(weights=None).eval()
    with torch.no_grad():  # give the batch norms statistics of their own
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    adapter = TorchAdapter(model, torch.device("cpu"), input_shape=(3, 64, 64))
    x = torch.randn(2, 3, 64, 64)
    seen: dict[Tap, torch.Tensor] = {}
    taps = [Tap("layer1.1.conv1", "activation"), Tap("layer1.1.conv2", "activation")]
    with adapter.recording(taps, lambda tap, t: seen.setdefault(tap, t.clone())) as rec:
        rec.forward(x)
    block = model.layer1[1]
    with torch.no_grad():
        start = model.layer1[0](model.maxpool(model.relu(model.bn1(model.conv1(x)))))
        first = torch.relu(block.bn1(block.conv1(start)))
        second = block.bn2(block.conv2(first))  # before the shortcut is added
    assert torch.allclose(seen[taps[0]], first, atol=1e-5)
    assert torch.allclose(seen[taps[1]], second, atol=1e-5)
    assert adapter.block("layer1.1.conv2").label == "after BatchNorm2d"
    assert adapter.block("layer1.1.conv1").label == "after BatchNorm2d and ReLU"


def test_a_functional_activation_cannot_be_seen_and_the_chain_ends_before_it() -> None:
    adapter = TorchAdapter(TwiceNet(), torch.device("cpu"), input_shape=(3, 8, 8))
    assert adapter.block("stem").label == "conv output" and not adapter.block("stem").has_point
    with pytest.raises(Exception, match="no tap 'activation'"):
        adapter.recording([Tap("stem", "activation")], lambda tap, x: None).__enter__()


def test_tracing_leaves_the_model_as_it_found_it_even_when_forward_raises() -> None:
    from reportgen.models.blocks import find_blocks

    model = _with_gradients(TinyNet())
    model.train()
    autograd = _autograd_state(model)
    find_blocks(model, dict(conv_modules(model)), torch.randn(1, 3, 8, 8))
    assert model.training and _hook_count(model) == 0
    after = _autograd_state(model)
    assert [r for r, _ in after] == [r for r, _ in autograd]
    assert all(a is b for (_, a), (_, b) in zip(after, autograd, strict=True))
    broken = BrokenNet()
    broken.train()
    with pytest.raises(RuntimeError, match="deliberately broken"):
        find_blocks(broken, dict(conv_modules(broken)), torch.randn(1, 3, 8, 8))
    assert broken.training and _hook_count(broken) == 0


def test_a_probe_stops_once_every_tap_was_seen() -> None:
    model = TinyNet()
    adapter = TorchAdapter(model, torch.device("cpu"), input_shape=(3, 8, 8))
    calls: list[str] = []
    model.head.register_forward_hook(lambda *args: calls.append("head"))
    seen: list[Tap] = []
    with adapter.recording([Tap("features.0")], lambda tap, x: seen.append(tap)) as rec:
        assert rec.probe(torch.randn(2, 3, 8, 8)) is None
        rec.forward(torch.randn(2, 3, 8, 8))
    assert seen == [Tap("features.0")] * 2 and calls == ["head"]  # the probe never reached it


def test_a_fresh_reference_is_built_only_where_it_is_untrained(
    tmp_path: Path, images: Path
) -> None:
    from reportgen.models.load import load_model

    weights = tmp_path / "tiny.pt"
    torch.manual_seed(5)
    torch.save(TinyNet().state_dict(), weights)
    spec = f"{MODELS}:TinyNet"
    found = {}
    for name, given in (("file", str(weights)), ("own", "DEFAULT"), ("none", "none")):
        config = BuildConfig.from_options(
            {"model": spec, "images": images, "weights": given, "input_size": 24}
        )
        found[name] = load_model(config.model, config.run).fresh_norm_medians
    # A weights file goes into a second, untrained instance of the factory's model.
    assert set(found["file"]) == {name for name, _ in conv_modules(TinyNet())}
    # A factory that keeps its own weights may have loaded trained ones: no reference.
    assert found["own"] == {} and found["none"] == {}
