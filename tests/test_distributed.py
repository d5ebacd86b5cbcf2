"""Several processes under torchrun build the site one process builds, or fail cleanly."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import MODELS, check_site, cli_args, image_folder, run

from reportgen.errors import InferenceError
from reportgen.processes import Group


def _files(site: Path) -> dict[str, bytes]:
    return {p.relative_to(site).as_posix(): p.read_bytes() for p in site.rglob("*") if p.is_file()}


def _torchrun(args: list[str], processes: int = 2) -> subprocess.CompletedProcess[str]:
    """Run ``featreport build`` under torchrun in several processes (one thread each)."""
    launch = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    command = [sys.executable, *launch, "-m", "reportgen", "build", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=300, check=False
    )


def _in_process(args: list[str]) -> tuple[int, str, str]:
    """Build in this process with one thread, as each torchrun process has: a float32
    convolution's last bits may depend on how many threads share it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run(*args)
    finally:
        torch.set_num_threads(threads)


def _args(images: Path, out: Path, model: str = "TinyNet") -> list[str]:
    extra = ("--input-size", "32", "--batch-size", "4", "--examples", "4", "--unit-examples", "3")
    return cli_args(images, out, *extra, "-q", model=model)


def test_shards_are_whole_batches_that_cover_every_file_once() -> None:
    for count, size, batch in ((23, 2, 4), (3, 2, 4), (100, 3, 16), (0, 2, 4), (9, 4, 1)):
        shards = [Group(rank, size, 0).shard(count, batch) for rank in range(size)]
        assert [i for shard in shards for i in shard] == list(range(count))
        assert all(shard.start % batch == 0 for shard in shards if len(shard))


def test_two_processes_build_the_site_one_process_builds(tmp_path: Path) -> None:
    images = image_folder(tmp_path / "images", {"apple": 9, "banana": 8, "cherry": 6})
    (images / "apple" / "broken.png").write_bytes(b"not a picture")
    code, _, err = _in_process(_args(images, tmp_path / "one"))
    assert code == 0, err
    two = _torchrun(_args(images, tmp_path / "two"))
    assert two.returncode == 0, two.stderr
    assert two.stdout.strip() == str(tmp_path / "two" / "index.html")  # said once, by rank 0
    a, b = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert sorted(a) == sorted(b)
    assert [name for name in sorted(a) if a[name] != b[name]] == []
    assert "broken.png" in b["report.json"].decode()
    assert check_site(tmp_path / "two") == []


def test_shards_merge_into_the_whole_even_an_empty_one(tmp_path: Path) -> None:
    """What torchrun's processes do, in one process: run each shard, merge in rank order."""
    from reportgen.config import BuildConfig
    from reportgen.data.files import collect_images
    from reportgen.models.load import load_model
    from reportgen.tally.pass1 import Pass1Options, Pass1Tally
    from reportgen.timing import Timings

    images = image_folder(tmp_path / "images", {"apple": 4, "banana": 3})
    (images / "banana" / "broken.png").write_bytes(b"not a picture")
    config = BuildConfig.from_options(
        {"model": f"{MODELS}:TinyNet", "images": images, "weights": "none", "input_size": 32}
    )
    loaded = load_model(config.model, config.run)
    files, _ = collect_images(images)

    def shard(indices: range | None):  # type: ignore[no-untyped-def]
        tally = Pass1Tally(loaded.adapter, files, loaded.preprocess, Pass1Options(indices))
        return tally, tally.run(4, lambda n: None, Timings())

    whole, states = shard(None)
    expected = whole.finish(states, Timings())
    for ranks in (2, 3):  # with 3 processes over 2 batches, one has no image
        parts = [Group(rank, ranks, 0).shard(len(files), 4) for rank in range(ranks)]
        assert any(len(part) == 0 for part in parts) == (ranks == 3)
        tally, _ = shard(None)
        merged = tally.finish(tally.merge([shard(part)[1] for part in parts]), Timings())
        assert merged.top == expected.top
        assert merged.skipped == expected.skipped
        assert merged.layers == expected.layers
    # A process whose model hooks other statistics (here: no examples kept) cannot merge.
    other = Pass1Tally(loaded.adapter, files, loaded.preprocess, Pass1Options(unit_examples=0))
    odd = other.run(4, lambda n: None, Timings())
    with pytest.raises(InferenceError, match="process 1 found other layers or blocks"):
        whole.merge([states, odd])


def test_a_failing_process_fails_the_build_and_keeps_the_previous_site(tmp_path: Path) -> None:
    images = image_folder(tmp_path / "images", {"apple": 5, "banana": 4})
    out = tmp_path / "site"
    code, _, err = _in_process(_args(images, out, "RankOneFailsNet"))
    assert code == 0, err
    before = _files(out)
    failed = _torchrun(_args(images, out, "RankOneFailsNet"))
    assert failed.returncode != 0
    assert "Error: process 1 of 2 failed" in failed.stderr
    assert "planted failure in the second process" in failed.stderr
    assert _files(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "site"]


def test_the_second_passes_are_shared_among_the_processes(tmp_path: Path) -> None:
    """RankShiftNet answers differently in process 1, so what process 1 computed shows.

    Unit pages: an example is not drawn exactly when pass 1 and pass 2 ran its image in
    different processes; without sharing, process 0 would run every image of pass 2, and
    no image of its own shard could differ. Class activation maps (``--cam all``): batch
    ``i`` of the gradient pass runs in process ``i % 2``, so exactly the images of the odd
    batches have maps unlike those of one process."""
    images = image_folder(tmp_path / "images", {"apple": 8, "banana": 8})
    extra = ("--units", "all", "--unit-examples", "3", "--cam", "all")
    code, _, err = _in_process([*_args(images, tmp_path / "one", "RankShiftNet"), *extra])
    assert code == 0, err
    out = tmp_path / "site"
    done = _torchrun([*_args(images, out, "RankShiftNet"), *extra])
    assert done.returncode == 0, done.stderr
    names = sorted(p.relative_to(images).as_posix() for p in images.rglob("*.png"))
    first_shard = set(names[: len(names) // 2])  # 4 batches of 4: process 0 has the first 2
    missed: set[str] = set()
    for page in (out / "units").rglob("*.html"):
        for card in page.read_text(encoding="utf-8").split('<li class="unitcard')[1:]:
            if "Not drawn" in card:
                missed |= set(re.findall(r'<span class="name">([^<]+)</span>', card))
    assert missed & first_shard
    assert missed - first_shard
    one, two = (json.loads((d / "report.json").read_text()) for d in (tmp_path / "one", out))
    cams = [{i["path"]: i["cams"] for i in r["images"]} for r in (one, two)]
    differ = sorted(name for name in names if cams[0][name] != cams[1][name])
    assert differ == [name for k, name in enumerate(names) if (k // 4) % 2 == 1]
