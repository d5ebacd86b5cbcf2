"""ONNX files as ``--model model.onnx``: exports of torchvision models by both torch exporters,
with and without batch norm folded, with a fixed and a dynamic batch; every conv found, and
maps, filters and predictions equal to onnxruntime's and the file's own."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
import torchvision
from helpers import check_site, image_folder, run
from onnx import numpy_helper

from reportgen.config import ModelSpec, RunConfig
from reportgen.models.adapter import Tap
from reportgen.models.load import load_model
from reportgen.models.onnx_source import FOLDED

SIZE = 64
# (architecture, exporter, batch norm folded, fixed batch): every axis is covered twice.
CASES = [
    ("resnet18", "torchscript", True, None),
    ("resnet18", "dynamo", False, 2),
    ("mobilenet_v3_small", "torchscript", False, 2),
    ("mobilenet_v3_small", "dynamo", True, None),
]


def export(path: Path, name: str, exporter: str, folded: bool, batch: int | None) -> Path:
    """Export a seeded untrained torchvision model the way its case asks."""
    torch.manual_seed(0)
    model = torchvision.models.get_model(name).eval()
    x = torch.randn(batch or 1, 3, SIZE, SIZE)
    if exporter == "torchscript":
        extra: dict[str, object] = {} if batch else {"dynamic_axes": {"input": {0: "batch"}}}
        if not folded:  # keep batch norm: no eval-mode fusion, no constant folding
            extra |= {"training": torch.onnx.TrainingMode.PRESERVE, "do_constant_folding": False}
        torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["input"], **extra)
    else:
        shapes = None if batch else {"x": {0: torch.export.Dim("batch", min=1, max=64)}}
        torch.onnx.export(
            model, (x,), str(path), dynamo=True, optimize=folded, dynamic_shapes=shapes
        )
    return path


def intermediate(path: Path, outputs: list[str], x: np.ndarray) -> dict[str, np.ndarray]:
    """Run onnxruntime with the named tensors made graph outputs too."""
    model = onnx.load(str(path))
    for name in outputs:
        model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    names = [o.name for o in session.get_outputs()]
    feed = {session.get_inputs()[0].name: x}
    return dict(zip(names, session.run(None, feed), strict=True))


@pytest.mark.parametrize(("name", "exporter", "folded", "batch"), CASES)
def test_onnx_export_matches_onnxruntime(
    tmp_path: Path, name: str, exporter: str, folded: bool, batch: int | None
) -> None:
    path = export(tmp_path / "model.onnx", name, exporter, folded, batch)
    graph = onnx.load(str(path)).graph
    conv_nodes = [n for n in graph.node if n.op_type == "Conv"]
    assert (not any(n.op_type == "BatchNormalization" for n in graph.node)) == folded

    loaded = load_model(ModelSpec(model=str(path)), RunConfig(device="cpu"))
    adapter = loaded.adapter
    convs = adapter.conv_layers()
    assert len(convs) == len(conv_nodes)  # every conv of the graph, once
    torch_names = {
        n
        for n, m in torchvision.models.get_model(name).named_modules()
        if isinstance(m, torch.nn.Conv2d)
    }
    assert {c.name for c in convs} == torch_names  # the exporter's names, not the converter's
    assert all((c.note == FOLDED) == folded for c in convs)
    assert "agrees with onnxruntime" in loaded.weights
    assert loaded.preprocess.crop == SIZE  # from the ONNX input's size

    x = torch.randn(batch or 3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    by_output = {n.output[0]: n for n in conv_nodes}
    # featreport's name for each conv node: the same order in the graph and in the report.
    names = [c.name for c in convs]
    expected = intermediate(path, list(by_output), x.numpy())
    initializers = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    seen: dict[str, torch.Tensor] = {}
    with (
        torch.no_grad(),
        adapter.recording(
            [Tap(n) for n in names], lambda t, v: seen.__setitem__(t.layer, v.clone())
        ) as rec,
    ):
        logits = rec.forward(x)
    assert np.allclose(logits.numpy(), expected[graph.output[0].name], atol=1e-4)
    for layer, node in zip(names, conv_nodes, strict=True):
        assert np.allclose(seen[layer].numpy(), expected[node.output[0]], atol=1e-4), layer
        kernel = initializers[node.input[1]]
        assert np.array_equal(adapter.filters(layer).numpy(), kernel), layer


def test_an_onnx_model_builds_a_site_and_says_what_it_is(tmp_path: Path) -> None:
    path = export(tmp_path / "r18.onnx", "resnet18", "torchscript", True, None)
    images = image_folder(tmp_path / "images", {"a": 2, "b": 2})
    site = tmp_path / "site"
    code, _, err = run(
        "--model", str(path), "--images", str(images), "--out", str(site), "-q", "--units", "0"
    )
    assert code == 0, err
    document = json.loads((site / "report.json").read_text())
    assert document["model"]["name"] == "r18.onnx"
    assert "batch norm was folded" in document["model"]["weights"]
    assert document["layers"][0]["name"] == "conv1"
    assert document["layers"][0]["conv_note"] == FOLDED
    assert check_site(site) == []


def test_onnx_refuses_weights_and_broken_files(tmp_path: Path) -> None:
    from helpers import assert_clean_error

    images = image_folder(tmp_path / "images", {"a": 1})
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not onnx")
    code, out, err = run(
        "--model", str(broken), "--images", str(images), "--out", str(tmp_path / "s")
    )
    assert_clean_error(code, out, err, "broken.onnx", "not a readable ONNX file")
    path = export(tmp_path / "r18.onnx", "resnet18", "torchscript", True, None)
    code, out, err = run(
        "--model",
        str(path),
        "--weights",
        "none",
        "--images",
        str(images),
        "--out",
        str(tmp_path / "s"),
    )
    assert_clean_error(code, out, err, "carries its own weights")


class _ChannelsLast(torch.nn.Module):
    """A torch model that takes NHWC batches, as a Keras export does."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torchvision.models.get_model("resnet18").eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.permute(0, 3, 1, 2))


