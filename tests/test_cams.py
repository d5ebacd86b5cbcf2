"""Class activation maps: the methods against straightforward implementations, the chosen
layer, one measurement point at in-place ReLUs, and a model left as it was found."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from models import InplaceReluNet, TinyNet

from reportgen.errors import ModelError
from reportgen.gather.cams import grad_cam, layer_cam
from reportgen.models.torch_adapter import TorchAdapter


def unit(x: torch.Tensor) -> torch.Tensor:
    """Min-max scale each map of ``[N, H, W]`` to [0, 1], as the published code displays it."""
    flat = x.flatten(1)
    low, high = flat.min(dim=1, keepdim=True).values, flat.max(dim=1, keepdim=True).values
    return ((flat - low) / (high - low)).reshape(x.shape)


def reference_grad_cam(model: torch.nn.Module, module: torch.nn.Module, x, classes):
    """Grad-CAM as the paper defines it: a hook keeps the module output, backward fills .grad."""
    kept = {}

    def hook(mod, inputs, output):
        output.retain_grad()
        kept["a"] = output

    handle = module.register_forward_hook(hook)
    try:
        model.eval()
        model.zero_grad()
        logits = model(x)
        logits[torch.arange(len(classes)), torch.tensor(classes)].sum().backward()
    finally:
        handle.remove()
    a, g = kept["a"].detach(), kept["a"].grad
    alpha = g.mean(dim=(2, 3), keepdim=True)  # eq. 1: global-average-pooled gradients
    return F.relu((alpha * a).sum(dim=1)), a, g  # eq. 2


@pytest.fixture(scope="module")
def resnet() -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None, num_classes=10).eval()


def test_grad_cam_at_resnet18_layer4_agrees_with_the_paper(resnet: torch.nn.Module) -> None:
    torch.manual_seed(1)
    x = torch.randn(3, 3, 64, 64)
    classes = [2, 7, 7]
    expected, a, g = reference_grad_cam(resnet, resnet.layer4, x, classes)
    adapter = TorchAdapter(resnet, torch.device("cpu"), input_shape=(3, 64, 64))
    # The chosen layer is layer4: its value is its last block's ReLU after the residual add.
    chosen = adapter.cam_layer()
    assert (chosen.name, chosen.point, chosen.conv, chosen.randomized) == (
        "layer4",
        "after ReLU",
        "layer4.1.conv2",
        "layer4.1.conv2",
    )
    assert (chosen.channels, chosen.height, chosen.width) == (512, 2, 2)
    for name in (None, "layer4"):
        with adapter.gradients(name) as model:
            activations, (gradients,) = model.run(x, [[c] for c in classes])
        torch.testing.assert_close(activations, a, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(gradients, g, rtol=1e-5, atol=1e-7)
        ours = grad_cam(activations, gradients)
        assert (unit(ours) - unit(expected)).abs().max() < 1e-5


def test_layer_cam_weights_each_position_by_its_own_positive_gradient() -> None:
    a = torch.tensor([[[[1.0, 2.0]], [[3.0, -1.0]]]])  # [1, 2, 1, 2]
    g = torch.tensor([[[[0.5, -1.0]], [[2.0, 1.0]]]])
    # Position 0: 0.5·1 + 2·3 = 6.5; position 1: 0·2 + 1·(−1) = −1 → ReLU → 0.
    assert layer_cam(a, g).tolist() == [[[6.5, 0.0]]]
    # Grad-CAM averages the gradients first: weights −0.25 and 1.5.
    assert grad_cam(a, g).tolist() == [[[4.25, 0.0]]]


def test_a_conv_before_an_inplace_relu_is_measured_at_its_own_output() -> None:
    torch.manual_seed(2)
    model = InplaceReluNet().eval()
    x = torch.randn(2, 3, 8, 8)
    # Straightforward: the same network written out without the in-place ReLU.
    conv = model.conv(x)
    conv.retain_grad()
    logits = model.head(F.relu(conv).mean(dim=(2, 3)))
    logits[:, 1].sum().backward()
    adapter = TorchAdapter(model, torch.device("cpu"), input_shape=(3, 8, 8))
    with adapter.gradients("conv") as recorder:
        activations, (gradients,) = recorder.run(x, [[1], [1]])
    assert adapter.cam_layer("conv").point == "conv output"
    assert float(activations.min()) < 0, "the ReLU that runs later must not change the values"
    torch.testing.assert_close(activations, conv.detach())
    torch.testing.assert_close(gradients, conv.grad)
    # The default is after the ReLU, where both values and gradients are post-activation.
    assert adapter.cam_layer().point == "after ReLU"
    with adapter.gradients() as recorder:
        after, _ = recorder.run(x, [[1], [1]])
    torch.testing.assert_close(after, F.relu(conv.detach()))


def test_the_gradient_pass_leaves_the_model_as_it_found_it() -> None:
    torch.manual_seed(3)
    model = TinyNet()
    model.train()
    model.features[1].eval()  # a mixed state, restored exactly
    frozen, primed = model.features[0].weight, model.head.weight
    frozen.requires_grad_(False)
    primed.grad = torch.full_like(primed, 7.0)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [m.training for m in model.modules()]
    adapter = TorchAdapter(model, torch.device("cpu"), input_shape=(3, 16, 16))
    with adapter.gradients() as recorder:
        assert not model.training
        recorder.run(torch.randn(2, 3, 16, 16), [[0, 1], [2, 2]])
    assert [m.training for m in model.modules()] == flags
    assert not frozen.requires_grad and frozen.grad is None
    assert torch.equal(primed.grad, torch.full_like(primed, 7.0))
    assert all(p.grad is None for p in model.parameters() if p is not primed)
    assert all(not m._forward_hooks for m in model.modules())
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    # Also when the pass fails: a batch of the wrong shape.
    with pytest.raises(RuntimeError), adapter.gradients() as recorder:
        recorder.run(torch.randn(1, 5, 16, 16), [[0]])
    assert [m.training for m in model.modules()] == flags
    assert all(not m._forward_hooks for m in model.modules())


def test_a_cam_layer_that_is_not_a_feature_map_is_refused_with_its_shape() -> None:
    adapter = TorchAdapter(TinyNet(), torch.device("cpu"), input_shape=(3, 16, 16))
    with pytest.raises(ModelError, match=r"--cam-layer 'head' gives an output of shape \(1, 3\)"):
        adapter.cam_layer("head")
    with pytest.raises(ModelError, match="--cam-layer 'featurez' is not a module"):
        adapter.cam_layer("featurez")


# ------------------------------------------------------------------ in a build


def test_a_build_states_and_draws_the_maps_of_the_images_it_shows(tiny_config) -> None:
    from helpers import check_site, read_report_json

    from reportgen.pipeline import build

    build(tiny_config)
    out = tiny_config.site.out
    data = read_report_json(out)
    cam = data["cam"]
    assert (cam["method"], cam["layer"], cam["point"]) == ("gradcam", "features", "after ReLU")
    channels, height, width = cam["shape"]
    assert channels == 12  # TinyNet's last conv
    shown = {m["path"] for m in data["images"] if m["cams"]}
    assert cam["images"] == len(shown) > 0
    for image in data["images"]:
        maps = image["cams"]
        if not maps:
            continue
        expected = [image["prediction_index"]]
        if image["correct"] is False:
            expected.append(image["label_index"])
        assert [m["index"] for m in maps] == expected  # predicted first, then the true class
        for m in maps:
            values = [v for row in m["values"] for v in row]
            assert len(m["values"]) == height and len(values) == height * width
            assert min(values) == pytest.approx(m["min"], abs=1e-6) and min(values) >= 0
            assert max(values) == pytest.approx(m["max"], abs=1e-6)
            picture = (
                out
                / "img"
                / "cams"
                / f"image-{data['images'].index(image) + 1:04d}-class-{m['index'] + 1:04d}.webp"
            )
            assert picture.is_file()
    page = (out / "mistakes.html").read_text(encoding="utf-8")
    assert "Grad-CAM at features (after ReLU, following features.5), 16×16" in page
    assert check_site(out) == []


def test_cam_none_draws_no_map_and_cam_all_maps_every_image(tiny_config) -> None:
    from helpers import read_report_json

    from reportgen.pipeline import build

    build(tiny_config.replace(cam="none"))
    data = read_report_json(tiny_config.site.out)
    assert data["cam"] is None and all(i["cams"] == [] for i in data["images"])
    assert not (tiny_config.site.out / "img" / "cams").exists()
    build(tiny_config.replace(cam="all", cam_method="layercam"))
    data = read_report_json(tiny_config.site.out)
    assert data["cam"]["method"] == "layercam"
    assert all(i["cams"] for i in data["images"])


def test_a_cam_layer_that_does_not_exist_is_an_input_error(images, tmp_path) -> None:
    from helpers import assert_clean_error, cli_args, run

    code, out, err = run(*cli_args(images, tmp_path / "site", "--cam-layer", "nope", "-q"))
    assert code == 2
    assert_clean_error(code, out, err, "--cam-layer 'nope' is not a module")
    assert not (tmp_path / "site").exists()


def test_the_legend_shows_the_maps_colormap() -> None:
    from pathlib import Path

    from reportgen.drawing.visuals import CAM_CMAP, legend_stops

    css = (Path(__file__).parent.parent / "templates" / "style.css").read_text(encoding="utf-8")
    assert f"linear-gradient(to right, {', '.join(legend_stops(CAM_CMAP))})" in css


def test_logits_that_do_not_depend_on_the_chosen_layer_leave_a_warning(images, tmp_path) -> None:
    from helpers import assert_clean_error, cli_args, read_report_json, run

    # PairNet's first output, taken as the logits by default, is the input's mean.
    code, out, err = run(
        *cli_args(images, tmp_path / "site", "--input-size", "32", model="PairNet")
    )
    assert code == 0, err
    data = read_report_json(tmp_path / "site")
    assert data["cam"] is None
    assert any("no class activation maps: the logits do not depend" in w for w in data["warnings"])
    # A layer the user named fails the build instead, with the same reason.
    code, out, err = run(
        *cli_args(
            images,
            tmp_path / "named",
            "--input-size",
            "32",
            "--cam-layer",
            "features.0",
            "-q",
            model="PairNet",
        )
    )
    assert_clean_error(code, out, err, "the logits do not depend", "--cam none")
    assert code == 2


# ------------------------------------------------------------------ the sanity check


def test_rank_correlation_averages_ties_and_refuses_constant_maps() -> None:
    from reportgen.gather.cams import rank_correlation

    def spearman(a: list[float], b: list[float]) -> float:
        def ranks(v: list[float]) -> list[float]:
            return [sum(w < x for w in v) + (sum(w == x for w in v) - 1) / 2 for x in v]

        x, y = ranks(a), ranks(b)
        mx, my = sum(x) / len(x), sum(y) / len(y)
        num = sum((p - mx) * (q - my) for p, q in zip(x, y, strict=True))
        den = (sum((p - mx) ** 2 for p in x) * sum((q - my) ** 2 for q in y)) ** 0.5
        return num / den

    a, b = [0.0, 0.0, 0.0, 1.0, 2.0, 2.0, 5.0], [0.5, 0.0, 0.1, 0.2, 0.3, 0.1, 0.9]
    assert rank_correlation(torch.tensor(a), torch.tensor(b)) == pytest.approx(spearman(a, b))
    assert rank_correlation(
        torch.tensor([1.0, 2.0, 3.0]), torch.tensor([9.0, 4.0, 1.0])
    ) == pytest.approx(-1.0)
    assert rank_correlation(torch.zeros(4), torch.arange(4.0)) is None


def test_the_sanity_check_randomises_the_layers_conv_and_puts_its_weights_back(tiny_config) -> None:
    from helpers import read_report_json

    from reportgen.pipeline import build

    torch.manual_seed(4)
    model = TinyNet().eval()
    adapter = TorchAdapter(model, torch.device("cpu"), input_shape=(3, 16, 16))
    x = torch.randn(2, 3, 16, 16)
    before = model.features[5].weight.detach().clone()  # the conv before the last ReLU
    with adapter.gradients() as plain:
        a, _ = plain.run(x, [[0], [0]])
    with adapter.gradients() as randomized, adapter.randomized():
        assert not torch.equal(model.features[5].weight, before)
        b, _ = randomized.run(x, [[0], [0]])
    assert torch.equal(model.features[5].weight, before)
    assert not torch.allclose(a, b)

    build(tiny_config)
    data = read_report_json(tiny_config.site.out)
    assert data["cam"]["randomized_layer"] == "features.5"
    checked = [i["cam_randomized_rank_correlation"] for i in data["images"] if i["cams"]]
    assert checked and all(v is None or -1.0 <= v <= 1.0 for v in checked)
    assert any(v is not None for v in checked)
    page = next((tiny_config.site.out / "images").glob("*.html")).read_text(encoding="utf-8")
    # TinyNet is untrained here: the check cannot mean anything, and the page says so.
    assert "Sanity check: not meaningful here. The weights are untrained" in page


# ------------------------------------------------------------------ object or background


@pytest.fixture(scope="module")
def shapes_lab(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A clean and a background-trained PlantNet, a folder with random class-coded
    backgrounds, and each picture's object mask (every pixel unlike its background)."""
    import numpy as np
    from PIL import Image
    from planted import CLASSES, draw_folder, train

    root = tmp_path_factory.mktemp("masks")
    torch.save(train().state_dict(), root / "clean.pt")
    torch.save(train("shortcut").state_dict(), root / "coded.pt")
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    images = draw_folder(root / "images", 12, seed=9, background="shuffled")
    for path in sorted(images.rglob("*.png")):
        with Image.open(path) as picture:
            rgb = picture.convert("RGB")
        pixels = np.asarray(rgb)
        unlike = (pixels != pixels[0, 0]).any(axis=2)
        mask = Image.fromarray((unlike * 255).astype(np.uint8), mode="L")
        target = root / "masks" / path.relative_to(images)
        target.parent.mkdir(parents=True, exist_ok=True)
        mask.save(target)
    return {"root": root, "images": images, "masks": root / "masks"}


