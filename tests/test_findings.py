"""Plant a defect in a model trained for the test, then check the report names it.

PlantNet (tests/planted.py) trains in a few seconds to tell discs, squares and bars
apart. Each test changes one thing (its weights, its preprocessing, its class names or
its images) and checks the finding's kind, layer, channels or classes; the clean model
gets none of the model- or data-level kinds.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import assert_clean_error, check_site, read_report_json, run
from planted import CLASSES, OPTIONS, draw_folder, train

from reportgen import build_report

PLANTED = Path(__file__).with_name("planted.py")
MODEL_AND_DATA_KINDS = {
    "untrained_weights",
    "preprocessing_mismatch",
    "label_swap",
    "shortcut",
    "below_chance",
    "class_never_right",
    "prediction_skew",
}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Train the clean and the background-coded model once, and draw the test folders."""
    root = tmp_path_factory.mktemp("planted")
    torch.save(train().state_dict(), root / "clean.pt")
    torch.save(train("shortcut").state_dict(), root / "coded.pt")
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return {
        "root": root,
        "clean": root / "clean.pt",
        "coded": root / "coded.pt",
        "classes": root / "classes.txt",
        "images": draw_folder(root / "images", 20, seed=5),
        "coded_images": draw_folder(root / "coded-images", 20, seed=6, background="coded"),
        "shuffled_images": draw_folder(root / "shuffled", 20, seed=7, background="shuffled"),
    }


def report(lab: dict[str, Path], out: Path, **options: object) -> dict:
    """Build a report of PlantNet and return its report.json."""
    settings = {
        "weights": str(lab["clean"]),
        "classes": lab["classes"],
        "examples": 0,
        **OPTIONS,
        **options,
    }
    images = settings.pop("images", lab["images"])
    build_report(f"{PLANTED}:PlantNet", images, out, **settings)
    return read_report_json(out)


def kinds(data: dict) -> set[str]:
    return {f["kind"] for f in data["findings"]}


def only(data: dict, kind: str) -> dict:
    (found,) = [f for f in data["findings"] if f["kind"] == kind]
    return found


def planted_weights(lab: dict[str, Path], name: str, change) -> str:
    """Save the clean weights after ``change(state)`` and return the file's path."""
    state = torch.load(lab["clean"])
    with torch.no_grad():
        change(state)
    path = lab["root"] / f"{name}.pt"
    torch.save(state, path)
    return str(path)


def test_the_clean_model_gets_no_model_or_data_findings(
    lab: dict[str, Path], tmp_path: Path
) -> None:
    data = report(lab, tmp_path / "site", examples=4)
    assert data["accuracy"]["top1"] >= 0.9
    assert kinds(data) & MODEL_AND_DATA_KINDS == set(), data["findings"]
    assert all(not layer["dead_channels"] for layer in data["layers"])
    first = data["layers"][0]
    assert first["block"]["norm_type"] == "BatchNorm2d" and first["norm_divergence"] < 0.25
    assert check_site(tmp_path / "site") == []


def test_untrained_weights_in_a_file_are_named(lab: dict[str, Path], tmp_path: Path) -> None:
    from planted import PlantNet

    fresh = tmp_path / "fresh.pt"
    torch.manual_seed(3)
    torch.save(PlantNet().state_dict(), fresh)
    data = report(lab, tmp_path / "site", weights=str(fresh), examples=2)
    finding = only(data, "untrained_weights")
    assert finding["severity"] == "error"
    assert finding["evidence"]["norms_at_identity"] == 3
    assert not data["model"]["untrained"]  # the user did not ask for untrained weights
    # What follows from untrained weights is not reported again as a data problem.
    assert kinds(data) & MODEL_AND_DATA_KINDS == {"untrained_weights"}
    index = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    assert "These weights look untrained" in index


