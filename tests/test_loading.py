"""Decoding in worker processes, and forward passes in reduced precision."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from helpers import assert_clean_error, check_site, cli_args, image_folder, read_report_json, run

from reportgen.config import BuildConfig
from reportgen.pipeline import build


def _digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_worker_processes_build_the_same_site(tiny_config: BuildConfig, tmp_path: Path) -> None:
    images = tiny_config.data.images
    (images / "apple" / "text.jpg").write_text("not a jpeg at all")  # fails in a worker
    build(tiny_config)
    workers = tiny_config.replace(out=tmp_path / "workers", workers="2")
    build(workers)
    assert _digest(workers.site.out) == _digest(tiny_config.site.out)
    skipped = read_report_json(workers.site.out)["skipped"]
    assert [(s["path"], "not" in s["reason"]) for s in skipped] == [("apple/text.jpg", True)]


def test_a_bad_worker_count_is_refused_before_any_work(images: Path, tmp_path: Path) -> None:
    for value in ("-1", "many"):
        code, out, err = run(*cli_args(images, tmp_path / "site", "--workers", value))
        assert_clean_error(code, out, err, f"--workers {value!r}", "or auto")
        assert code == 2
        assert not (tmp_path / "site").exists()


def test_amp_runs_in_bfloat16_and_says_so(tiny_config: BuildConfig, tmp_path: Path) -> None:
    build(tiny_config)
    amp = tiny_config.replace(out=tmp_path / "amp", amp=True)
    build(amp)
    assert check_site(amp.site.out) == []
    full, half = read_report_json(tiny_config.site.out), read_report_json(amp.site.out)
    assert full["model"]["precision"] == "float32"
    assert half["model"]["precision"].startswith("bfloat16 autocast (--amp)")
    assert "bfloat16 autocast" in (amp.site.out / "index.html").read_text(encoding="utf-8")
    # The statistics were computed from bfloat16 activations: close, not equal.
    for a, b in zip(full["layers"], half["layers"], strict=True):
        means = a["points"]["conv"]["channel_mean"], b["points"]["conv"]["channel_mean"]
        spread = max(abs(x) for x in means[0]) or 1.0
        assert max(abs(x - y) for x, y in zip(*means, strict=True)) <= 0.02 * spread
    pairs = zip(full["layers"], half["layers"], strict=True)
    assert any(a["points"] != b["points"] for a, b in pairs)


def test_the_device_decode_path_matches_pillow_within_a_level(tmp_path: Path) -> None:
    """The path ``--decode gpu`` takes, run on the CPU: JPEGs through
    ``torchvision.io.decode_jpeg`` and tensor resizing, everything else through Pillow."""
    import torch
    from PIL import Image

    from reportgen.data.batches import Loading, batches
    from reportgen.data.files import collect_images
    from reportgen.models.preprocess import Preprocess

    images = image_folder(tmp_path / "images", {"a": 4, "b": 3}, ext="jpg")
    image_folder(tmp_path / "images", {"c": 2}, ext="png")
    turned = Image.open(images / "a" / "img0.jpg")
    exif = turned.getexif()
    exif[0x0112] = 6  # stored sideways: shown rotated by 90 degrees
    turned.transpose(Image.Transpose.ROTATE_90).save(images / "a" / "turned.jpg", exif=exif)
    good = (images / "b" / "img0.jpg").read_bytes()
    (images / "b" / "cut.jpg").write_bytes(good[:40])  # a JPEG's start, then nothing
    files, _ = collect_images(images)
    prepare = Preprocess(36, 32, (0.5, 0.4, 0.3), (0.25, 0.2, 0.3), "bilinear", 3, "test")
    cpu = list(batches(files, prepare, 4))
    device = list(batches(files, prepare, 4, None, Loading(decode_on=torch.device("cpu"))))
    assert [(b.indices, b.failed) for b in device] == [(b.indices, b.failed) for b in cpu]
    assert [f.rel for b in device for f in (files[i] for i, _ in b.failed)] == ["b/cut.jpg"]
    jpegs = sum(f.rel.endswith(".jpg") and f.rel != "b/cut.jpg" for f in files)
    assert sum(b.on_device for b in device) == jpegs and sum(b.on_device for b in cpu) == 0
    std = torch.tensor(prepare.std).view(1, 3, 1, 1)
    for a, b in zip(cpu, device, strict=True):
        assert a.pixels is not None and b.pixels is not None
        levels = ((a.pixels - b.pixels) * std * 255).abs()
        assert float(levels.max()) <= 1.0 + 1e-4  # resampling differs by at most one level
        for row, index in enumerate(a.indices):
            if files[index].rel.endswith(".png"):
                assert torch.equal(a.pixels[row], b.pixels[row])  # Pillow on both paths


def test_decode_gpu_without_cuda_is_refused(images: Path, tmp_path: Path) -> None:
    code, out, err = run(*cli_args(images, tmp_path / "site", "--decode", "gpu", "--device", "cpu"))
    assert_clean_error(code, out, err, "--decode gpu", "--decode cpu")
    assert code == 2


def test_predictions_go_to_a_json_lines_file_when_asked_or_many(
    tiny_config: BuildConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gzip
    import json

    import reportgen.pipeline

    build(tiny_config)
    inline = read_report_json(tiny_config.site.out)
    assert inline["images_file"] is None and len(inline["images"]) == 8
    asked = tiny_config.replace(out=tmp_path / "asked", predictions="preds.jsonl.gz")
    build(asked)
    summary = read_report_json(asked.site.out)
    assert summary["images"] == []
    assert summary["images_file"] == {
        "path": "preds.jsonl.gz",
        "images": 8,
        "format": "gzip, JSON lines",
    }
    lines = gzip.decompress((asked.site.out / "preds.jsonl.gz").read_bytes()).decode().splitlines()
    assert [json.loads(line) for line in lines] == inline["images"]
    assert check_site(asked.site.out) == []
    again = tiny_config.replace(out=tmp_path / "again", predictions="preds.jsonl.gz")
    build(again)
    assert _digest(again.site.out) == _digest(asked.site.out)
    # Without the option, only a folder above the threshold gets the file.
    monkeypatch.setattr(reportgen.pipeline, "INLINE_IMAGES", 7)
    many = tiny_config.replace(out=tmp_path / "many")
    build(many)
    assert read_report_json(many.site.out)["images_file"]["path"] == "predictions.jsonl.gz"
    assert (many.site.out / "predictions.jsonl.gz").is_file()


def test_a_predictions_file_outside_the_site_is_refused(images: Path, tmp_path: Path) -> None:
    for value in ("../out.jsonl.gz", "sub/p.jsonl.gz", "p.json", ".hidden.jsonl.gz"):
        code, out, err = run(*cli_args(images, tmp_path / "site", "--predictions", value))
        assert_clean_error(code, out, err, f"--predictions {value!r}", ".jsonl.gz")
        assert code == 2
        assert not (tmp_path / "site").exists()
        assert not (tmp_path / "out.jsonl.gz").exists()