def test_masks_show_a_background_trained_model_looking_at_the_background(shapes_lab) -> None:
    from pathlib import Path

    import numpy as np
    from helpers import read_report_json
    from PIL import Image
    from planted import OPTIONS

    from reportgen import build_report

    planted = Path(__file__).with_name("planted.py")

    shares = {}
    for name in ("clean", "coded"):
        out = shapes_lab["root"] / f"site-{name}"
        build_report(
            f"{planted}:PlantNet",
            shapes_lab["images"],
            out,
            weights=str(shapes_lab["root"] / f"{name}.pt"),
            classes=shapes_lab["root"] / "classes.txt",
            masks=shapes_lab["masks"],
            cam="all",
            examples=2,
            **OPTIONS,
        )
        data = read_report_json(out)
        assert data["cam"]["images_with_masks"] == 36
        values = [i["cam_energy_inside"] for i in data["images"]]
        assert all(v is None or 0.0 <= v <= 1.0 for v in values)
        shares[name] = sum(v for v in values if v is not None) / sum(v is not None for v in values)
        shares[name + " findings"] = {f["kind"] for f in data["findings"]}
        objects = [
            float((np.asarray(Image.open(m)) > 127).mean())
            for m in sorted(shapes_lab["masks"].rglob("*.png"))
        ]
        shares["area"] = sum(objects) / len(objects)
    # Measured: the shapes cover 0.18 of a picture on average; the clean model keeps 0.47
    # of its maps' energy on them, the background-trained one 0.30.
    assert shares["clean"] > 1.3 * shares["coded"] and shares["clean"] > 2 * shares["area"]
    assert "background_attention" in shares["coded findings"]
    assert "background_attention" not in shares["clean findings"]


