"""timm models as ``--model timm:NAME``: every conv found, maps, filters and predictions equal
timm's own, the layers that are not plain convs named as such, and weights from the cache."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import timm
import torch
from click.testing import CliRunner
from helpers import assert_clean_error, check_site, image_folder
from safetensors.torch import save_file
from torch import nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from reportgen.commands.cli import main
from reportgen.config import ModelSpec, RunConfig
from reportgen.models import timm_source
from reportgen.models.adapter import Tap
from reportgen.models.load import load_model
from reportgen.models.source import seeded

# CondConv2d (4 experts mixed per image), ScaledStdConv2d (weights standardised per call),
# Conv2dSame (TensorFlow "same" padding) and MobileOne (reparameterised for inference).
ARCHITECTURES = {
    "efficientnet_cc_b0_4e": "mixes 4 kernels",
    "nf_resnet26": "weight computed from the stored one",
    "tf_mobilenetv3_small_minimal_100": "pads each input itself",
    "mobileone_s0": None,
}


class _ConvCalls(TorchFunctionMode):
    """Name the innermost module around every conv2d call: timm's convs by what they do."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.callers: set[str] = set()
        self.handles = []
        for name, module in model.named_modules():
            self.handles.append(module.register_forward_pre_hook(self._enter(name)))
            self.handles.append(module.register_forward_hook(self._leave))

    def _enter(self, name: str) -> Callable[..., None]:
        def hook(*_: object) -> None:
            self.stack.append(name)

        return hook

    def _leave(self, *_: object) -> None:
        self.stack.pop()

    def __torch_function__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        if func in (F.conv2d, torch.conv2d) and self.stack:
            self.callers.add(self.stack[-1])
        return func(*args, **(kwargs or {}))


def _reference(name: str) -> nn.Module:
    """Build the model as timm does, with featreport's seed, in its inference form."""
    module = seeded(0, lambda: timm.create_model(name, pretrained=False))
    if any(hasattr(m, "reparameterize") for m in module.modules()):
        from timm.utils.model import reparameterize_model

        module = reparameterize_model(module)
    return module.eval()


def _applied_weight(module: nn.Module) -> torch.Tensor:
    """The weight a conv applies, written out from timm's definitions."""
    weight = module.weight.detach()
    if type(module).__name__ == "CondConv2d":
        experts = weight.shape[0]
        shape = (experts, module.out_channels, module.in_channels // module.groups)
        return weight.reshape(*shape, *module.kernel_size).mean(dim=0)
    if type(module).__name__ == "ScaledStdConv2d":
        flat = weight.reshape(module.out_channels, -1)
        mean = flat.mean(dim=1, keepdim=True)
        var = flat.var(dim=1, unbiased=False, keepdim=True)
        scale = (module.gain.detach().reshape(-1, 1) * module.scale).reshape(-1, 1)
        return ((flat - mean) / torch.sqrt(var + module.eps) * scale).reshape_as(weight)
    return weight


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_timm_architecture_matches_timm(name: str) -> None:
    spec = ModelSpec(model=f"timm:{name}", weights="none", input_size=64)
    loaded = load_model(spec, RunConfig(device="cpu"))
    adapter = loaded.adapter
    reference = _reference(name)
    modules = dict(reference.named_modules())
    batch = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))

    with torch.no_grad(), _ConvCalls(reference) as calls:
        expected_logits = reference(batch)
    for handle in calls.handles:
        handle.remove()
    convs = adapter.conv_layers()
    names = [c.name for c in convs]
    assert set(names) == calls.callers  # every module that convolves, and nothing else

    outputs: dict[str, torch.Tensor] = {}
    handles = [
        modules[n].register_forward_hook(
            lambda m, i, o, n=n: outputs.__setitem__(n, o.detach().clone())
        )
        for n in names
    ]
    with torch.no_grad():
        reference(batch)
    for handle in handles:
        handle.remove()
    seen: dict[str, torch.Tensor] = {}
    with adapter.recording(
        [Tap(n) for n in names], lambda t, x: seen.__setitem__(t.layer, x.clone())
    ) as rec:
        logits = rec.forward(batch)
    assert torch.allclose(logits, expected_logits, atol=1e-5)
    for n in names:
        assert torch.allclose(seen[n], outputs[n], atol=1e-5), n
        assert torch.allclose(adapter.filters(n), _applied_weight(modules[n]), atol=1e-6), n

    note = ARCHITECTURES[name]
    if note is not None:
        assert any(note in (c.note or "") for c in convs)
    else:
        assert all(c.note is None for c in convs)
        assert "inference form" in loaded.weights
    assert loaded.imagenet_classes and len(loaded.categories or ()) == 1000


@pytest.fixture
def few(tmp_path: Path) -> Path:
    return image_folder(tmp_path / "images", {"tench": 2, "goldfish": 2})


def _build(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["build", *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def _fake_cache(cache: Path, name: str, seed: int) -> dict[str, torch.Tensor]:
    """Put weights where the Hugging Face hub's cache keeps timm's pretrained file."""
    model = seeded(seed, lambda: timm.create_model(name, pretrained=False))
    repo = cache / ("models--" + model.pretrained_cfg["hf_hub_id"].replace("/", "--"))
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(snapshot / "model.safetensors"))
    return state


def test_pretrained_weights_come_from_the_cache_with_timm_preprocessing(
    few: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    state = _fake_cache(tmp_path / "hub", "resnet10t", seed=7)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(timm_source, "_reachable", lambda *a, **k: pytest.fail("went online"))
    loaded = load_model(ModelSpec(model="timm:resnet10t"), RunConfig(device="cpu"))
    assert torch.equal(loaded.adapter.filters("conv1.0"), state["conv1.0.weight"])
    assert loaded.weights == "timm pretrained resnet10t.c3_in1k"
    config = timm.data.resolve_data_config({}, model=timm.create_model("resnet10t"))
    assert loaded.preprocess.crop == config["input_size"][-1]
    assert loaded.preprocess.interpolation == config["interpolation"] == "bicubic"
    assert loaded.preprocess.mean == tuple(config["mean"])
    assert "timm's resolve_data_config" in loaded.preprocess.source

    site = tmp_path / "site"
    code, _, err = _build(
        "--model",
        "timm:resnet10t",
        "--images",
        str(few),
        "--out",
        str(site),
        "-q",
        "--units",
        "0",
        "--cam",
        "none",
    )
    assert code == 0, err
    document = json.loads((site / "report.json").read_text())
    assert document["model"]["name"] == "timm:resnet10t"
    assert document["label_source"] == "folders" and document["warnings"] == []
    assert check_site(site) == []


def test_pretrained_weights_offline_fail_at_once_with_what_to_do(
    few: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr(timm_source, "_reachable", lambda *a, **k: False)
    code, out, err = _build(
        "--model", "timm:resnet10t", "--images", str(few), "--out", str(tmp_path / "site")
    )
    assert_clean_error(code, out, err, "timm:resnet10t", "--weights none", "no connection")
    assert not (tmp_path / "site").exists()


def test_unknown_timm_model_names_close_ones(few: Path, tmp_path: Path) -> None:
    code, out, err = _build(
        "--model",
        "timm:resnet10tt",
        "--weights",
        "none",
        "--images",
        str(few),
        "--out",
        str(tmp_path / "site"),
    )
    assert_clean_error(code, out, err, "unknown timm model", "resnet10t")
