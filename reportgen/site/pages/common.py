"""What every page kind shares: small records, value formatting, and the page context.

Page models hold values, never sentences: names, numbers and lists formatted as text,
link texts, alt texts and fact labels. Every sentence a reader sees is in a template.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from ...analysis.rules import CAM_SANITY
from ...report.facts import Prediction, Report
from .. import urls
from ..choices import SiteChoices
from ..layout import GRID_PX, MEAN_MAP_PX, STRIP_SHOWN_PX, strip_depths
from ..urls import Linker

__all__ = [
    "METHOD_NAMES",
    "CamView",
    "Card",
    "ChannelList",
    "ChannelRef",
    "Chrome",
    "Fact",
    "Link",
    "NavItem",
    "Neighbour",
    "PageContext",
    "PageKind",
    "Picture",
    "Sizes",
    "StripTile",
    "Verdict",
    "index_list",
    "num",
    "pct",
    "shape_text",
    "verdict",
]

PageKind = Literal["index", "image", "layer", "filters", "mistakes", "class", "unit"]
# Pages that belong under another's navigation entry.
_NAV_PARENT = {"class": "mistakes", "unit": "layer"}
Sizes = Mapping[str, tuple[int, int]]


@dataclass(frozen=True)
class Link:
    """A link: where it goes and what it says."""

    href: str
    text: str


@dataclass(frozen=True)
class NavItem:
    """One entry of the site navigation."""

    href: str
    text: str
    current: bool


@dataclass(frozen=True)
class Picture:
    """An image on a page: its source, displayed size and alt text."""

    src: str
    width: int
    height: int
    alt: str


@dataclass(frozen=True)
class Fact:
    """One row of a facts table."""

    label: str
    value: str


@dataclass(frozen=True)
class Verdict:
    """Whether a prediction was right, as a word and a CSS class."""

    text: str  # "correct", "wrong" or "unlabeled"
    css: str


@dataclass(frozen=True)
class Chrome:
    """What every page has: title, navigation, stylesheet and whether weights are untrained."""

    kind: PageKind
    path: str
    title: str
    section_id: str
    style_href: str
    nav: tuple[NavItem, ...]
    untrained: bool  # the banner: untrained by the user's word or by a finding
    untrained_found: bool  # untrained by the untrained-weights finding, not --weights none
    model_name: str
    point: str  # --point: "activation" or "conv"


@dataclass(frozen=True)
class CamView:
    """One class activation map laid over its image, and which class it is for."""

    picture: Picture
    role: str  # "predicted" or "true"
    class_name: str
    zero: bool  # zero everywhere: no position raised the class's score
    peak: str  # the map's raw maximum, so two maps' strengths can be compared


@dataclass(frozen=True)
class Neighbour:
    """A correct image of the class a mistake was taken for, near it in the model's features."""

    picture: Picture
    name: str
    link: Link | None
    similarity: str


@dataclass(frozen=True)
class ChannelRef:
    """A channel index as a page lists it, linked to its unit page when it has one."""

    text: str
    href: str | None


@dataclass(frozen=True)
class ChannelList:
    """Channel indices as a page lists them: the first few, and how many in all."""

    items: tuple[ChannelRef, ...]
    total: int


@dataclass(frozen=True)
class StripTile:
    """One layer's channel-mean map in a depth strip, linked to the layer's page."""

    link: Link
    name_parts: tuple[str, ...]  # the layer's name split at its dots, where it may wrap
    picture: Picture
    shape: str


@dataclass(frozen=True)
class Card:
    """A small linked example: an image, what the model said, and whether it was right."""

    link: Link | None
    name: str
    picture: Picture
    predicted: str
    confidence: str
    truth: str
    verdict: Verdict
    strip: tuple[StripTile, ...] = ()  # on the mistakes pages
    cams: tuple[CamView, ...] = ()
    top: str = ""  # on the mistakes page: the top five, such as "square 43.8%, circle 35.3%, ..."
    nearest: tuple[Neighbour, ...] = ()  # for a mistake on the mistakes page
    nearest_class: str = ""  # the class they are correct examples of


METHOD_NAMES = {"gradcam": "Grad-CAM", "layercam": "LayerCAM"}


