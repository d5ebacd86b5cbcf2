"""Models from ONNX files: ``--model model.onnx`` (the optional extra ``featreport[onnx]``).

The file is read with ``onnx.load`` (which pulls a ``.onnx.data`` file beside it), cleaned
up so the converter takes what torch's two exporters write, converted to a PyTorch module
by :func:`convert` (the one place the converter is named, so it can be swapped), and
checked against onnxruntime on a seeded batch: the largest difference goes into the
report, and a conversion that differs by more than :data:`TOLERANCE` is refused.

The clean-ups, each measured necessary on exports of torchvision models by
``torch.onnx.export`` with ``dynamo=False`` and ``dynamo=True``:

* an ``Identity`` whose input is an initializer (the TorchScript exporter writes them for
  shared weights) is replaced by the initializer itself;
* every node whose inputs are all constants is evaluated (onnx's reference evaluator) and
  becomes an initializer, ``CastLike`` to the input's type included: the dynamo exporter
  builds a conv's zero bias from ``Shape``, ``Expand`` and ``CastLike`` (constants folded;
  batch norm is not fused);
* ``BatchNormalization``'s ``training_mode=0`` attribute, which the converter rejects, is
  dropped (0 is its default);
* a graph exported with a fixed batch size: a ``Reshape`` to a constant shape that starts
  with that size gets -1 there, so the last, smaller batch runs too (checked after
  conversion with 1 and batch + 1 images; a graph that still fails is refused).

Layer names come from the exporter's name scopes: a conv's weight named ``NAME.weight``
(the dynamo exporter keeps parameter names), else the node's scope path
(``/layer1/layer1.0/conv1/Conv`` → ``layer1.0.conv1``), else the node's own name.
Batch norm folded into the conv weights by the exporter is detected (no
``BatchNormalization`` node, and weights named ``onnx::Conv_*`` or a fusion rule in the
nodes' metadata): every conv then says so, since its output already includes the norm.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import ModelSpec
from ..errors import ModelError, WeightsError, short_error
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from .source import Built

__all__ = ["SUFFIX", "TOLERANCE", "OnnxModel", "convert", "onnx_model"]

SUFFIX = ".onnx"
TOLERANCE = 1e-3  # largest |torch − onnxruntime| allowed, relative to the output's range
FOLDED = "batch norm folded into these weights by the exporter: the conv output already includes it"


def _modules() -> tuple[Any, Any]:
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise ModelError(
            "--model *.onnx needs onnx and onnxruntime: pip install 'featreport[onnx]'"
        ) from None
    return onnx, onnxruntime


@dataclass(frozen=True)
class InputFacts:
    """The ONNX graph's image input: its name, batch, layout and size."""

    name: str
    batch: int | None  # fixed batch size, or None for a dynamic one
    channels_last: bool
    channels: int
    height: int | None
    width: int | None


def _input_facts(graph: Any) -> InputFacts:
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ModelError(
            f"the ONNX graph takes {len(inputs)} inputs; featreport feeds one image batch"
        )
    entry = inputs[0]
    dims = [
        d.dim_value if d.HasField("dim_value") else None for d in entry.type.tensor_type.shape.dim
    ]
    if len(dims) != 4:
        raise ModelError(f"the ONNX input {entry.name!r} has {len(dims)} dimensions, not N×C×H×W")
    channels_last = dims[3] in (1, 3) and dims[1] not in (1, 3)
    channels = dims[3] if channels_last else dims[1]
    height, width = (dims[1], dims[2]) if channels_last else (dims[2], dims[3])
    if channels not in (1, 3):
        raise ModelError(
            f"the ONNX input {entry.name!r} has {channels} channels; featreport feeds 1 or 3"
        )
    return InputFacts(entry.name, dims[0], channels_last, int(channels), height, width)


