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
from .layout import FILTERS_SHOWN, STRIP_PX, strip_depths

__all__ = ["Strips", "draw_cams", "draw_image", "draw_layer"]


def draw_image(
    pictures: Pictures, image: ImageMaps, mean: Sequence[float], std: Sequence[float]
) -> None:
    """Draw one shown image's input, and its maps where it has a full page."""
    ext = pictures.ext
    index = image.index
    pictures.add(urls.input_picture(index, ext), visuals.input_image(image.input, mean, std))
    for depth, layer in enumerate(image.layers):
        if layer.maps is not None:
            pictures.add(urls.mean_picture(index, depth, ext), visuals.heatmap(layer.mean_map))
            pictures.add(urls.grid_picture(index, depth, ext), visuals.feature_grid(layer.maps))


class Strips:
    """Draw the depth strips of the mistakes pages' cards: one tile per strip layer.

    Each strip belongs to a group (one true class's cards). With ``shared``, each layer's
    tiles are scaled to one min–max over the group, so that a layer that fires less on a
    mistake than on the correct images looks darker; the group's maps are held, as small
    squares on the model's device, until its last image has come. Otherwise each tile is
    scaled to its own min–max.
    """

    def __init__(
        self,
        pictures: Pictures,
        groups: Sequence[Sequence[int]],
        layer_count: int,
        shared: bool,
    ) -> None:
        self._pictures = pictures
        self._group_of = {i: g for g, members in enumerate(groups) for i in members}
        if len(self._group_of) != sum(len(members) for members in groups):
            raise ValueError("an image is in two strip groups")
        self._sizes = [len(members) for members in groups]
        self._depths = strip_depths(layer_count)
        self._shared = shared
        self._held: dict[int, dict[int, torch.Tensor]] = {}

    def add(self, image: ImageMaps) -> None:
        """Take one image's maps; draw its strip, or its group's once the group is complete."""
        group = self._group_of.get(image.index)
        if group is None:
            return
        squares = torch.stack(
            [visuals.fit_square(image.layers[d].mean_map, STRIP_PX) for d in self._depths]
        )
        if not self._shared:
            flat = squares.flatten(1)
            self._draw(image.index, squares, flat.amin(dim=1), flat.amax(dim=1))
            return
        held = self._held.setdefault(group, {})
        held[image.index] = squares
        if len(held) == self._sizes[group]:
            stacked = torch.stack(list(held.values()))
            low, high = stacked.amin(dim=(0, 2, 3)), stacked.amax(dim=(0, 2, 3))
            for index in sorted(held):
                self._draw(index, held[index], low, high)
            del self._held[group]

    def _draw(
        self, index: int, squares: torch.Tensor, low: torch.Tensor, high: torch.Tensor
    ) -> None:
        tiles = visuals.strip_tiles(squares, low, high)
        for depth, tile in zip(self._depths, tiles, strict=True):
            self._pictures.add(urls.strip_picture(index, depth, self._pictures.ext), tile)


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
