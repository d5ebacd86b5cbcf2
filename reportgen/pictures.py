"""Draw every picture a site shows and hand the encoded bytes to the site writer."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from PIL import Image
from torch import nn

from . import urls, visuals
from .infer import Captured
from .model import Preprocess
from .pages import FILTERS_SHOWN, strip_depths
from .report import Report
from .stats import output_filters

Write = Callable[[str, bytes], None]


class Pictures:
    """Encode pictures, pass them on to be written (or keep them to inline), and note sizes."""

    def __init__(self, write: Write, image_format: str, inline: bool) -> None:
        self.write = write
        self.ext = image_format
        self.sizes: dict[str, tuple[int, int]] = {}
        self.inline: dict[str, bytes] | None = {} if inline else None

    def add(self, path: str, image: Image.Image) -> None:
        data = visuals.encode(image, self.ext)
        self.sizes[path] = image.size
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
        pictures.add(
            urls.norm_chart_picture(depth, ext),
            visuals.norm_chart(filters.norms, filters.dead, duplicate),
        )
        pictures.add(
            urls.channel_chart_picture(depth, ext),
            visuals.channel_chart(
                stats.channel_mean, stats.channel_max, stats.dead_channels, stats.strongest_channels
            ),
        )
        progress(1)