def _fold(onnx: Any, model: Any, node: Any, known: dict[str, Any]) -> list[Any] | None:
    """Evaluate one node whose inputs are all constants; return its outputs, or None."""
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    graph = onnx.helper.make_graph(
        [node],
        "fold",
        [],
        [onnx.helper.make_empty_tensor_value_info(o) for o in node.output],
        [numpy_helper.from_array(known[i], i) for i in node.input if i],
    )
    single = onnx.helper.make_model(graph, opset_imports=list(model.opset_import))
    try:
        return list(ReferenceEvaluator(single).run(None, {}))
    except Exception:  # not foldable here: leave the node to the converter
        return None


def _constant(
    onnx: Any, model: Any, node: Any, known: dict[str, Any], types: dict[str, int]
) -> list[Any] | None:
    """Return a node's outputs when its inputs are all constants (None otherwise)."""
    if node.op_type == "CastLike" and node.input[0] in known and node.input[1] in types:
        # Casting a constant to another tensor's type: the type is known without its values.
        dtype = onnx.helper.tensor_dtype_to_np_dtype(types[node.input[1]])
        return [known[node.input[0]].astype(dtype)]
    if node.op_type != "BatchNormalization" and all(i in known for i in node.input if i):
        return _fold(onnx, model, node, known)
    return None


def _free_batch(onnx: Any, model: Any, batch: int) -> int:
    """Let a graph exported with a fixed batch run any batch: a ``Reshape`` to a constant
    shape that starts with that batch and has no -1 gets -1 there. Returns how many."""
    from onnx import numpy_helper

    shapes = {n.input[1] for n in model.graph.node if n.op_type == "Reshape" and len(n.input) > 1}
    changed = 0
    for tensor in model.graph.initializer:
        if tensor.name not in shapes:
            continue
        shape = numpy_helper.to_array(tensor).copy()
        if shape.ndim == 1 and len(shape) and shape[0] == batch and -1 not in shape:
            shape[0] = -1
            tensor.CopyFrom(numpy_helper.from_array(shape, tensor.name))
            changed += 1
    return changed


def _clean(onnx: Any, model: Any) -> Any:
    """Return a copy of the model that the converter takes (see the module's docstring)."""
    from onnx import numpy_helper

    cleaned = onnx.ModelProto()
    cleaned.CopyFrom(model)
    graph = cleaned.graph
    known = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    original = set(known)
    try:  # the element type of every tensor, for CastLike
        typed = onnx.shape_inference.infer_shapes(model).graph
    except Exception:
        typed = model.graph
    types = {
        v.name: v.type.tensor_type.elem_type
        for v in (*typed.input, *typed.value_info, *typed.output)
        if v.type.tensor_type.elem_type
    }
    renamed: dict[str, str] = {}
    kept = []
    for node in graph.node:
        for i, name in enumerate(node.input):
            node.input[i] = renamed.get(name, name)
        if node.op_type == "Identity" and node.input[0] in original:
            renamed[node.output[0]] = node.input[0]
            continue
        values = _constant(onnx, cleaned, node, known, types)
        if values is not None:
            for name, value in zip(node.output, values, strict=True):
                known[name] = value
                graph.initializer.append(numpy_helper.from_array(value, name))
            continue
        if node.op_type == "BatchNormalization":
            keep = [a for a in node.attribute if not (a.name == "training_mode" and a.i == 0)]
            del node.attribute[:]
            node.attribute.extend(keep)
        kept.append(node)
    for output in graph.output:
        output.name = renamed.get(output.name, output.name)
    del graph.node[:]
    graph.node.extend(kept)
    return cleaned


def _scope_name(node_name: str) -> str | None:
    """Turn an exporter scope such as ``/layer2/layer2.0/downsample/downsample.0/Conv`` into
    the module's name, ``layer2.0.downsample.0``: a segment that extends the one before it
    with ``.index`` names that container's child."""
    parts = [p for p in node_name.split("/") if p][:-1]
    if not parts:
        return None
    path: list[str] = []
    for part in parts:
        if path and part.startswith(path[-1] + "."):
            path.append(part[len(path[-1]) + 1 :])
        else:
            path.append(part)
    return ".".join(path)


