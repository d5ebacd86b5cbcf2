"""Draw every picture a site shows and hand the encoded bytes to the site writer."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from PIL import Image
from torch import nn

from . import charts, urls, visuals
from .infer import Captured
from .model import Preprocess
from .pages import FILTERS_SHOWN, strip_depths
from .report import Report
from .stats import output_filters

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
        self._queue(path, image.size, self._pool.submit(visuals.encode, image, self.ext))

    def add_svg(self, path: str, svg: str) -> None:
        done: Future[bytes] = Future()
        done.set_result(svg.encode("utf-8"))
        self._queue(path, (charts.WIDTH, charts.HEIGHT), done)

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


def draw_images(
    pictures: Pictures,
    captured: Mapping[int, Captured],
    preprocess: Preprocess,
    layer_count: int,
    progress: Callable[[int], None],
) -> None:
    """Draw each shown image's input, its depth strip, and its maps where it gets a full page."""
    ext = pictures.ext
    depths = strip_depths(layer_count)
    for index, item in sorted(captured.items()):
        pictures.add(
            urls.input_picture(index, ext),
            visuals.input_image(item.input, preprocess.mean, preprocess.std),
        )
        pictures.add(
            urls.strip_picture(index, ext), visuals.strip([item.layers[d].mean_map for d in depths])
        )
        for depth, layer in enumerate(item.layers):
            if layer.maps is not None:
                pictures.add(urls.mean_picture(index, depth, ext), visuals.heatmap(layer.mean_map))
                pictures.add(urls.grid_picture(index, depth, ext), visuals.feature_grid(layer.maps))
        progress(1)


def draw_layers(
    pictures: Pictures,
    report: Report,
    modules: Sequence[nn.Module],
    progress: Callable[[int], None],
) -> None:
    """Draw each layer's filter grid, filter-norm chart and channel chart."""
    ext = pictures.ext
    for depth, (info, module, stats, filters) in enumerate(
        zip(report.layers, modules, report.stats, report.filters, strict=True)
    ):
        weights = output_filters(module)[:FILTERS_SHOWN]
        duplicate = sorted({i for a, b, _ in filters.duplicates for i in (a, b)})
        if info.rgb_filters:
            grid = visuals.filter_grid_rgb(weights, filters.dead, duplicate)
        else:
            grid = visuals.filter_grid_gray(weights, filters.dead, duplicate)
        pictures.add(urls.filter_picture(depth, ext), grid)
        pictures.add_svg(
            urls.norm_chart_picture(depth),
            charts.norm_chart(
                filters.norms,
                filters.dead,
                duplicate,
                visuals.DEAD_MARK,
                visuals.DUPLICATE_MARK,
            ),
        )
        pictures.add_svg(
            urls.channel_chart_picture(depth),
            charts.channel_chart(
                stats.channel_mean,
                stats.channel_max,
                stats.dead_channels,
                stats.strongest_channels,
                visuals.DEAD_MARK,
                visuals.STRONG_MARK,
            ),
        )
        progress(1)
