"""Keras models as ``--model model.keras`` / ``model.h5``, on the PyTorch backend: every conv
found, maps equal to Keras's own intermediate outputs, filters that apply as Keras applies
its kernels, predictions equal to Keras's, and the preprocessing chosen and stated."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras
import numpy as np
import pytest
import torch
from helpers import assert_clean_error, check_site, image_folder, run
from keras import layers
from torch.nn import functional as F

from reportgen.config import ModelSpec, RunConfig
from reportgen.models.adapter import Tap
from reportgen.models.load import load_model

CONVS = ["c1", "dw", "sep", "tr"]


def _model(rescale: bool = True, name: str = "tiny") -> keras.Model:
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            *([layers.Rescaling(1 / 255.0)] if rescale else []),
            layers.Conv2D(8, 3, padding="same", activation="relu", name="c1"),
            layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw"),
            layers.SeparableConv2D(12, 3, padding="same", name="sep"),
            layers.Conv2DTranspose(6, 3, strides=2, padding="same", name="tr"),
            layers.GlobalAveragePooling2D(),
            layers.Dense(4, activation="softmax", name="head"),
        ],
        name=name,
    )


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("keras")
    model = _model()
    files = {"keras": root / "tiny.keras", "h5": root / "tiny.h5"}
    for path in files.values():
        model.save(path)
    return files


@pytest.mark.parametrize("kind", ["keras", "h5"])
def test_keras_model_matches_keras(saved: dict[str, Path], kind: str) -> None:
    loaded = load_model(ModelSpec(model=str(saved[kind])), RunConfig(device="cpu"))
    adapter = loaded.adapter
    convs = adapter.conv_layers()
    assert [c.name for c in convs] == CONVS
    assert [c.type for c in convs] == [
        "Conv2D",
        "DepthwiseConv2D",
        "SeparableConv2D",
        "Conv2DTranspose",
    ]
    model = keras.saving.load_model(str(saved[kind]), compile=False)
    assert loaded.parameters == model.count_params()
    assert "built-in relu" in (convs[0].note or "")
    # 0..255 pixels for a model that rescales them itself.
    assert loaded.preprocess.mean == (0.0, 0.0, 0.0) and "Rescaling" in loaded.preprocess.source

    pixels = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 255
    nhwc = pixels.permute(0, 2, 3, 1)
    # Keras's own intermediate outputs: each layer called on the one before.
    flowing, by_layer = nhwc, {}
    for layer in model.layers:
        flowing = layer(flowing)
        by_layer[layer.name] = torch.as_tensor(flowing).detach()
    expected = [by_layer[n] for n in CONVS]
    probabilities = by_layer["head"]
    seen: dict[str, torch.Tensor] = {}
    with (
        torch.no_grad(),
        adapter.recording(
            [Tap(n) for n in CONVS], lambda t, v: seen.__setitem__(t.layer, v.clone())
        ) as rec,
    ):
        logits = rec.forward(pixels)
    assert torch.allclose(logits.softmax(dim=1), probabilities, atol=1e-5)  # not softmaxed twice
    for name, want in zip(CONVS, expected, strict=True):
        assert torch.allclose(seen[name], want.permute(0, 3, 1, 2), atol=1e-4), name

    # The filters, applied as torch applies a conv, give what the Keras layer computes.
    inputs = [nhwc / 255.0, *expected[:-1]]
    for conv, source in zip(convs, inputs, strict=True):
        layer = model.get_layer(conv.name)
        x = torch.as_tensor(source).permute(0, 3, 1, 2)
        w = adapter.filters(conv.name)
        bias = torch.as_tensor(layer.bias.value).detach()
        if conv.transposed:
            # Keras's "same" keeps the first 2 × 32 positions of the full transposed conv.
            out = F.conv_transpose2d(x, w.transpose(0, 1), bias, stride=2)[:, :, :64, :64]
        else:
            out = F.conv2d(x, w, bias, padding="same", groups=conv.groups)
        if conv.name == "c1":
            out = out.relu()
        want = torch.as_tensor(layer(source)).detach().permute(0, 3, 1, 2)
        assert torch.allclose(out, want, atol=1e-4), conv.name


def test_a_keras_model_builds_a_site(saved: dict[str, Path], tmp_path: Path) -> None:
    images = image_folder(tmp_path / "images", {"a": 2, "b": 2})
    site = tmp_path / "site"
    code, _, err = run(
        "--model", str(saved["h5"]), "--images", str(images), "--out", str(site), "-q"
    )
    assert code == 0, err
    document = json.loads((site / "report.json").read_text())
    assert [layer["name"] for layer in document["layers"]] == CONVS
    assert document["layers"][0]["output_shape"] == [8, 32, 32]  # NCHW, from NHWC maps
    assert "PyTorch backend" in document["model"]["weights"]
    assert document["cam"]["layer"] == "tr" and document["cam"]["point"] == "conv output"
    assert check_site(site) == []


def test_keras_preprocessing_by_family_or_required(tmp_path: Path) -> None:
    plain = tmp_path / "plain.keras"
    _model(rescale=False, name="tiny").save(plain)
    images = image_folder(tmp_path / "images", {"a": 1})
    code, out, err = run(
        "--model", str(plain), "--images", str(images), "--out", str(tmp_path / "s")
    )
    assert_clean_error(code, out, err, "--mean and --std")
    caffe = tmp_path / "caffe.keras"
    _model(rescale=False, name="vgg16_like").save(caffe)
    loaded = load_model(ModelSpec(model=str(caffe)), RunConfig(device="cpu"))
    assert loaded.preprocess.bgr and "caffe" in loaded.preprocess.source
    assert np.allclose(loaded.preprocess.mean, (103.939 / 255, 116.779 / 255, 123.68 / 255))


def test_a_lambda_layer_needs_allow_pickle(tmp_path: Path) -> None:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((16, 16, 3)), layers.Lambda(lambda x: x * 2.0), layers.Conv2D(4, 3, name="c")]
    )
    path = tmp_path / "lambda.keras"
    model.save(path)
    images = image_folder(tmp_path / "images", {"a": 1})
    code, out, err = run(
        "--model", str(path), "--images", str(images), "--out", str(tmp_path / "s")
    )
    assert_clean_error(code, out, err, "Lambda", "--allow-pickle")


def test_convs_inside_nested_models_are_found(tmp_path: Path) -> None:
    keras.utils.set_random_seed(0)
    block = keras.Sequential(
        [keras.Input((16, 16, 4)), layers.Conv2D(4, 3, padding="same", name="inner")],
        name="block",
    )
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(4, 3, padding="same", name="outer")(inputs)
    x = block(x)
    outputs = layers.Dense(2)(layers.GlobalAveragePooling2D()(x))
    path = tmp_path / "nested.keras"
    keras.Model(inputs, outputs, name="nested").save(path)
    spec = ModelSpec(model=str(path), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    loaded = load_model(spec, RunConfig(device="cpu"))
    assert [c.name for c in loaded.adapter.conv_layers()] == ["outer", "inner"]
    assert loaded.preprocess.source == "--mean and --std"


def test_keras_class_activation_maps_at_the_last_conv(saved: dict[str, Path]) -> None:
    loaded = load_model(ModelSpec(model=str(saved["keras"])), RunConfig(device="cpu"))
    layer = loaded.adapter.cam_layer()
    assert (layer.name, layer.channels, layer.height, layer.width) == ("tr", 6, 64, 64)
    pixels = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3)) * 255
    with loaded.adapter.gradients() as recorder:
        activations, (gradients,) = recorder.run(pixels, [[0], [1]])
    # The same, with Keras's layers called in turn and torch's autograd.
    model = keras.saving.load_model(str(saved["keras"]), compile=False)
    flowing = pixels.permute(0, 2, 3, 1)
    with torch.enable_grad():
        for each in model.layers:
            flowing = each(flowing)
            if each.name == "tr":
                kept = flowing
        score = flowing.log()[torch.arange(2), torch.tensor([0, 1])].sum()
        (expected,) = torch.autograd.grad(score, kept)
    assert torch.allclose(activations, kept.detach().permute(0, 3, 1, 2), atol=1e-5)
    assert torch.allclose(gradients, expected.permute(0, 3, 1, 2), atol=1e-6)


def test_batch_norm_and_activation_layers_after_a_conv_are_matched(tmp_path: Path) -> None:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            layers.Rescaling(1 / 255.0),
            layers.Conv2D(8, 3, padding="same", use_bias=False, name="c1"),
            layers.BatchNormalization(name="bn1"),
            layers.ReLU(name="relu1"),
            layers.Conv2D(6, 3, padding="same", name="c2"),
            layers.Activation("relu", name="act2"),
            layers.GlobalAveragePooling2D(),
            layers.Dense(3, name="head"),
        ],
        name="bnnet",
    )
    path = tmp_path / "bnnet.keras"
    model.save(path)
    loaded = load_model(ModelSpec(model=str(path)), RunConfig(device="cpu"))
    adapter = loaded.adapter
    first, second = adapter.block("c1"), adapter.block("c2")
    assert first.norm is not None and first.norm.name == "bn1"
    assert first.norm.running_var == (1.0,) * 8  # Keras's moving variance, read as torch's
    assert (first.activation, first.activation_type) == ("relu1", "ReLU")
    assert second.norm is None and (second.activation, second.activation_type) == ("act2", "ReLU")
    model = keras.saving.load_model(str(path), compile=False)
    pixels = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(4)) * 255
    flowing, by_layer = pixels.permute(0, 2, 3, 1), {}
    for each in model.layers:
        flowing = each(flowing)
        by_layer[each.name] = torch.as_tensor(flowing).detach()
    seen: dict[str, torch.Tensor] = {}
    taps = [Tap("c1", "activation"), Tap("c2", "activation")]
    with (
        torch.no_grad(),
        adapter.recording(taps, lambda t, v: seen.__setitem__(t.layer, v.clone())) as rec,
    ):
        rec.forward(pixels)
    assert torch.allclose(seen["c1"], by_layer["relu1"].permute(0, 3, 1, 2), atol=1e-5)
    assert torch.allclose(seen["c2"], by_layer["act2"].permute(0, 3, 1, 2), atol=1e-5)