def _layer_names(graph: Any) -> dict[str, str]:
    """Name each node (by its output) as the exported model named its layer: every conv,
    and the other nodes whose scope names one (activations, norms, pools)."""
    names: dict[str, str] = {}
    used: set[str] = set()
    for index, node in enumerate(graph.node):
        conv = node.op_type in ("Conv", "ConvTranspose")
        weight = node.input[1] if len(node.input) > 1 else ""
        scoped = _scope_name(node.name)
        if conv and weight.endswith(".weight") and not weight.startswith("onnx::"):
            name = weight.removesuffix(".weight")
        elif scoped is not None:
            name = scoped
        elif conv:
            name = node.name or f"conv{index}"
        else:
            continue
        name = re.sub(r"[^A-Za-z0-9_.\-]", "_", name).strip(".") or f"conv{index}"
        while name in used or ".." in name:
            name = f"{name}_{index}".replace("..", ".")
        used.add(name)
        names[node.output[0]] = name
    return names


def _folded(graph: Any) -> bool:
    """Say whether the exporter folded batch norm into the conv weights."""
    if any(n.op_type == "BatchNormalization" for n in graph.node):
        return False
    convs = [n for n in graph.node if n.op_type == "Conv"]
    named = any(len(n.input) > 1 and n.input[1].startswith("onnx::Conv") for n in convs)
    fused = any(
        "FuseBatchNorm" in p.value for n in convs for p in n.metadata_props if "rule" in p.key
    )
    return named or fused


def convert(onnx: Any, model: Any) -> nn.Module:
    """Convert a cleaned ONNX model to a PyTorch module (onnx2pytorch)."""
    try:
        from onnx2pytorch import ConvertModel
    except ImportError:
        raise ModelError(
            "--model *.onnx needs onnx2pytorch: pip install 'featreport[onnx]'"
        ) from None
    try:
        graph: nn.Module = ConvertModel(model, experimental=True)
    except Exception as exc:
        raise ModelError(f"onnx2pytorch could not convert the graph: {short_error(exc)}") from None
    return _plain_names(graph)


def _plain_names(graph: nn.Module) -> nn.Module:
    """Rename the converter's submodules (named after ONNX tensors, with dots and slashes)
    so that every module path resolves, and keep its node-to-module mapping in step."""
    mapping: dict[str, str] = getattr(graph, "mapping", {})
    renamed: dict[str, str] = {}
    for old, child in list(graph.named_children()):
        new = re.sub(r"[^A-Za-z0-9_]", "_", old)
        while new in renamed.values():
            new += "_"
        renamed[old] = new
        delattr(graph, old)
        graph.add_module(new, child)
    setattr(graph, "mapping", {node: renamed.get(n, n) for node, n in mapping.items()})  # noqa: B010
    return graph


