"""Encode pictures on a thread pool and hand the bytes on, in the order they were added."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from PIL import Image

from . import charts, visuals

__all__ = ["Pictures", "Write"]

Write = Callable[[str, bytes], None]


class Pictures:
    """Encode pictures, pass them on to be written (or keep them to inline), and note sizes.

    Encoding runs on a thread pool (Pillow releases the GIL while it encodes), so the
    next grid is drawn while the last ones are compressed. Use it as a context manager:
    leaving the block writes every picture, in the order they were added.
    """

    def __init__(self, write: Write, image_format: str, inline: bool) -> None:
        self.write = write
        self.ext = image_format
        self.sizes: dict[str, tuple[int, int]] = {}
        self.inline: dict[str, bytes] | None = {} if inline else None
        self.workers = max(1, min(4, os.cpu_count() or 1))
        self._pool = ThreadPoolExecutor(max_workers=self.workers)
        self._pending: deque[tuple[str, Future[bytes]]] = deque()

    def __enter__(self) -> Pictures:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is None:
            self.flush()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def add(self, path: str, image: Image.Image) -> None:
        """Queue a picture to be encoded and written at ``path``."""
        self._queue(path, image.size, self._pool.submit(visuals.encode, image, self.ext))

    def add_svg(self, path: str, svg: str, size: tuple[int, int] | None = None) -> None:
        """Queue an SVG chart to be written at ``path`` (``size``: its own, if not the charts')."""
        done: Future[bytes] = Future()
        done.set_result(svg.encode("utf-8"))
        self._queue(path, size or (charts.WIDTH, charts.HEIGHT), done)

    def flush(self) -> None:
        """Wait for every picture added so far and hand it to the writer."""
        while self._pending:
            self._write_oldest()

    def _queue(self, path: str, size: tuple[int, int], data: Future[bytes]) -> None:
        self.sizes[path] = size
        self._pending.append((path, data))
        while len(self._pending) > 64:  # bound the pictures held in memory
            self._write_oldest()

    def _write_oldest(self) -> None:
        path, future = self._pending.popleft()
        data = future.result()
        if self.inline is not None:
            self.inline[path] = data
        else:
            self.write(path, data)
