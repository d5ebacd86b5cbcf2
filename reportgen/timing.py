"""Wall-clock time per build stage, for ``featreport build --profile`` and the benchmark."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["Timings"]


class Timings:
    """Seconds spent per named stage; a stage may be entered many times and adds up."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.started = time.perf_counter()

    def add(self, name: str, seconds: float) -> None:
        """Add ``seconds`` to the stage ``name``."""
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the ``with`` block as part of the stage ``name``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - start)

    def total(self) -> float:
        """Return the seconds since these timings started."""
        return time.perf_counter() - self.started

    def as_dict(self) -> dict[str, float]:
        """Return the seconds of each stage, in the order they first ran, then the total."""
        return {**self.seconds, "total": self.total()}

    def table(self) -> str:
        """Render the stages in the order they first ran, with their share of the total."""
        total = self.total()
        width = max([len(n) for n in self.seconds] + [5])
        lines = [f"{'stage':<{width}}  {'seconds':>8}  {'share':>6}"]
        for name, seconds in self.seconds.items():
            lines.append(f"{name:<{width}}  {seconds:8.2f}  {seconds / total:6.1%}")
        lines.append(f"{'total':<{width}}  {total:8.2f}  {1:6.1%}")
        return "\n".join(lines)