def test_boxes_from_a_csv_become_masks_in_the_inputs_geometry(images, tmp_path) -> None:
    from helpers import assert_clean_error, cli_args, run

    from reportgen.data.files import collect_images
    from reportgen.data.masks import read_masks
    from reportgen.models.preprocess import Preprocess

    files, _ = collect_images(images)
    first = files[0].rel
    boxes = tmp_path / "boxes.csv"
    boxes.write_text(f"path,x0,y0,x1,y1\n{first},0,0,9,39\n{first},30,0,39,9\n", encoding="utf-8")
    masks = read_masks(boxes, files)
    assert 0 in masks and 1 not in masks and len(masks) == 1
    drawn = masks.image(0, (40, 40))
    assert drawn is not None
    assert drawn.getpixel((5, 20)) == 255 and drawn.getpixel((35, 5)) == 255
    assert drawn.getpixel((20, 20)) == 0
    # Resized to 40 and cropped to 20 about the centre: the crop keeps x and y from 10 to 29,
    # so the left box (x ≤ 9) and the corner box fall outside it.
    placed = Preprocess(40, 20, (0.5,) * 3, (0.25,) * 3, "bilinear", 3, "test").mask(drawn)
    assert placed.shape == (20, 20) and not placed.any()
    wide = Preprocess(40, 40, (0.5,) * 3, (0.25,) * 3, "bilinear", 3, "test").mask(drawn)
    assert wide[20, :9].all() and not wide[20, 12:28].any()

    bad = tmp_path / "bad.csv"
    bad.write_text(f"{first},0,0,nine,9\n", encoding="utf-8")
    code, out, err = run(*cli_args(images, tmp_path / "site", "--masks", str(bad), "-q"))
    assert code == 2
    assert_clean_error(code, out, err, "line 1", "is not four numbers")
    code, out, err = run(
        *cli_args(images, tmp_path / "site", "--masks", str(tmp_path / "nope"), "-q")
    )
    assert_clean_error(code, out, err, "no such folder or file")