def test_wrong_normalization_is_found_and_a_better_convention_named(
    lab: dict[str, Path], tmp_path: Path
) -> None:
    data = report(lab, tmp_path / "site", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    finding = only(data, "preprocessing_mismatch")
    assert finding["severity"] == "error" and finding["layer"] == "features.0"
    assert finding["evidence"]["first_norm_divergence"] > 0.25
    tried = {c["name"]: c for c in data["conventions"]}
    current = [c for c in data["conventions"] if c["current"]]
    assert len(current) == 1 and current[0]["name"] == "0..1 pixels, unnormalized"
    best = min(data["conventions"], key=lambda c: c["divergence"])
    assert best["divergence"] < current[0]["divergence"] / 3
    assert "ImageNet's mean and std" in tried and best["name"] in finding["message"]
    assert "--mean" in finding["message"] and "--std" in finding["message"]


def test_channels_switched_off_by_their_batch_norm_are_dead(
    lab: dict[str, Path], tmp_path: Path
) -> None:
    def switch_off(state: dict) -> None:
        gamma = state["features.4.weight"]
        state["features.4.bias"][[1, 5]] = -50 * gamma[[1, 5]].abs()

    weights = planted_weights(lab, "off", switch_off)
    data = report(lab, tmp_path / "site", weights=weights)
    finding = only(data, "dead_channels")
    assert finding["layer"] == "features.3" and finding["channels"] == [1, 5]
    layer = data["layers"][1]
    assert layer["points"]["conv"]["constant_channels"] == []  # the conv output still varies
    assert layer["dead_channels"] == [1, 5]


def test_zeroed_and_copied_filters_are_found(lab: dict[str, Path], tmp_path: Path) -> None:
    def plant(state: dict) -> None:
        state["features.3.weight"][2] = 0.0
        for key in ("weight", "bias", "running_mean", "running_var"):
            state[f"features.7.{key}"][7] = state[f"features.7.{key}"][4]
        state["features.6.weight"][7] = state["features.6.weight"][4]

    data = report(lab, tmp_path / "site", weights=planted_weights(lab, "copied", plant))
    dead = only(data, "dead_filters")
    assert dead["layer"] == "features.3" and dead["channels"] == [2]
    copies = only(data, "duplicate_filters")
    assert copies["layer"] == "features.6" and [4, 7] in copies["pairs"]
    alike = [f for f in data["findings"] if f["kind"] == "correlated_channels"]
    assert any(f["layer"] == "features.6" and [4, 7] in f["pairs"] for f in alike)
    assert kinds(data) & MODEL_AND_DATA_KINDS == set()


def test_two_swapped_class_names_are_found(lab: dict[str, Path], tmp_path: Path) -> None:
    swapped = tmp_path / "swapped.txt"
    swapped.write_text("square\ndisc\nbar\n")
    data = report(lab, tmp_path / "site", classes=swapped)
    finding = only(data, "label_swap")
    assert finding["classes"] == [0, 1] and finding["severity"] == "error"
    assert finding["evidence"]["accuracy_gain"] > 0.5
    assert "'square'" in finding["message"] and "'disc'" in finding["message"]


def test_labels_that_the_background_gives_away_are_a_shortcut(
    lab: dict[str, Path], tmp_path: Path
) -> None:
    data = report(lab, tmp_path / "site", images=lab["coded_images"])
    finding = only(data, "shortcut")
    assert finding["evidence"]["property"] in ("border_hue", "hue")
    assert finding["message"].startswith("The labels are predictable from the")


def test_a_model_that_learned_the_background_is_found(lab: dict[str, Path], tmp_path: Path) -> None:
    data = report(lab, tmp_path / "site", weights=str(lab["coded"]), images=lab["shuffled_images"])
    finding = only(data, "shortcut")
    assert finding["evidence"]["property"] in ("border_hue", "hue")
    assert finding["message"].startswith("The model's predictions are predictable from the")
    assert finding["severity"] == "warning"
    # With no layer or class to name, the finding points to the mistakes page.
    index = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    assert 'href="mistakes.html">the correct vs wrong page</a>' in index


def test_fail_on_exits_3_after_writing_the_site(lab: dict[str, Path], tmp_path: Path) -> None:
    args = [
        "--model",
        f"{PLANTED}:PlantNet",
        "--images",
        str(lab["images"]),
        "--classes",
        str(lab["classes"]),
        "--input-size",
        "32",
        "--mean",
        "0.5,0.5,0.5",
        "--std",
        "0.25,0.25,0.25",
        "--examples",
        "0",
    ]
    swapped = tmp_path / "swapped.txt"
    swapped.write_text("bar\nsquare\ndisc\n")
    bad = tmp_path / "bad"
    code, out, err = run(
        *args,
        "--weights",
        str(lab["clean"]),
        "--classes",
        str(swapped),
        "--out",
        str(bad),
        "--fail-on",
        "error",
    )
    assert code == 3
    assert_clean_error(code, out, err, "--fail-on error", "label_swap (error)")
    assert out.strip().splitlines()[-1] == str(bad / "index.html")
    assert (bad / "index.html").is_file() and read_report_json(bad)["findings"]
    good = tmp_path / "good"
    code, out, err = run(
        *args, "--weights", str(lab["clean"]), "--out", str(good), "--fail-on", "error"
    )
    assert code == 0, err
    assert out.strip() == str(good / "index.html")
