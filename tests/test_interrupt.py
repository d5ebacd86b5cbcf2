"""A build stopped by a signal leaves the previous site intact and nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import cli_args


def command(images: Path, out: Path, model: str) -> list[str]:
    args = cli_args(images, out, "--input-size", "32", "--batch-size", "1", "-q", model=model)
    return [sys.executable, "-m", "reportgen", "build", *args]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_midway_keeps_the_previous_site(images: Path, tmp_path: Path, signum: int) -> None:
    out = tmp_path / "site"
    subprocess.run(command(images, out, "TinyNet"), check=True, capture_output=True)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    marker = tmp_path.parent / f"{tmp_path.name}-running"
    env = {**os.environ, "FEATREPORT_TEST_MARKER": str(marker)}
    proc = subprocess.Popen(
        command(images, out, "SlowNet"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 120
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the build ended before it could be interrupted"
    time.sleep(0.5)  # midway through the slow forward passes
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "Traceback" not in err
    assert "interrupted" in err
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "site"], (
        "no temporary folder left"
    )


def test_interrupt_while_writing_keeps_the_previous_site(
    tiny_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reportgen.pipeline import build
    from reportgen.site.writer import SiteWriter

    build(tiny_config)
    out = tiny_config.site.out
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    original = SiteWriter.write_bytes
    calls = []

    def flaky(self: SiteWriter, rel: str, data: bytes) -> None:
        calls.append(rel)
        if len(calls) == 5:
            assert self.root is not None and any(self.root.rglob("*.webp"))
            raise KeyboardInterrupt
        original(self, rel, data)

    monkeypatch.setattr(SiteWriter, "write_bytes", flaky)
    with pytest.raises(KeyboardInterrupt):
        build(tiny_config)
    assert len(calls) == 5
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