# ------------------------------------------------------------------ the mistakes page


def test_the_most_confused_pairs_come_first_and_matrix_cells_link_to_them(tiny_config) -> None:
    import re

    from helpers import check_site, read_report_json

    from reportgen.pipeline import build

    build(tiny_config)
    out = tiny_config.site.out
    data = read_report_json(out)
    mistakes: dict[tuple[str, str], int] = {}
    for image in data["images"]:
        if image["correct"] is False:
            key = (image["label"], image["prediction"])
            mistakes[key] = mistakes.get(key, 0) + 1
    assert mistakes, "the untrained TinyNet must make mistakes for this test"
    page = (out / "mistakes.html").read_text(encoding="utf-8")
    table = page.split('<table class="pairs">')[1].split("</table>")[0]
    rows = re.findall(
        r'<a href="[^"]+">([^<]+)</a></th><td>([^<]+)</td><td class="num">(\d+)</td>', table
    )
    listed = [((t, q), int(n)) for t, q, n in rows]
    assert dict(listed) == mistakes
    assert [n for _, n in listed] == sorted(mistakes.values(), reverse=True)
    matrix = page.split('<table class="confusion">')[1].split("</table>")[0]
    linked = [
        int(n) for n in re.findall(r'<td class="off"[^>]*><a href="[^"]+">(\d+)</a></td>', matrix)
    ]
    assert sorted(linked) == sorted(mistakes.values())
    assert check_site(out) == []


