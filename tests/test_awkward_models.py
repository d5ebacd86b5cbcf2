"""Models and checkpoints as people have them: wrapped, pickled, scripted, odd outputs and convs.

Also covered elsewhere: a conv module called twice in one forward
(``test_hooks.test_module_called_twice_is_recorded_once_and_says_so``), a forward that
raises (``test_cli.test_previous_site_is_replaced_and_survives_a_failed_build`` names the
images of the failing batch), and a one-channel model with a transposed conv
(``test_cli.test_factory_function_and_grayscale_transposed_model``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from helpers import assert_clean_error, check_site, cli_args, read_report_json, run
from models import TinyNet


def build(
    images: Path, out: Path, *extra: str, model: str = "TinyNet", weights: str = "none"
) -> dict:
    code, _, err = run(
        *cli_args(
            images,
            out,
            "--input-size",
            "32",
            "-q",
            "--examples",
            "2",
            *extra,
            model=model,
            weights=weights,
        )
    )
    assert code == 0, err
    assert check_site(out) == []
    return read_report_json(out)


def first_norms(state: dict[str, torch.Tensor]) -> list[float]:
    return torch.linalg.vector_norm(state["features.0.weight"].flatten(1), dim=1).tolist()


def test_lightning_and_dataparallel_checkpoints(images: Path, tmp_path: Path) -> None:
    torch.manual_seed(7)
    state = TinyNet().state_dict()
    lightning = {
        "epoch": 3,
        "global_step": 120,
        "pytorch-lightning_version": "2.4.0",
        "state_dict": {
            **{f"model.{k}": v for k, v in state.items()},
            "loss_fn.pos_weight": torch.ones(3),
        },
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.1}]}],
        "lr_schedulers": [],
        "hyper_parameters": {"lr": 0.1, "classes": 3},
    }
    torch.save(lightning, tmp_path / "epoch=3-step=120.ckpt")
    data = build(images, tmp_path / "lightning", weights=str(tmp_path / "epoch=3-step=120.ckpt"))
    assert data["layers"][0]["filter_norms"] == pytest.approx(first_norms(state), rel=1e-5)
    assert "key prefix 'model.' removed, 1 other entry ignored" in data["model"]["weights"]

    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "dp.pth")
    data = build(images, tmp_path / "dp", weights=str(tmp_path / "dp.pth"))
    assert data["layers"][0]["filter_norms"] == pytest.approx(first_norms(state), rel=1e-5)


def test_two_copies_of_the_weights_are_refused_not_guessed(images: Path, tmp_path: Path) -> None:
    state = TinyNet().state_dict()
    both = {
        **{f"model.{k}": v for k, v in state.items()},
        **{f"ema.{k}": v for k, v in state.items()},
    }
    torch.save({"state_dict": both}, tmp_path / "both.ckpt")
    code, out, err = run(*cli_args(images, None, weights=str(tmp_path / "both.ckpt")))
    assert_clean_error(code, out, err, "several copies", "'ema.' and 'model.'")


class _Payload:
    """Unpickling this creates a file: proof that a refused pickle was never unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (os.system, (f"touch {self.marker}",))


