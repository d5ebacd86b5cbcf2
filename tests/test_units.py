"""Unit tests of the pure pieces: label matching, statistics, selection, pictures, layout."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

from reportgen.analysis.accuracy import accuracy
from reportgen.analysis.filters import filter_stats
from reportgen.analysis.selection import select
from reportgen.config import BuildConfig
from reportgen.data.decode import load_image
from reportgen.data.files import ImageFile, collect_images
from reportgen.data.labels import LabelMatcher, read_class_names, resolve_labels
from reportgen.drawing import visuals
from reportgen.errors import LabelsError
from reportgen.models.torch_adapter import output_filters
from reportgen.pipeline import build
from reportgen.report.facts import ImageRecord, Prediction
from reportgen.site import urls

# ------------------------------------------------------------------ labels


def test_label_matching_exact_then_loose_then_wordnet() -> None:
    names = ["tench", "great white shark", "Tabby_Cat"]
    matcher = LabelMatcher(names, imagenet=True)
    assert matcher.match("tench") == 0
    assert matcher.match("great_white_shark") == 1
    assert matcher.match("GREAT WHITE  SHARK") == 1
    assert matcher.match("tabby cat") == 2
    assert matcher.match("n01440764") == 0  # ImageNet's first synset is tench
    assert matcher.match("n01443537") == 1  # goldfish in ImageNet, index 1
    assert matcher.match("zebra") is None
    assert LabelMatcher(names, imagenet=False).match("n01440764") is None


def test_resolve_labels_from_folders_and_csv(tmp_path: Path) -> None:
    files = [
        ImageFile(tmp_path / "cat" / "1.png", "cat/1.png", "cat"),
        ImageFile(tmp_path / "cat" / "2.png", "cat/2.png", "cat"),
        ImageFile(tmp_path / "Dog" / "3.png", "Dog/3.png", "Dog"),
        ImageFile(tmp_path / "4.png", "4.png", None),
        ImageFile(tmp_path / "zebra" / "5.png", "zebra/5.png", "zebra"),
    ]
    result = resolve_labels(files, ["cat", "dog"], False, None)
    assert result.labels == (0, 0, 1, None, None)
    assert result.source == "folders"
    assert len(result.warnings) == 1 and "'zebra' (1 image)" in result.warnings[0]

    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\n./4.png,dog\ncat/1.png,dog\n")
    result = resolve_labels(files, ["cat", "dog"], False, csv)
    assert result.labels == (1, None, None, 1, None)
    assert result.source == "csv"

    bad = tmp_path / "bad.csv"
    bad.write_text("file,class\nx,y\n")
    with pytest.raises(LabelsError, match="path,label"):
        resolve_labels(files, ["cat"], False, bad)


def test_class_names_from_text_and_json(tmp_path: Path) -> None:
    (tmp_path / "c.txt").write_text("\ufeffa\n\nb c\n")
    assert read_class_names(tmp_path / "c.txt") == ("a", "b c")
    (tmp_path / "c.json").write_text('["x", "y"]')
    assert read_class_names(tmp_path / "c.json") == ("x", "y")
    (tmp_path / "bad.json").write_text('{"x": 1}')
    with pytest.raises(LabelsError, match="JSON list"):
        read_class_names(tmp_path / "bad.json")


# ------------------------------------------------------------------ collect


def test_collect_is_sorted_recursive_and_reports_other_files(tmp_path: Path) -> None:
    for rel in ("b/2.png", "a/10.png", "a/9.jpg", "top.webp"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(tmp_path / rel)
    (tmp_path / "a" / "notes.md").write_text("x")
    files, skipped = collect_images(tmp_path)
    assert [f.rel for f in files] == ["a/10.png", "a/9.jpg", "b/2.png", "top.webp"]
    assert [f.folder_label for f in files] == ["a", "a", "b", None]
    assert [s.rel for s in skipped] == ["a/notes.md"]


def test_load_image_applies_exif_orientation_and_converts(tmp_path: Path) -> None:
    image = Image.new("RGB", (20, 10), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    image.save(tmp_path / "rot.jpg", exif=exif)
    loaded = load_image(tmp_path / "rot.jpg", "RGB")
    assert isinstance(loaded, Image.Image) and loaded.size == (10, 20)
    gray = load_image(tmp_path / "rot.jpg", "L")
    assert isinstance(gray, Image.Image) and gray.mode == "L"
    Image.new("I;16", (4, 4), 40000).save(tmp_path / "deep.png")
    deep = load_image(tmp_path / "deep.png", "RGB")
    assert isinstance(deep, Image.Image) and deep.getpixel((0, 0))[0] == round(40000 / 65535 * 255)


# ------------------------------------------------------------------ statistics


def test_filter_stats_finds_dead_and_duplicate_filters() -> None:
    conv = nn.Conv2d(3, 6, 3)
    with torch.no_grad():
        conv.weight[1] = 0.0
        conv.weight[4] = conv.weight[2] * 2.5  # same direction, other scale
    stats = filter_stats(conv.weight)
    assert stats.dead == (1,)
    assert [(a, b) for a, b, _ in stats.duplicates] == [(2, 4)]
    assert stats.norms[4] == pytest.approx(2.5 * stats.norms[2], rel=1e-5)


def test_transposed_and_depthwise_filters_are_per_output_channel() -> None:
    up = nn.ConvTranspose2d(4, 6, 3, groups=2)
    assert up.weight.shape == (4, 3, 3, 3)
    filters = output_filters(up)
    assert filters.shape == (6, 2, 3, 3)
    # output channel 4 is in group 1: input channels 2-3, within-group output 1
    assert torch.equal(filters[4, 1], up.weight[3, 1])
    depthwise = nn.Conv2d(8, 8, 1, groups=8)
    stats = filter_stats(output_filters(depthwise))
    assert not stats.compared and stats.duplicates == ()


def test_filters_are_compared_within_their_group_only() -> None:
    depthwise = nn.Conv2d(8, 8, 3, groups=8)
    with torch.no_grad():
        depthwise.weight[5] = depthwise.weight[2]  # equal kernels on different input channels
    stats = filter_stats(output_filters(depthwise), groups=8)
    assert not stats.compared and stats.duplicates == ()
    grouped = nn.Conv2d(8, 8, 3, groups=2)  # filters 0-3 read inputs 0-3, filters 4-7 inputs 4-7
    with torch.no_grad():
        grouped.weight[5] = grouped.weight[1]  # same weights, other inputs: not redundant
        grouped.weight[6] = grouped.weight[4]  # same weights, same inputs: a copy
    stats = filter_stats(output_filters(grouped), groups=2)
    assert stats.compared and [(a, b) for a, b, _ in stats.duplicates] == [(4, 6)]


def test_smoothness_tells_edges_from_noise() -> None:
    from reportgen.analysis.filters import smoothness

    torch.manual_seed(0)
    noise = torch.randn(16, 3, 5, 5)
    ramp = torch.arange(5.0).view(1, 1, 1, 5).expand(16, 3, 5, 5)
    assert abs(smoothness(noise)) < 0.1
    assert smoothness(ramp) > 0.4
    assert smoothness(torch.randn(4, 3, 1, 1)) is None


def test_accuracy_and_selection_cover_right_and_wrong() -> None:
    preds = [
        Prediction(((0, 0.9), (1, 0.1)), 0),
        Prediction(((1, 0.8), (0, 0.2)), 0),
        Prediction(((1, 0.6), (0, 0.4)), 1),
        Prediction(((0, 0.7), (1, 0.3)), 1),
        Prediction(((0, 0.95), (1, 0.05)), 1),
        Prediction(((1, 0.5), (0, 0.5)), None),
    ]
    acc = accuracy(preds)
    assert acc.labeled == 5
    assert acc.top1 == pytest.approx(2 / 5)
    assert acc.top5 == 1.0
    assert [(c.index, c.images, c.top1) for c in acc.per_class] == [
        (0, 2, 0.5),
        (1, 3, pytest.approx(1 / 3)),
    ]
    assert (1, 0, 2) in acc.confusion
    assert acc.wrong == 3 and [c.wrong for c in acc.per_class] == [1, 2]
    assert acc.by_involvement == (0, 1)  # class 0: 2 true + 4 predicted; class 1: 3 + 1
    # Image indices are file positions, with gaps where files were skipped.
    images = [ImageRecord(2 * i, f"{i}.png", p, (0.0,) * 7) for i, p in enumerate(preds)]
    chosen = select(images, 4)
    assert chosen.showcase[0] == 0  # the most confident correct image represents the set
    assert {i for i in chosen.showcase if preds[i // 2].correct is False} >= {2, 8}
    rows = {r.label: r for r in chosen.mistakes}
    assert rows[1].wrong == (8, 6)  # most confident mistake first
    assert rows[1].correct == (4,)
    assert select(images, 0).showcase == ()


def test_drawn_mistakes_take_each_confusion_in_turn() -> None:
    # Class 0 is taken for class 1 five times and for class 2 twice; eight are drawn at most.
    taken = [1, 1, 2, 1, 1, 2, 1]
    preds = [Prediction(((q, 0.9 - 0.1 * i), (0, 0.05)), 0) for i, q in enumerate(taken)]
    preds += [Prediction(((0, 0.8), (1, 0.1)), 0)] * 3
    images = [ImageRecord(i, f"{i}.png", p, (0.0,) * 7) for i, p in enumerate(preds)]
    (row,) = select(images, 0).mistakes
    assert row.wrong == (0, 1, 2, 3, 4, 5, 6)
    # The most frequent confusion first, then the other, in turn, each most confident first.
    assert row.drawn == (0, 2, 1, 5, 3, 4, 6)
    assert row.summary == (0, 2, 1, 5)
    assert row.with_strips == (*row.drawn, 7, 8)
    many = [Prediction(((1, 0.5), (0, 0.4)), 0)] * 20
    (crowded,) = select(
        [ImageRecord(i, "x", p, (0.0,) * 7) for i, p in enumerate(many)], 0
    ).mistakes
    assert len(crowded.wrong) == 20 and len(crowded.drawn) == 8


class _Sink:
    ext = "png"

    def __init__(self) -> None:
        self.added: dict[str, Image.Image] = {}

    def add(self, path: str, image: Image.Image) -> None:
        self.added[path] = image


def _strip_tiles(shared: bool) -> dict[str, Image.Image]:
    from reportgen.gather.maps import ImageMaps, LayerMaps
    from reportgen.site.pictures import Strips

    sink = _Sink()
    strips = Strips(sink, [(3, 5)], layer_count=2, shared=shared)  # type: ignore[arg-type]
    ramp = torch.arange(16.0).view(4, 4)
    for index, gain in ((5, 1.0), (3, 4.0)):  # the strong image comes last
        layers = tuple(LayerMaps(ramp * gain, (), None) for _ in range(2))
        strips.add(ImageMaps(index, torch.zeros(3, 4, 4), layers))
        if shared and index == 5:
            assert sink.added == {}  # held until the class's last image has come
    strips.add(ImageMaps(9, torch.zeros(3, 4, 4), ()))  # not on the mistakes pages: no strip
    return sink.added


def test_depth_strips_share_one_scale_per_layer_within_a_class() -> None:
    lut = visuals.colormap_lut(visuals.FEATURE_CMAP, torch.device("cpu"))
    top = tuple(lut[255].tolist())
    for shared in (True, False):
        tiles = _strip_tiles(shared)
        assert sorted(tiles) == [urls.strip_picture(i, d, "png") for i in (3, 5) for d in (0, 1)]
        weak = tiles[urls.strip_picture(5, 1, "png")]
        strong = tiles[urls.strip_picture(3, 1, "png")]
        assert strong.getpixel((31, 31)) == top
        # Shared: the weak image's peak is a quarter of the way up the scale, not its top.
        assert (weak.getpixel((31, 31)) == top) is not shared


# ------------------------------------------------------------------ pictures and layout


def test_per_map_normalization_and_grid_shape() -> None:
    maps = torch.stack(
        [torch.arange(16.0).view(4, 4), torch.full((4, 4), 7.0), -torch.arange(16.0).view(4, 4)]
    )
    unit = visuals.unit_per_map(maps)
    assert float(unit[0].min()) == 0.0 and float(unit[0].max()) == 1.0
    assert float(unit[1].abs().max()) == 0.0  # a constant map is drawn flat, not divided by zero
    assert float(unit[2, 0, 0]) == 1.0
    image = visuals.feature_grid(maps)
    factor = visuals.upscale_factor(4, 4, visuals.TILE_TARGET)
    cell = 4 * factor + 2  # tile plus a 1-px frame each side
    assert image.size == (2 * cell, 2 * cell)  # 3 maps on a 2×2 grid
    lut = visuals.colormap_lut(visuals.FEATURE_CMAP, torch.device("cpu"))
    assert image.getpixel((1, 1)) == tuple(lut[0].tolist())  # lowest value of map 0
    assert image.getpixel((0, 0)) == visuals.BACKGROUND


def test_filter_grids_mark_dead_and_duplicates() -> None:
    weights = torch.randn(4, 3, 3, 3)
    image = visuals.filter_grid_rgb(weights, dead=[1], duplicate=[2])
    cell = image.size[0] // 2
    assert image.getpixel((cell, 0)) == visuals.DEAD_COLOR
    assert image.getpixel((0, cell)) == visuals.DUPLICATE_COLOR
    gray = visuals.filter_grid_gray(torch.zeros(2, 5, 3, 3))
    factor = visuals.upscale_factor(3, 3, visuals.FILTER_TARGET)
    assert gray.getpixel((2 + factor, 2 + factor)) in ((127, 127, 127), (128, 128, 128))


def test_encoding_is_deterministic() -> None:
    image = visuals.feature_grid(torch.randn(5, 7, 7))
    for fmt in ("webp", "png"):
        first, second = visuals.encode(image, fmt), visuals.encode(image.copy(), fmt)
        assert first == second
        assert Image.open(io.BytesIO(first)).size == image.size


def test_generated_names_never_come_from_user_names() -> None:
    assert urls.image_page(0) == "images/image-0001.html"
    assert (
        urls.relative("images/image-0001.html", "layers/layer-002.html")
        == "../layers/layer-002.html"
    )
    assert urls.relative("index.html", "img/a.webp") == "img/a.webp"
    linker = urls.Linker("layers/layer-001.html", single_file=True)
    assert linker.href("images/image-0003.html", "layer-001") == "#p-images-image-0003--layer-001"


@pytest.mark.parametrize("ext", ["jpg", "png", "webp", "bmp", "tiff"])
def test_every_listed_format_decodes(tmp_path: Path, ext: str) -> None:
    Image.new("RGB", (12, 9), (10, 200, 30)).save(tmp_path / f"x.{ext}")
    files, skipped = collect_images(tmp_path)
    assert [f.rel for f in files] == [f"x.{ext}"] and not skipped
    loaded = load_image(files[0].path, "RGB")
    assert isinstance(loaded, Image.Image) and loaded.size == (12, 9)
    assert abs(loaded.getpixel((6, 4))[1] - 200) < 8


def test_gif_uses_its_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:], duration=50)
    loaded = load_image(tmp_path / "a.gif", "RGB")
    assert isinstance(loaded, Image.Image)
    red, _, blue = loaded.getpixel((4, 4))
    assert red > 200 and blue < 50


def test_only_finished_8bit_pixels_move_to_the_host(
    tiny_config: BuildConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The drawing path is device-agnostic: on CUDA, maps are normalized, coloured and tiled
    on the GPU. On the CPU the same calls run, so record what .cpu() and .numpy() are given
    while maps are captured and pictures drawn."""
    import reportgen.pipeline as pipeline

    moved: list[torch.dtype] = []
    drawing = [False]
    real_cpu, real_numpy = torch.Tensor.cpu, torch.Tensor.numpy

    def cpu(self: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        if drawing[0]:
            moved.append(self.dtype)
        return real_cpu(self, *args, **kwargs)

    def numpy(self: torch.Tensor, *args: object, **kwargs: object) -> object:
        if drawing[0]:
            moved.append(self.dtype)
        return real_numpy(self, *args, **kwargs)

    def recording(draw: object) -> object:
        def wrapped(*args: object) -> object:
            drawing[0] = True
            try:
                return draw(*args)  # type: ignore[operator]
            finally:
                drawing[0] = False

        return wrapped

    def recording_stream(make: object) -> object:
        def wrapped(*args: object) -> object:
            stream = make(*args)  # type: ignore[operator]

            def watched() -> object:
                while True:
                    drawing[0] = True
                    try:
                        item = next(stream, None)
                    finally:
                        drawing[0] = False
                    if item is None:
                        return
                    yield item

            return watched()

        return wrapped

    monkeypatch.setattr(torch.Tensor, "cpu", cpu)
    monkeypatch.setattr(torch.Tensor, "numpy", numpy)
    monkeypatch.setattr(pipeline, "gather_maps", recording_stream(pipeline.gather_maps))
    monkeypatch.setattr(pipeline, "draw_image", recording(pipeline.draw_image))
    monkeypatch.setattr(pipeline, "draw_layer", recording(pipeline.draw_layer))
    build(tiny_config)
    assert moved, "nothing was drawn?"
    assert set(moved) == {torch.uint8}


def test_logits_are_found_in_nested_outputs_and_the_place_is_named() -> None:
    from reportgen.models.logits import pick_logits

    logits = torch.zeros(2, 3)
    found, where = pick_logits(({"logits": logits, "aux": 1}, "extra"))
    assert found is logits
    assert where == "the 'logits' entry of dict, in item 0 of the returned tuple"
    found, where = pick_logits(((logits, None), None))
    assert found is logits and where == "item 0 of tuple, in item 0 of the returned tuple"


def test_relative_ranking_shows_what_is_unusual_on_an_image_not_a_fixed_offset(
    tmp_path: Path,
) -> None:
    from handmade import layer, moments

    from reportgen.analysis.ranking import ranking
    from reportgen.data.files import collect_images
    from reportgen.gather.maps import gather_maps
    from reportgen.models.preprocess import Preprocess
    from reportgen.models.torch_adapter import TorchAdapter

    class Offset(nn.Module):
        """Channel 0 is a constant 10; channel 1 follows the image's brightness."""

        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 1)
            with torch.no_grad():
                self.conv.weight.zero_()
                self.conv.weight[1] = 1.0 / 3
                self.conv.bias.copy_(torch.tensor([10.0, 0.0]))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x).mean(dim=(2, 3))

    for name, grey in (("bright", 230), ("dark", 20)):
        Image.new("RGB", (8, 8), (grey,) * 3).save(tmp_path / f"{name}.png")
    files, _ = collect_images(tmp_path)
    prepare = Preprocess(8, 8, (0.5,) * 3, (0.25,) * 3, "bilinear", 3, "test")
    adapter = TorchAdapter(Offset(), torch.device("cpu"), input_shape=(3, 8, 8))
    record = layer(
        "conv",
        conv_moments=moments([10.0, 0.0], spreads=[0.0, 1.0], low=[10.0, -2.0], high=[10.0, 2.0]),
    )

    def order(rule: str) -> list[tuple[int, ...]]:
        stream = gather_maps(
            adapter, files, prepare, [ranking(record, "conv", rule)], {0: True, 1: True}, 2, 2
        )
        return [maps.layers[0].channels for maps in stream]

    assert [f.rel for f in files] == ["bright.png", "dark.png"]
    assert order("mean") == [(0, 1), (0, 1)]  # the offset wins everywhere
    assert order("relative") == [(1, 0), (0, 1)]  # brighter than usual, then darker