def test_features_are_kept_as_unit_vectors_whatever_the_batch_size() -> None:
    from reportgen.tally.features import DIMS, FeaturesReducer

    torch.manual_seed(5)
    x = torch.randn(6, 300)
    runs = []
    for size in (1, 4, 6):
        reducer = FeaturesReducer(capacity=6)
        for start in range(0, 6, size):
            reducer.update(x[start : start + size], torch.arange(start, min(start + size, 6)))
        runs.append(reducer.finish(reducer.state()))
    assert runs[0].shape == (6, DIMS)
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], runs[2])
    assert torch.allclose(runs[0].norm(dim=1), torch.ones(6), atol=2e-3)
    # The projection keeps cosine similarity roughly (Johnson–Lindenstrauss).
    exact = torch.nn.functional.normalize(x, dim=1) @ torch.nn.functional.normalize(x, dim=1).T
    assert (runs[0] @ runs[0].T - exact).abs().max() < 0.3


def test_the_nearest_correct_images_are_of_the_predicted_class_nearest_first() -> None:
    from reportgen.tally.features import nearest_correct

    vectors = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [1.0, 0.0], [0.0, 1.0]])
    # Image 0 was wrongly predicted as class 1; images 1, 2, 3 are correct class-1 images,
    # image 4 a correct class-2 one. Image 3 equals image 0.
    found = nearest_correct(vectors, {0: 1}, [(1, 1), (2, 1), (3, 1), (4, 2)], k=2)
    assert [i for i, _ in found[0]] == [3, 1]
    assert found[0][0][1] == pytest.approx(1.0) and found[0][1][1] == pytest.approx(0.8)
    assert nearest_correct(vectors, {0: 5}, [(1, 1)], k=2) == {}


def test_a_build_shows_each_mistake_beside_its_nearest_correct_images(tiny_config) -> None:
    from helpers import check_site, read_report_json

    from reportgen.pipeline import build

    build(tiny_config)
    out = tiny_config.site.out
    data = read_report_json(out)
    by_path = {i["path"]: i for i in data["images"]}
    wrong = [i for i in data["images"] if i["correct"] is False]
    assert wrong and all(
        i["nearest_correct"]
        for i in wrong
        if any(o["correct"] and o["prediction"] == i["prediction"] for o in data["images"])
    )
    for image in wrong:
        similarities = [n["similarity"] for n in image["nearest_correct"]]
        assert similarities == sorted(similarities, reverse=True)
        for n in image["nearest_correct"]:
            other = by_path[n["path"]]
            assert other["correct"] is True and other["prediction"] == image["prediction"]
    assert all(not i["nearest_correct"] for i in data["images"] if i["correct"] is not False)
    page = (out / "mistakes.html").read_text(encoding="utf-8")
    assert "Nearest correct <b>" in page and "penultimate features" in page
    assert check_site(out) == []