def test_pickles_are_refused_without_running_them(images: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    torch.save(
        {"state_dict": TinyNet().state_dict(), "extra": _Payload(marker)}, tmp_path / "evil.pt"
    )
    code, out, err = run(*cli_args(images, None, weights=str(tmp_path / "evil.pt")))
    assert_clean_error(code, out, err, "is a pickled Python object", "--allow-pickle")
    assert not marker.exists()


def test_pickled_model_is_refused_unless_allowed(images: Path, tmp_path: Path) -> None:
    torch.manual_seed(3)
    model = TinyNet()
    torch.save(model, tmp_path / "whole.pt")
    code, out, err = run(*cli_args(images, None, weights=str(tmp_path / "whole.pt")))
    assert_clean_error(
        code, out, err, "is a pickled Python object", "models.TinyNet", "--allow-pickle"
    )

    data = build(images, tmp_path / "allowed", "--allow-pickle", weights=str(tmp_path / "whole.pt"))
    assert "pickled TinyNet, read with --allow-pickle" in data["model"]["weights"]
    assert data["layers"][0]["filter_norms"] == pytest.approx(
        first_norms(model.state_dict()), rel=1e-5
    )


def test_torchscript_is_refused_unless_allowed(images: Path, tmp_path: Path) -> None:
    torch.manual_seed(4)
    model = TinyNet()
    torch.jit.save(torch.jit.script(model), tmp_path / "scripted.pt")
    code, out, err = run(*cli_args(images, None, weights=str(tmp_path / "scripted.pt")))
    assert_clean_error(code, out, err, "is a TorchScript archive", "--allow-pickle")

    data = build(
        images, tmp_path / "allowed", "--allow-pickle", weights=str(tmp_path / "scripted.pt")
    )
    assert "TorchScript archive, read with --allow-pickle" in data["model"]["weights"]
    assert data["layers"][0]["filter_norms"] == pytest.approx(
        first_norms(model.state_dict()), rel=1e-5
    )


def test_where_the_logits_come_from_is_stated_and_can_be_chosen(
    images: Path, tmp_path: Path
) -> None:
    said = {
        "TinyNet": "the output tensor",
        "DictNet": "the 'logits' entry of the returned dict",
        "TupleNet": "field 'logits' (the first) of the returned namedtuple Out",
        "PairNet": "item 0 of the returned tuple",
    }
    for model, where in said.items():
        data = build(images, tmp_path / model, model=model)
        assert data["model"]["logits"] == where
        assert where.replace("'", "&#39;") in (tmp_path / model / "index.html").read_text()

    data = build(images, tmp_path / "pair-1", "--output-key", "1", model="PairNet")
    assert data["model"]["logits"] == "item 1 of the returned tuple"
    data = build(images, tmp_path / "scores", "--output-key", "scores", model="ScoresNet")
    assert data["model"]["logits"] == "the 'scores' entry of the returned dict"
    data = build(images, tmp_path / "aux", "--output-key", "logits", model="TupleNet")
    assert data["model"]["logits"] == "field 'logits' of the returned namedtuple Out"

    code, out, err = run(*cli_args(images, None, "--input-size", "32", model="ScoresNet"))
    assert_clean_error(code, out, err, "keys embedding, scores", "--output-key")
    code, out, err = run(
        *cli_args(images, None, "--input-size", "32", "--output-key", "probs", model="ScoresNet")
    )
    assert_clean_error(
        code, out, err, "--output-key 'probs' is not among the keys", "embedding, scores"
    )
    code, out, err = run(
        *cli_args(images, None, "--input-size", "32", "--output-key", "5", model="PairNet")
    )
    assert_clean_error(code, out, err, "an index from 0 to 1")


def test_every_kind_of_conv(images: Path, tmp_path: Path) -> None:
    from models import MixedConvNet

    data = build(images, tmp_path / "mixed", model="MixedConvNet")
    layers = {layer["name"]: layer for layer in data["layers"]}
    assert [
        (n, layer["type"], layer["groups"], layer["kernel_size"]) for n, layer in layers.items()
    ] == [
        ("plain", "Conv2d", 1, [3, 3]),
        ("grouped", "Conv2d", 4, [3, 3]),
        ("depthwise", "Conv2d", 8, [3, 3]),
        ("pointwise", "Conv2d", 1, [1, 1]),
        ("up", "ConvTranspose2d", 1, [2, 2]),
    ]
    assert layers["up"]["output_shape"] == [4, 32, 32]
    torch.manual_seed(0)  # the build's --seed 0
    model = MixedConvNet()
    # A transposed conv's weight is [in, out, k, k]: its filters are per output channel.
    up = model.up.weight.detach().transpose(0, 1).flatten(1)
    assert layers["up"]["filter_norms"] == pytest.approx(
        torch.linalg.vector_norm(up, dim=1).tolist(), rel=1e-5
    )
    assert len(layers["up"]["filter_norms"]) == 4
    assert len(layers["depthwise"]["filter_norms"]) == 8
    filters = sorted(p.name for p in (tmp_path / "mixed" / "img" / "filters").iterdir())
    assert len(filters) == 5
    # The last block is a transposed conv with a functional ReLU: its maps are at its output.
    cam = data["cam"]
    assert (cam["layer"], cam["point"], cam["shape"]) == ("up", "conv output", [4, 32, 32])
    assert cam["randomized_layer"] == "up" and all(i["cams"] for i in data["images"][:2])


def test_channels_last_gives_the_same_report(images: Path, tmp_path: Path) -> None:
    plain = build(images, tmp_path / "plain")
    last = build(images, tmp_path / "last", model="ChannelsLastNet")
    assert [i["prediction"] for i in last["images"]] == [i["prediction"] for i in plain["images"]]
    for a, b in zip(last["layers"], plain["layers"], strict=True):
        assert a["output_shape"] == b["output_shape"]
        for point in ("conv", "activation"):
            mine, theirs = a["points"][point], b["points"][point]
            assert mine["channel_mean"] == pytest.approx(theirs["channel_mean"], rel=1e-4, abs=1e-5)
            assert mine["channel_max"] == pytest.approx(theirs["channel_max"], rel=1e-4, abs=1e-5)
