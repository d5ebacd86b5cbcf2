"""Real torchvision architectures, untrained and small, and the offline weight cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from click.testing import CliRunner
from helpers import check_site, image_folder, read_report_json

from reportgen.commands.cli import main

ARCHITECTURES = [
    ("resnet18", 64),
    ("vgg11", 64),
    ("mobilenet_v3_small", 64),
    ("efficientnet_b0", 64),
    ("densenet121", 64),
    ("convnext_tiny", 64),
    ("inception_v3", 96),
    ("squeezenet1_1", 64),
    ("shufflenet_v2_x0_5", 64),
]


CAM_LAYERS = {
    "resnet18": ("layer4", 512),
    "vgg11": ("features.19", 512),  # the last conv's ReLU, before the max pool
    "mobilenet_v3_small": ("features", 576),
    "efficientnet_b0": ("features", 1280),
    "densenet121": ("features", 1024),  # after norm5, not the last layer's 32 new channels
    "convnext_tiny": ("features", 768),  # the last block's residual sum, not its depthwise conv
    "inception_v3": ("Mixed_6e", 768),  # 4×4 at 96 px; Mixed_7a pools to 1×1
    "squeezenet1_1": ("features", 512),
    "shufflenet_v2_x0_5": ("conv5", 1024),
}


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return image_folder(tmp_path_factory.mktemp("tv") / "images", {"tabby": 2, "n01440764": 1})


def expected_convs(name: str) -> int:
    model = torchvision.models.get_model(name, weights=None)
    return sum(isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) for m in model.modules())


@pytest.mark.slow
@pytest.mark.parametrize(("name", "size"), ARCHITECTURES)
def test_architecture_builds(name: str, size: int, photos: Path, tmp_path: Path) -> None:
    out = tmp_path / name
    result = CliRunner().invoke(
        main,
        [
            "build",
            "--model",
            name,
            "--weights",
            "none",
            "--images",
            str(photos),
            "--out",
            str(out),
            "--input-size",
            str(size),
            "--examples",
            "1",
            "--max-channels",
            "4",
            "--units",
            "1",  # one unit page per layer still runs the unit pass on every architecture
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output + result.stderr
    data = read_report_json(out)
    layers = data["layers"]
    not_called = data["model"]["conv_layers_not_called"]
    assert len(layers) + len(not_called) == expected_convs(name)
    assert [layer["depth"] for layer in layers] == list(range(len(layers)))
    assert data["model"]["untrained"] is True
    # ImageNet class names come from torchvision's metadata, and folders match them
    # by name ("tabby") and by WordNet id ("n01440764" is tench).
    labels = sorted({i["label"] for i in data["images"]})
    assert labels == ["tabby", "tench"]
    assert check_site(out) == []
    # Every architecture gets class activation maps at a layer chosen for it.
    cam = data["cam"]
    assert cam is not None and cam["shape"][1] * cam["shape"][2] > 1, cam
    assert any(i["cams"] for i in data["images"])
    # The last feature map the forward pass makes: not a pooled copy of it, not a branch
    # inside a block that pools it away, and every one of them can be sanity-checked.
    assert (cam["layer"], cam["shape"][0]) == CAM_LAYERS[name], cam
    assert cam["randomized_layer"] is not None
    if name == "inception_v3":
        assert any("AuxLogits" in n for n in not_called), "aux head is idle in eval mode"


def test_torchvision_weights_load_offline_from_the_torch_home_cache(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights = torchvision.models.get_model_weights("squeezenet1_1").DEFAULT
    cache = tmp_path / "torch-home" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.manual_seed(123)
    state = torchvision.models.squeezenet1_1(weights=None).state_dict()
    torch.save(state, cache / weights.url.rsplit("/", 1)[-1])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached file must be used; nothing may be downloaded")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    out = tmp_path / "site"
    result = CliRunner().invoke(
        main,
        [
            "build",
            "--model",
            "squeezenet1_1",
            "--images",
            str(photos),
            "--out",
            str(out),
            "--examples",
            "1",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output + result.stderr
    data = read_report_json(out)
    assert data["model"]["weights"] == f"torchvision {weights}"
    assert data["model"]["untrained"] is False
    norms = data["layers"][0]["filter_norms"]
    expected = torch.linalg.vector_norm(state["features.0.weight"].flatten(1), dim=1)
    assert norms == pytest.approx(expected.tolist(), rel=1e-5)
    # The weights' own transforms() were used, not the --input-size defaults.
    transform = weights.transforms()
    assert data["layers"][0]["output_shape"][1] < transform.crop_size[0]
    assert f"centre crop {transform.crop_size[0]}" in data["model"]["preprocessing"]
    index = (out / "index.html").read_text()
    # The cached file holds a fresh initialisation, so the weights are not declared
    # untrained, but the untrained-weights finding measures that they are.
    assert "initialized at random (--weights none)" not in index
    assert "These weights look untrained" in index
    assert "untrained_weights" in {finding["kind"] for finding in data["findings"]}
