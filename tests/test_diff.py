"""featreport diff: the CKA estimators the libraries lacked, and the comparison site."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from helpers import MODELS, assert_clean_error, check_site

from reportgen.commands.cli import main
from reportgen.diff.cka import (
    GROUPS,
    MinibatchCKA,
    PairReducer,
    PairSums,
    _group_terms,
    _squared_norms,
    hsic1,
    linear_cka,
    minibatch_estimates,
    pair_estimate,
)
from reportgen.diff.run import derangement

ROOT = Path(__file__).resolve().parents[1]
SHAPES = ROOT / "examples" / "shapes"


def _maps(images: int, channels: int, seed: int, size: int = 5) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(images, channels, size, size, generator=generator)


def _streamed(x: torch.Tensor, y: torch.Tensor, batch: int, groups: int = GROUPS) -> PairSums:
    reducer = PairReducer(groups)
    for start in range(0, len(x), batch):
        index = torch.arange(start, min(start + batch, len(x)))
        reducer.update(x[index], y[index], index)
    state = reducer.state()
    assert state is not None
    return state


def _positions(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2).transpose(1, 2).reshape(-1, x.shape[1])


def test_linear_cka_of_a_layer_with_itself_is_one() -> None:
    x = _maps(12, 6, 0)
    assert pair_estimate(_streamed(x, x, 5)).value == pytest.approx(1.0, abs=1e-12)


def test_linear_cka_ignores_rotation_and_isotropic_scaling() -> None:
    x, y = _maps(20, 6, 0), _maps(20, 5, 1) + 0.5 * _maps(20, 6, 0)[:, :5]
    x, y = x.double(), y.double()
    generator = torch.Generator().manual_seed(3)
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=generator, dtype=torch.float64))
    rotated = torch.einsum("nchw,cd->ndhw", y, q) * 7.5
    base = pair_estimate(_streamed(x, y, 4)).value
    assert base is not None and 0.05 < base < 0.95
    assert pair_estimate(_streamed(x, rotated, 4)).value == pytest.approx(base, abs=1e-9)
    # A rotation is not any change: a non-orthogonal mix changes the value.
    stretch = torch.diag(torch.arange(1.0, 6.0, dtype=torch.float64))
    mixed = torch.einsum("nchw,cd->ndhw", y, stretch)
    assert abs(pair_estimate(_streamed(x, mixed, 4)).value - base) > 1e-3  # type: ignore[operator]


def test_streaming_agrees_with_a_direct_computation() -> None:
    x, y = _maps(23, 7, 0), _maps(23, 4, 1) + _maps(23, 7, 0)[:, :4] ** 2
    direct = linear_cka(_positions(x), _positions(y))
    assert pair_estimate(_streamed(x, y, 6)).value == pytest.approx(direct, abs=1e-9)


def test_batch_sizes_1_7_and_64_give_the_same_sums() -> None:
    x, y = _maps(40, 6, 0) + 3.0, _maps(40, 6, 1).relu()
    results = [_streamed(x, y, batch) for batch in (1, 7, 64)]
    values = [pair_estimate(r) for r in results]
    for other in values[1:]:
        assert other.value == pytest.approx(values[0].value, abs=1e-12)
        assert other.low == pytest.approx(values[0].low, abs=1e-12)
    for other in results[1:]:
        assert torch.allclose(other.xy, results[0].xy, rtol=1e-12, atol=1e-9)


def test_bootstrap_algebra_equals_resampled_sums() -> None:
    x, y = _maps(30, 5, 0), _maps(30, 5, 1) + _maps(30, 5, 0)
    sums = _streamed(x, y, 8)
    w = torch.tensor([[2.0, 0, 1, 1, 0, 3, 1, 0, 2, 0]], dtype=torch.float64)
    n = w @ sums.count
    fast = _squared_norms(_group_terms(sums.xy, sums.sx, sums.sy), w, n)
    weighted = (w[0][:, None, None] * sums.xy).sum(0)
    a, b = (w[0][:, None] * sums.sx).sum(0), (w[0][:, None] * sums.sy).sum(0)
    direct = (weighted - torch.outer(a, b) / n[0]).square().sum()
    assert float(fast[0]) == pytest.approx(float(direct), rel=1e-9)
    estimate = pair_estimate(sums)
    assert estimate.low is not None and estimate.high is not None
    assert estimate.low <= estimate.value <= estimate.high  # type: ignore[operator]


def test_shuffled_pairing_is_near_zero() -> None:
    x = _maps(64, 6, 0, size=6)
    moved = torch.tensor(derangement(64, 0))
    assert all(int(m) != i for i, m in enumerate(moved))
    same = pair_estimate(_streamed(x, x, 16)).value
    shuffled = pair_estimate(_streamed(x, x[moved], 16)).value
    assert same == pytest.approx(1.0) and shuffled is not None and shuffled < 0.05


def _naive_hsic1(k: torch.Tensor, l: torch.Tensor) -> float:  # noqa: E741
    """Song et al. (2012), eq. 5, written out term by term."""
    n = k.shape[0]
    kt, lt = k.clone(), l.clone()
    kt.fill_diagonal_(0)
    lt.fill_diagonal_(0)
    one = torch.ones(n, 1, dtype=k.dtype)
    first = torch.trace(kt @ lt)
    second = float(one.T @ kt @ one) * float(one.T @ lt @ one) / ((n - 1) * (n - 2))
    third = 2.0 / (n - 2) * float(one.T @ kt @ lt @ one)
    return float(first + second - third) / (n * (n - 3))


def test_unbiased_hsic_matches_its_formula() -> None:
    f, g = torch.randn(9, 4, dtype=torch.float64), torch.randn(9, 3, dtype=torch.float64)
    k, l = f @ f.T, g @ g.T  # noqa: E741
    assert float(hsic1(k, l)) == pytest.approx(_naive_hsic1(k, l), rel=1e-12)


def _minibatch(features_a: torch.Tensor, features_b: torch.Tensor, batch: int) -> MinibatchCKA:
    cka = MinibatchCKA(["a"], ["b", "b2"])
    for start in range(0, len(features_a), batch):
        part = slice(start, start + batch)
        cka.add({"a": features_a[part]}, {"b": features_b[part], "b2": features_a[part] * 3})
    return cka


def test_minibatch_cka_is_one_with_itself_and_independent_of_batch_size() -> None:
    a = _maps(70, 4, 0).flatten(1)
    b = torch.randn(70, 30, generator=torch.Generator().manual_seed(1))
    estimates = [minibatch_estimates(_minibatch(a, b, size).state()) for size in (1, 7, 64)]
    first = estimates[0]
    assert first.chunks == 5  # four of 16 and the last of 6 (at least 4 counts)
    assert first.value[0][1] == pytest.approx(1.0, abs=1e-9)  # a against 3·a
    assert first.value[0][0] is not None and abs(first.value[0][0]) < 0.2  # unrelated
    for other in estimates[1:]:
        assert other.value[0][0] == pytest.approx(first.value[0][0], abs=1e-9)
        assert other.null[0][1] == pytest.approx(first.null[0][1], abs=1e-9)
    assert first.null[0][1] is not None and first.null[0][1] < 0.3  # rotated images


def _subset(tmp_path: Path, per_class: int = 8) -> Path:
    """Copy the first ``per_class`` shapes of each class: enough for a diff, and quick."""
    folder = tmp_path / "shapes"
    for source in sorted((SHAPES / "images").iterdir()):
        (folder / source.name).mkdir(parents=True)
        for image in sorted(source.iterdir())[:per_class]:
            shutil.copy(image, folder / source.name / image.name)
    return folder


def _diff(tmp_path: Path, *args: str, out: str = "diff") -> tuple[int, str, str, Path]:
    site = tmp_path / out
    result = CliRunner().invoke(
        main,
        [
            "diff",
            "--config",
            str(SHAPES / "featreport.toml"),
            "--images",
            str(_subset(tmp_path)),
            "--out",
            str(site),
            "--quiet",
            *args,
        ],
    )
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr, site


def test_a_model_against_its_own_weights_is_identical(tmp_path: Path) -> None:
    # The libraries' bug: a comparison of A with A. Here B is loaded on its own from the
    # same file: every layer must come out 1, and the references must not.
    code, _, err, site = _diff(tmp_path, "--weights-b", str(SHAPES / "weights.pt"))
    assert code == 0, err
    document = json.loads((site / "report.json").read_text())
    for layer in document["layers"]:
        assert layer["cka"]["value"] == pytest.approx(1.0, abs=1e-9)
        assert layer["mean_cosine_drift"] == pytest.approx(0.0, abs=1e-9)
        assert layer["shuffled"] < 0.5
        assert layer["floor"] < 0.9
    assert document["agreement"] == 1.0
    assert document["flips"]["a_right_b_wrong"] == []


def test_checkpoints_over_training_approach_the_final_one(tmp_path: Path) -> None:
    sys.path.insert(0, str(SHAPES))
    try:
        import train as shapes_train
    finally:
        sys.path.remove(str(SHAPES))
    folder = tmp_path / "checkpoints"
    folder.mkdir()

    def save(epoch: int, model: torch.nn.Module) -> None:
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        torch.save(state, folder / f"epoch-{epoch}.pt")

    shapes_train.train(120, 4, log=False, after_epoch=save)
    code, _, err, site = _diff(tmp_path, "--checkpoints", str(folder))
    assert code == 0, err
    document = json.loads((site / "report.json").read_text())
    names = [c["name"] for c in document["checkpoints"]]
    assert names == ["epoch-1.pt", "epoch-2.pt", "epoch-3.pt", "epoch-4.pt"]
    for depth in range(len(document["layers"])):
        rising = [c["cka_to_final"][depth] for c in document["checkpoints"]]
        assert rising == sorted(rising) and rising[0] < rising[-1] == 1.0, (depth, rising)
    assert check_site(site) == []
    assert "Over training" in (site / "index.html").read_text()


def test_another_architecture_gets_a_heatmap(tmp_path: Path) -> None:
    code, _, err, site = _diff(
        tmp_path, "--model-b", f"{MODELS}:FiveClassNet", "--weights-b", "none"
    )
    assert code == 0, err
    document = json.loads((site / "report.json").read_text())
    assert document["aligned"] is False and "minibatch" in document["estimator"]
    heatmap = document["heatmap"]
    assert heatmap["columns"] == ["features.0", "features.3", "features.5"]
    assert len(heatmap["value"]) == len(document["layers"]) == 5
    assert heatmap["chunks"] == 3  # 40 images: two chunks of 16, then one of 8
    assert all(layer["floor"] is not None for layer in document["layers"])
    assert (site / "charts" / "heatmap.svg").is_file()
    assert check_site(site) == []


def test_two_runs_write_byte_identical_sites(tmp_path: Path) -> None:
    sites = []
    for name in ("one", "two"):
        code, _, err, site = _diff(tmp_path / name, "--weights-b", "none", "--cam", "none")
        assert code == 0, err
        sites.append(site)
    files = sorted(p.relative_to(sites[0]) for p in sites[0].rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(sites[1]) for p in sites[1].rglob("*") if p.is_file())
    assert any(f.suffix == ".webp" for f in files) and Path("report.json") in files
    for rel in files:
        assert (sites[0] / rel).read_bytes() == (sites[1] / rel).read_bytes(), rel


def test_diff_is_refused_under_torchrun(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    code, out, err, site = _diff(tmp_path, "--weights-b", "none")
    assert_clean_error(code, out, err, "one process")
    assert not site.exists()


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        ((), ("--weights-b", "--checkpoints")),
        (("--weights-b", "none", "--single-file"), ("--single-file", "does not apply")),
        (("--checkpoints", str(SHAPES / "weights.pt")), ("at least two",)),
        (
            (
                "--weights-b",
                "none",
                "--checkpoints",
                str(SHAPES / "weights.pt"),
                str(SHAPES / "weights.pt"),
            ),
            ("leave out",),
        ),
    ],
)
def test_diff_refuses_what_it_cannot_do(
    tmp_path: Path, args: tuple[str, ...], needles: tuple[str, ...]
) -> None:
    code, out, err, site = _diff(tmp_path, *args)
    assert_clean_error(code, out, err, *needles)
    assert not site.exists()
