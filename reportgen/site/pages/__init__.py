"""Page models, one module per page kind; :func:`iter_pages` builds them one at a time."""

from __future__ import annotations

from collections.abc import Iterator

from .common import PageContext, PageKind
from .filters import FiltersPage, filters_page
from .image import ImagePage, image_page
from .index import IndexPage, index_page
from .layer import LayerPage, layer_page
from .mistakes import ClassPage, MistakesPage, class_page, mistakes_page
from .unit import UnitPage, unit_page

__all__ = ["Page", "PageContext", "PageKind", "iter_pages"]

Page = IndexPage | FiltersPage | MistakesPage | ClassPage | LayerPage | UnitPage | ImagePage


def iter_pages(ctx: PageContext) -> Iterator[Page]:
    """Build every page model of the site, index first, each only when it is asked for."""
    yield index_page(ctx)
    yield filters_page(ctx)
    yield mistakes_page(ctx)
    for row in sorted(ctx.choices.selection.mistakes, key=lambda row: row.label):
        yield class_page(ctx, row)
    for layer in ctx.report.layers:
        yield layer_page(ctx, layer.depth)
    for position in range(len(ctx.choices.units)):
        yield unit_page(ctx, position)
    for position in range(len(ctx.choices.selection.showcase)):
        yield image_page(ctx, position)
