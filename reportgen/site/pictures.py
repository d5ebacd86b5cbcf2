"""Which pictures the site has, and where: drawn with ``drawing`` and queued for writing."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..drawing import charts, visuals
from ..drawing.encoder import Pictures
from ..gather.cams import ImageCams
from ..gather.maps import ImageMaps
from ..report.facts import ChannelStats, LayerRecord
from . import urls
from .layout import FILTERS_SHOWN, strip_depths

__all__ = ["draw_cams", "draw_image", "draw_layer"]


def draw_image(
    pictures: Pictures,
    image: ImageMaps,
    mean: Sequence[float],
    std: Sequence[float],
    layer_count: int,
) -> None:
    """Draw one shown image's input, its depth strip, and its maps where it has a full page."""
    ext = pictures.ext
    index = image.index
    pictures.add(urls.input_picture(index, ext), visuals.input_image(image.input, mean, std))
    strip = [image.layers[d].mean_map for d in strip_depths(layer_count)]
    pictures.add(urls.strip_picture(index, ext), visuals.strip(strip))
    for depth, layer in enumerate(image.layers):
        if layer.maps is not None:
            pictures.add(urls.mean_picture(index, depth, ext), visuals.heatmap(layer.mean_map))
            pictures.add(urls.grid_picture(index, depth, ext), visuals.feature_grid(layer.maps))


def draw_cams(
    pictures: Pictures, image: ImageCams, mean: Sequence[float], std: Sequence[float]
) -> None:
    """Draw one image's class activation maps, each laid over the image."""
    for label, cam in zip(image.labels, image.maps, strict=True):
        pictures.add(
            urls.cam_picture(image.index, label, pictures.ext),
            visuals.cam_overlay(image.input, cam, mean, std),
        )


def draw_layer(
    pictures: Pictures,
    layer: LayerRecord,
    weights: torch.Tensor,
    stats: ChannelStats,
    strongest: Sequence[int],
) -> None:
    """Draw one layer's filter grid (``weights``), norm chart and channel chart (of ``stats``)."""
    ext, depth, filters = pictures.ext, layer.depth, layer.filters
    shown = weights[:FILTERS_SHOWN]
    duplicate = filters.duplicated
    if layer.conv.rgb_filters:
        grid = visuals.filter_grid_rgb(shown, filters.dead, duplicate)
    else:
        grid = visuals.filter_grid_gray(shown, filters.dead, duplicate)
    pictures.add(urls.filter_picture(depth, ext), grid)
    pictures.add_svg(
        urls.norm_chart_picture(depth),
        charts.norm_chart(
            filters.norms, filters.dead, duplicate, visuals.DEAD_MARK, visuals.DUPLICATE_MARK
        ),
    )
    pictures.add_svg(
        urls.channel_chart_picture(depth),
        charts.channel_chart(
            stats.channel_mean,
            stats.channel_max,
            layer.dead_channels,
            strongest,
            visuals.DEAD_MARK,
            visuals.STRONG_MARK,
        ),
    )
