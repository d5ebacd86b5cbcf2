"""The command line: what it prints, how it fails, and what it never destroys."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import MODELS, assert_clean_error, cli_args, read_report_json, run
from models import TinyNet


def test_success_prints_the_index_path_last(images: Path, tmp_path: Path) -> None:
    code, out, err = run(
        *cli_args(images, tmp_path / "site", "--input-size", "32", "-q", "--examples", "2")
    )
    assert code == 0, err
    assert out.strip().splitlines()[-1] == str(tmp_path / "site" / "index.html")


def test_unknown_model_suggests_close_names(images: Path, tmp_path: Path) -> None:
    code, out, err = run(
        "--model", "resnet81", "--images", str(images), "--out", str(tmp_path / "s")
    )
    assert_clean_error(code, out, err, "unknown model 'resnet81'", "resnet18")


def test_model_file_errors_name_the_problem(images: Path, tmp_path: Path) -> None:
    code, out, err = run("--model", f"{MODELS}:NoSuchNet", "--images", str(images))
    assert_clean_error(code, out, err, "has no attribute 'NoSuchNet'", "TinyNet")
    code, out, err = run("--model", "missing/file.py:Net", "--images", str(images))
    assert_clean_error(code, out, err, "no such file")
    bad = tmp_path / "bad.py"
    bad.write_text("import torch\nraise ValueError('typo in my model')\n")
    code, out, err = run("--model", f"{bad}:Net", "--images", str(images))
    assert_clean_error(code, out, err, "line 2", "typo in my model")


def test_model_without_conv_layers(images: Path, tmp_path: Path) -> None:
    code, out, err = run(
        "--model", f"{MODELS}:NoConvNet", "--images", str(images), "--weights", "none"
    )
    assert_clean_error(code, out, err, "no nn.Conv2d")


def test_missing_and_empty_image_folders(tmp_path: Path) -> None:
    code, out, err = run(*cli_args(tmp_path / "nowhere", tmp_path / "site"))
    assert_clean_error(code, out, err, "does not exist")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    code, out, err = run(*cli_args(tmp_path / "empty", tmp_path / "site"))
    assert_clean_error(code, out, err, "no image files found")


def test_weights_file_variants_load(images: Path, tmp_path: Path) -> None:
    torch.manual_seed(5)
    state = TinyNet().state_dict()
    wrapped = {
        "bare.pth": state,
        "nested.pt": {"state_dict": state, "epoch": 3},
        "model.pth": {"model": state},
        "dataparallel.pth": {f"module.{k}": v for k, v in state.items()},
    }
    norms = None
    for name, obj in wrapped.items():
        torch.save(obj, tmp_path / name)
        out = tmp_path / f"site-{name}"
        code, _, err = run(
            *cli_args(
                images,
                out,
                "--input-size",
                "32",
                "-q",
                "--examples",
                "1",
                weights=str(tmp_path / name),
            )
        )
        assert code == 0, err
        data = read_report_json(out)
        assert data["model"]["weights"].startswith("state dict from")
        assert not data["model"]["untrained"]
        first = data["layers"][0]["filter_norms"]
        expected = torch.linalg.vector_norm(state["features.0.weight"].flatten(1), dim=1).tolist()
        assert first == pytest.approx(expected, rel=1e-5)
        norms = norms or first
        assert first == norms


def test_mismatched_and_unreadable_weights(images: Path, tmp_path: Path) -> None:
    state = TinyNet().state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["head.bias"]
    torch.save(state, tmp_path / "wrong.pth")
    code, out, err = run(*cli_args(images, tmp_path / "s", weights=str(tmp_path / "wrong.pth")))
    assert_clean_error(code, out, err, "missing keys: head.bias", "unexpected keys: extra.weight")

    shapes = TinyNet(num_classes=7).state_dict()
    torch.save(shapes, tmp_path / "shape.pth")
    code, out, err = run(*cli_args(images, None, weights=str(tmp_path / "shape.pth")))
    assert_clean_error(code, out, err, "does not fit the model", "head.weight")

    (tmp_path / "junk.pth").write_bytes(b"definitely not a checkpoint")
    code, out, err = run(*cli_args(images, None, weights=str(tmp_path / "junk.pth")))
    assert_clean_error(code, out, err, "cannot be read as a state dict")

    code, out, err = run(*cli_args(images, None, weights=str(tmp_path / "absent.pth")))
    assert_clean_error(code, out, err, "no such file")


def test_torchvision_weight_name_that_does_not_exist(images: Path) -> None:
    code, out, err = run("--model", "resnet18", "--images", str(images), "--weights", "IMAGENET9K")
    assert_clean_error(code, out, err, "IMAGENET1K_V1")


def test_fetch_failure_says_how_to_work_offline(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from urllib.error import URLError

    import reportgen.models.torchvision_source as model_module

    def offline(*args: object, **kwargs: object) -> None:
        raise URLError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr(model_module.torchvision.models._api.WeightsEnum, "get_state_dict", offline)
    code, out, err = run(
        "--model", "resnet18", "--images", str(images), "--out", str(tmp_path / "s")
    )
    assert_clean_error(code, out, err, "--weights PATH", "--weights none", "resnet18-f37072fd.pth")
    assert not (tmp_path / "s").exists()


def test_foreign_out_folder_is_refused_and_untouched(images: Path, tmp_path: Path) -> None:
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    code, o, err = run(*cli_args(images, out, "--input-size", "32", "-q"))
    assert_clean_error(code, o, err, "did not write", str(out))
    assert [p.name for p in out.iterdir()] == ["thesis.tex"]
    assert (out / "thesis.tex").read_text() == "years of work"

    afile = tmp_path / "a-file"
    afile.write_text("x")
    code, o, err = run(*cli_args(images, afile, "--input-size", "32", "-q"))
    assert_clean_error(code, o, err, "not a folder")
    assert afile.read_text() == "x"


def test_previous_site_is_replaced_and_survives_a_failed_build(
    images: Path, tmp_path: Path
) -> None:
    out = tmp_path / "site"
    code, _, err = run(*cli_args(images, out, "--input-size", "32", "-q", "--examples", "1"))
    assert code == 0, err
    (out / "stale.html").write_text("from an older build")
    code, _, err = run(*cli_args(images, out, "--input-size", "32", "-q", "--examples", "2"))
    assert code == 0, err
    assert not (out / "stale.html").exists()
    assert len(list((out / "images").glob("*.html"))) == 2
    before = sorted(p.relative_to(out) for p in out.rglob("*"))

    code, o, err = run(*cli_args(images, out, "--input-size", "32", "-q", model="BrokenNet"))
    assert_clean_error(code, o, err, "forward pass failed", "deliberately broken", "apple/img0.png")
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_empty_existing_out_folder_is_used(images: Path, tmp_path: Path) -> None:
    out = tmp_path / "empty-out"
    out.mkdir()
    code, _, err = run(*cli_args(images, out, "--input-size", "32", "-q", "--examples", "1"))
    assert code == 0, err
    assert (out / "index.html").is_file() and (out / ".featreport-site").is_file()


def test_classes_file_must_match_the_outputs(images: Path, tmp_path: Path) -> None:
    names = tmp_path / "two.txt"
    names.write_text("apple\nbanana\n")
    code, out, err = run(
        *cli_args(images, tmp_path / "s", "--input-size", "32", "-q", "--classes", str(names))
    )
    assert_clean_error(code, out, err, "has 2 names but the model has 3 outputs")


def test_dict_and_namedtuple_outputs(images: Path, tmp_path: Path) -> None:
    for name in ("DictNet", "TupleNet"):
        out = tmp_path / name
        code, _, err = run(
            *cli_args(images, out, "--input-size", "32", "-q", "--examples", "1", model=name)
        )
        assert code == 0, err
        assert len(read_report_json(out)["images"][0]["top5"]) == 3


def test_factory_function_and_grayscale_transposed_model(images: Path, tmp_path: Path) -> None:
    code, _, err = run(
        *cli_args(images, tmp_path / "f", "--input-size", "32", "-q", model="make_tiny")
    )
    assert code == 0, err
    code, _, err = run(
        *cli_args(images, tmp_path / "g", "--input-size", "32", "-q", model="GrayNet")
    )
    assert code == 0, err
    data = read_report_json(tmp_path / "g")
    assert [layer["type"] for layer in data["layers"]] == ["Conv2d", "ConvTranspose2d"]
    assert data["layers"][1]["output_shape"] == [4, 64, 64]
    assert "grayscale" in data["model"]["preprocessing"]


def test_custom_model_rejects_weights_it_cannot_use(images: Path, tmp_path: Path) -> None:
    code, out, err = run(*cli_args(images, tmp_path / "s", weights="IMAGENET1K_V1"))
    assert_clean_error(code, out, err, "--weights IMAGENET1K_V1: no such file")


def test_warnings_are_printed_unless_quiet(
    images: Path, tmp_path: Path, classes_file: Path
) -> None:
    (images / "durian").mkdir()
    (images / "apple" / "img0.png").rename(images / "durian" / "img0.png")
    args = cli_args(images, tmp_path / "a", "--input-size", "32", "--classes", str(classes_file))
    code, out, err = run(*args)
    assert code == 0, err
    assert "Warning: label 'durian' (1 image) matches no class name" in err
    code, out, err = run(*args, "-q")
    assert code == 0 and err == ""
    assert out.strip() == str(tmp_path / "a" / "index.html")