class OnnxModel(nn.Module):
    """A converted ONNX graph, with its conv layers reachable under the exporter's names.

    The converted module runs the graph; the convs are also registered, first, in a tree
    of plain containers named after the layers, so that ``named_modules`` lists each conv
    under its original name. An NHWC input (Keras exports) is fed permuted.
    """

    def __init__(self, graph: nn.Module, named: dict[str, nn.Module], channels_last: bool) -> None:
        super().__init__()
        for name, module in named.items():
            parent: nn.Module = self
            *path, leaf = name.split(".")
            for part in path:
                if not isinstance(getattr(parent, part, None), nn.Module):
                    parent.add_module(part, nn.Module())
                parent = getattr(parent, part)
            if not hasattr(parent, leaf):
                parent.add_module(leaf, module)
        self.onnx_graph = graph
        self.channels_last = channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the graph on an NCHW batch."""
        if self.channels_last:
            x = x.permute(0, 2, 3, 1)
        out = self.onnx_graph(x)
        first: torch.Tensor = out[0] if isinstance(out, (list, tuple)) else out
        return first


def _check(onnxruntime: Any, model: Any, module: nn.Module, facts: InputFacts, size: int) -> float:
    """Run a seeded batch through onnxruntime and the converted module; return the largest
    difference, or refuse a conversion that differs by more than the tolerance."""
    batch = facts.batch or 2
    height, width = facts.height or size, facts.width or size
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, facts.channels, height, width, generator=generator)
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    feed = x.permute(0, 2, 3, 1) if facts.channels_last else x
    expected = session.run(None, {facts.name: np.ascontiguousarray(feed.numpy())})[0]
    with torch.no_grad():
        got = module.eval()(x).numpy()
    if got.shape != expected.shape:
        raise ModelError(
            f"the converted model's output has shape {got.shape}, onnxruntime's {expected.shape}"
        )
    difference = float(np.abs(got - expected).max())
    scale = max(1.0, float(np.abs(expected).max()))
    if difference > TOLERANCE * scale:
        raise ModelError(
            f"the converted model differs from onnxruntime by up to {difference:.3g} on a "
            f"seeded batch (tolerance {TOLERANCE * scale:.3g}); featreport cannot show this "
            "ONNX graph faithfully"
        )
    if facts.batch is not None:
        for other in (1, facts.batch + 1):
            try:
                with torch.no_grad():
                    module(torch.zeros(other, facts.channels, height, width))
            except Exception as exc:
                raise ModelError(
                    f"the ONNX graph fixes the batch to {facts.batch} and fails with {other} "
                    f"image(s) ({short_error(exc)}); export it with a dynamic batch axis "
                    "(dynamic_axes or dynamic_shapes in torch.onnx.export)"
                ) from None
    return difference


def onnx_model(spec: ModelSpec, weights_file: bool) -> Built:
    """Read, clean, convert and check ``--model model.onnx``."""
    onnx, onnxruntime = _modules()
    path = Path(str(spec.model))
    if not path.is_file():
        raise ModelError(f"--model {path}: no such file")
    if weights_file or spec.weights.upper() != "DEFAULT":
        raise WeightsError(
            f"--weights {spec.weights}: an ONNX file carries its own weights; leave --weights out"
        )
    try:
        model = onnx.load(str(path))
    except Exception as exc:
        raise ModelError(f"--model {path}: not a readable ONNX file ({short_error(exc)})") from None
    facts = _input_facts(model.graph)
    cleaned = _clean(onnx, model)
    if facts.batch is not None:
        _free_batch(onnx, cleaned, facts.batch)
    graph = convert(onnx, cleaned)
    mapping: dict[str, str] = getattr(graph, "mapping", {})
    folded = _folded(model.graph)
    convs: dict[str, nn.Module] = {}
    for output, name in _layer_names(cleaned.graph).items():
        module = getattr(graph, mapping.get(output, ""), None)
        if isinstance(module, nn.Module) and not any(m is module for m in convs.values()):
            if folded and isinstance(module, nn.Conv2d):
                module.featreport_note = FOLDED  # type: ignore[assignment]
            convs[name] = module
    if not any(isinstance(m, nn.Conv2d) for m in convs.values()):
        raise ModelError(f"--model {path}: the converted graph has no conv layer")
    wrapper = OnnxModel(graph, convs, facts.channels_last)
    size = spec.input_size or facts.height or 224
    difference = _check(onnxruntime, model, wrapper, facts, size)
    how = (
        f"from the ONNX file, converted to PyTorch by onnx2pytorch; a seeded batch agrees "
        f"with onnxruntime to {difference:.2g} (largest absolute difference of the outputs)"
        + ("; batch norm was folded into the conv weights by the exporter" if folded else "")
    )

    def preprocess(module: nn.Module, channels: int) -> Preprocess:
        crop = spec.input_size or facts.height or 224
        return Preprocess(
            resize=round(crop / 0.875),
            crop=crop,
            mean=tuple(spec.mean or IMAGENET_MEAN)[:channels],
            std=tuple(spec.std or IMAGENET_STD)[:channels],
            interpolation="bilinear",
            channels=channels,
            source=(
                "the ONNX input's size" if facts.height and not spec.input_size else "--input-size"
            )
            + "; mean and std are not stored in an ONNX file: "
            + ("--mean/--std" if spec.mean or spec.std else "ImageNet's (give --mean and --std)"),
            bgr=spec.bgr,
        )

    return Built(
        module=wrapper,
        name=path.name,
        weights=how,
        untrained=False,
        categories=None,
        preprocess=preprocess,
    )