def test_an_nhwc_input_is_fed_channels_last(tmp_path: Path) -> None:
    path = tmp_path / "nhwc.onnx"
    x = torch.randn(1, SIZE, SIZE, 3)
    model = _ChannelsLast().eval()
    torch.onnx.export(
        model,
        (x,),
        str(path),
        dynamo=False,
        input_names=["input"],
        dynamic_axes={"input": {0: "batch"}},
    )
    loaded = load_model(ModelSpec(model=str(path)), RunConfig(device="cpu"))
    batch = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad(), loaded.adapter.recording([], lambda t, v: None) as rec:
        logits = rec.forward(batch)
        expected = model(batch.permute(0, 2, 3, 1))
    assert torch.allclose(logits, expected, atol=1e-4)
    assert loaded.preprocess.crop == SIZE


def test_featreport_diff_takes_onnx_files(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from reportgen.commands.cli import main

    path = export(tmp_path / "r18.onnx", "resnet18", "torchscript", True, None)
    images = image_folder(tmp_path / "images", {"a": 3, "b": 3})
    site = tmp_path / "diff"
    result = CliRunner().invoke(
        main,
        [
            "diff",
            "--model",
            str(path),
            "--model-b",
            str(path),
            "--images",
            str(images),
            "--out",
            str(site),
            "-q",
            "--cam",
            "none",
        ],
    )
    assert result.exit_code == 0, result.output
    document = json.loads((site / "report.json").read_text())
    assert document["floor"].startswith("not measured")  # an ONNX file has no untrained form
    # The same file twice is one architecture: its layers are compared one to one.
    assert document["aligned"] is True
    assert all(
        layer["cka"]["value"] == pytest.approx(1.0, abs=1e-6) for layer in document["layers"]
    )
    assert check_site(site) == []