def pct(value: float | None) -> str:
    """Format a share as a percentage with one decimal, or a dash."""
    return "—" if value is None else f"{100.0 * value:.1f}%"


def num(value: float) -> str:
    """Format a measured value with four significant digits."""
    return f"{value:.4g}"


def shape_text(shape: Sequence[int]) -> str:
    """Format a shape as ``8×32×32``."""
    return "×".join(str(s) for s in shape)


def index_list(indices: Sequence[int], limit: int = 40) -> str:
    """Format a list of indices, shortened after ``limit`` with the total."""
    if not indices:
        return "none"
    shown = ", ".join(str(i) for i in indices[:limit])
    return shown + (f" … ({len(indices)} in all)" if len(indices) > limit else "")


def verdict(prediction: Prediction) -> Verdict:
    """Say whether a prediction was right."""
    if prediction.correct is None:
        return Verdict("unlabeled", "unlabeled")
    return Verdict("correct", "correct") if prediction.correct else Verdict("wrong", "wrong")


class PageContext:
    """Everything the page builders share: the facts, the site's choices, the pictures drawn."""

    def __init__(
        self, report: Report, choices: SiteChoices, sizes: Sizes, ext: str, linker: Linker
    ) -> None:
        self.report = report
        self.choices = choices
        self.sizes = sizes
        self.ext = ext
        self.base = linker
        self.showcase = set(choices.selection.showcase)
        self.mistake_classes = {row.label for row in choices.selection.mistakes}
        self.units = {(u.depth, u.channel) for u in choices.units}
        self.labels = {image.index: image.prediction.label for image in report.images}
        self._missed = {
            (m.example.depth, m.example.channel, m.example.kind, m.example.rank): m.recomputed
            for m in choices.mismatches
        }

    def picture(self, linker: Linker, asset: str, alt: str, at_least: int = 0) -> Picture:
        """Describe an asset; small ones are shown enlarged (by a whole factor, up to 4×)."""
        width, height = self.sizes[asset]
        zoom = min(4, max(1, -(-at_least // max(width, height))))
        return Picture(linker.src(asset), width * zoom, height * zoom, alt)

    def chrome(self, linker: Linker, kind: PageKind, title: str) -> Chrome:
        """Return the frame of a page of ``kind``."""
        items: list[tuple[str, str, PageKind]] = [
            (urls.INDEX, "Overview", "index"),
            (urls.FILTERS, "Filters", "filters"),
            (urls.MISTAKES, "Correct vs wrong", "mistakes"),
            (urls.layer_page(0), "Layers", "layer"),
        ]
        showcase = self.choices.selection.showcase
        if showcase:
            items.append((urls.image_page(showcase[0]), "Images", "image"))
        return Chrome(
            kind=kind,
            path=linker.page,
            title=title,
            section_id=urls.section_id(linker.page),
            style_href=urls.relative(linker.page, urls.STYLE),
            nav=tuple(
                NavItem(linker.href(href), text, k in (kind, _NAV_PARENT.get(kind)))
                for href, text, k in items
            ),
            untrained=self.report.looks_untrained,
            untrained_found=self.report.looks_untrained and not self.report.model.untrained,
            model_name=self.report.model.name,
            point=self.choices.point,
        )

    def class_href(self, linker: Linker, label: int) -> str:
        """Link a true class to its page of mistakes, or to its per-class accuracy without one."""
        if label in self.mistake_classes:
            return linker.href(urls.class_page(label))
        return linker.href(urls.MISTAKES, urls.accuracy_anchor(label))

    def mismatch(self, depth: int, channel: int, kind: str, rank: int) -> float | None:
        """Return what pass 2 found for a unit example it could not reproduce, if it could not."""
        return self._missed.get((depth, channel, kind, rank))

    def unit_href(self, linker: Linker, depth: int, channel: int) -> str | None:
        """Link a channel to its unit page, when it has one."""
        if (depth, channel) not in self.units:
            return None
        return linker.href(urls.unit_page(depth, channel))

    def pair_href(self, linker: Linker, true: int, predicted: int) -> str:
        """Link to the images of class ``true`` taken for class ``predicted``."""
        return linker.href(urls.class_page(true), urls.taken_anchor(predicted))

    def image_label(self, index: int) -> str:
        """Name an image by its path under the image folder."""
        return self.report.image(index).path

    def channels(self, linker: Linker, index: int, depth: int) -> ChannelList:
        """List the channels that image ``index``'s grid at ``depth`` shows, in rank order."""
        return self.channel_list(linker, depth, self.choices.channels_shown[index][depth], 64)

    def channel_list(
        self, linker: Linker, depth: int, channels: Sequence[int], limit: int = 40
    ) -> ChannelList:
        """List channels of layer ``depth``, each linked to its unit page when it has one."""
        return ChannelList(
            tuple(ChannelRef(str(c), self.unit_href(linker, depth, c)) for c in channels[:limit]),
            len(channels),
        )

    def point_label(self, depth: int) -> str:
        """Name where layer ``depth``'s maps and charts were measured, such as "after BatchNorm2d and ReLU"."""
        return self.report.layers[depth].at(self.choices.point).label

    def shown_channels(self, depth: int) -> int:
        """Count the channels each grid of layer ``depth`` shows."""
        return min(self.choices.max_channels, self.report.layers[depth].conv.out_channels)

    def mean_map(
        self, linker: Linker, index: int, depth: int, at_least: int = MEAN_MAP_PX
    ) -> Picture:
        """Describe the channel-mean map of layer ``depth`` for image ``index``."""
        layer = self.report.layers[depth].conv.name
        return self.picture(
            linker,
            urls.mean_picture(index, depth, self.ext),
            f"Channel-mean map of {layer} for {self.image_label(index)}",
            at_least=at_least,
        )

    def grid(self, linker: Linker, index: int, depth: int) -> Picture:
        """Describe the grid of layer ``depth``'s strongest channels for image ``index``."""
        name = self.report.layers[depth].conv.name
        return self.picture(
            linker,
            urls.grid_picture(index, depth, self.ext),
            f"{self.shown_channels(depth)} top-ranked channels of {name} for {self.image_label(index)}",
            at_least=GRID_PX,
        )

    def input_picture(self, linker: Linker, index: int) -> Picture:
        """Describe image ``index`` as the model saw it."""
        return self.picture(
            linker,
            urls.input_picture(index, self.ext),
            f"Input image {self.image_label(index)} as the model sees it",
        )

    def card(self, linker: Linker, index: int, with_strip: bool = False) -> Card:
        """Make the card of image ``index``, linked to its page when it has one."""
        p = self.report.image(index).prediction
        label = self.image_label(index)
        link = self.image_link(linker, index)
        strip: tuple[StripTile, ...] = ()
        if with_strip:
            strip = tuple(
                self.strip_tile(
                    linker,
                    depth,
                    self.picture(
                        linker,
                        urls.strip_picture(index, depth, self.ext),
                        f"Channel-mean map of {self.report.layers[depth].conv.name} for {label}",
                        at_least=STRIP_SHOWN_PX,
                    ),
                )
                for depth in strip_depths(len(self.report.layers))
            )
        return Card(
            link=link,
            name=label,
            picture=self.input_picture(linker, index),
            predicted=self.report.class_name(p.predicted),
            confidence=pct(p.confidence),
            truth=self.report.class_name(p.label),
            verdict=verdict(p),
            strip=strip,
            cams=self.cam_views(linker, index) if with_strip else (),
            top=self.top_text(p) if with_strip else "",
            nearest=self.neighbours(linker, index) if with_strip else (),
            nearest_class=self.report.class_name(p.predicted),
        )

    def image_link(self, linker: Linker, index: int) -> Link | None:
        """Link image ``index`` by its name to its own page, when it has one."""
        if index not in self.showcase:
            return None
        return Link(linker.href(urls.image_page(index)), self.image_label(index))

    def top_text(self, prediction: Prediction) -> str:
        """Say a prediction's top classes, such as "square 43.8%, circle 35.3%"."""
        return ", ".join(f"{self.report.class_name(c)} {pct(v)}" for c, v in prediction.top)

    def strip_tile(self, linker: Linker, depth: int, picture: Picture) -> StripTile:
        """Make layer ``depth``'s tile of a depth strip from its ``picture``."""
        layer = self.report.layers[depth]
        name = layer.conv.name
        return StripTile(
            link=Link(linker.href(urls.layer_page(depth)), name),
            name_parts=tuple(name.split(".")),
            picture=picture,
            shape=shape_text(layer.at(self.choices.point).stats.output_shape),
        )

    def neighbours(self, linker: Linker, index: int) -> tuple[Neighbour, ...]:
        """Describe a mistake's nearest correct images of the class it was taken for."""
        found = []
        for other, similarity in self.report.nearest_by_index.get(index, ()):
            found.append(
                Neighbour(
                    self.input_picture(linker, other),
                    self.image_label(other),
                    self.image_link(linker, other),
                    f"{similarity:.2f}",
                )
            )
        return tuple(found)

    def cam_views(self, linker: Linker, index: int) -> tuple[CamView, ...]:
        """Describe image ``index``'s class activation maps: its predicted class's, then its true class's."""
        cams = self.report.cams
        if cams is None:
            return ()
        label = self.image_label(index)
        views = []
        for role, cam in zip(("predicted", "true"), cams.by_index.get(index, ()), strict=False):
            name = self.report.class_name(cam.label)
            alt = f"{METHOD_NAMES[cams.method]} map for {role} class {name} over {label}"
            picture = self.picture(linker, urls.cam_picture(index, cam.label, self.ext), alt)
            views.append(CamView(picture, role, name, zero=cam.max <= 0.0, peak=f"{cam.max:.3g}"))
        return tuple(views)

    def cam_check(self, index: int) -> tuple[str, bool]:
        """Say what the sanity check found for image ``index``'s map, and whether it failed."""
        cams = self.report.cams
        if cams is None or index not in cams.by_index:
            return "", False
        if cams.randomized_layer is None:
            return (
                "Sanity check not run: no module with conv weights returns the map's value "
                f"at {cams.layer.name}, so there are no weights to randomise.",
                False,
            )
        value = cams.randomized_by_index.get(index)
        layer = cams.randomized_layer
        if self.report.looks_untrained:
            return (
                "Sanity check: not meaningful here. The weights are untrained, so no map can "
                "show what the model learned; randomising one layer only swaps one random "
                "layer for another.",
                True,
            )
        if value is None:
            return (
                f"Sanity check: the predicted class's map, or the same map computed with "
                f"the conv weights of {layer} randomised, is constant, so the two cannot be "
                "compared.",
                False,
            )
        failed = value >= CAM_SANITY
        verdict = (
            f"at least {CAM_SANITY:g}: the map barely depends on what {layer} learned, so it "
            "shows the image's structure more than the model's reasons"
            if failed
            else f"below {CAM_SANITY:g}, so the map changes when what {layer} learned is "
            "taken away (the closer to 0, the more it depends on it)"
        )
        return (
            "Sanity check (Adebayo et al., 2018): the predicted class's map, computed again "
            f"with the conv weights of {layer} replaced by random ones, has a rank correlation of "
            f"{value:.2f} with the predicted class's map above: {verdict}.",
            failed,
        )

    def cam_inside(self, index: int) -> str:
        """Say how much of image ``index``'s predicted-class map lies on the object, with masks."""
        cams = self.report.cams
        if cams is None or index not in cams.by_index:
            return ""
        if cams.masks is None:
            return (
                "Without object masks nothing here says whether the map lies on the object or "
                "on the background; --masks (a folder of masks or a CSV of boxes) adds that."
            )
        if index not in cams.inside_by_index:
            return f"This image has no mask among the {cams.masks}."
        share = cams.inside_by_index[index]
        if share is None:
            return "The map is zero everywhere, so no share of it lies on the object."
        return (
            f"{share:.0%} of the predicted class's map lies inside the object mask (its "
            "energy, enlarged to the input: Score-CAM's energy-based pointing game)."
        )

    def cam_rule(self) -> str:
        """Say how the maps were computed and where: method, layer, point, resolution."""
        cams = self.report.cams
        if cams is None:
            return ""
        layer = cams.layer
        follows = f", following {layer.conv}" if layer.conv and layer.conv != layer.name else ""
        return (
            f"{METHOD_NAMES[cams.method]} at {layer.name} ({layer.point}{follows}), "
            f"{layer.height}×{layer.width}"
        )
