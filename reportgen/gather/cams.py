"""The gradient pass: class activation maps of the images that need them, one batch at a time.

Two methods, from the CAM layer's activations ``A`` ``[N, C, H, W]`` and the gradient ``G``
of one class's logit with respect to them:

- Grad-CAM (Selvaraju et al., 2017, "Grad-CAM: Visual Explanations from Deep Networks via
  Gradient-based Localization", eq. 1–2): each channel weighted by its gradient averaged
  over the positions, ``ReLU(Σ_c mean_hw(G_c) · A_c)``.
- LayerCAM (Jiang et al., 2021, "LayerCAM: Exploring Hierarchical Class Activation Maps
  for Localization", eq. 5–6): each position weighted by its own positive gradient,
  ``ReLU(Σ_c ReLU(G_c) ⊙ A_c)``.

The class score is the logit, before any softmax, as in both papers. Images are yielded
as soon as their batch has run, so memory is bounded by the batch, not the image count.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass

import torch

from ..data.batches import Loading, Prepare, batches
from ..data.files import ImageFile
from ..errors import InferenceError
from ..models.adapter import ModelAdapter

__all__ = [
    "METHODS",
    "CamSettings",
    "ImageCams",
    "energy_inside",
    "gather_cams",
    "grad_cam",
    "layer_cam",
    "rank_correlation",
]


def grad_cam(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """Return Grad-CAM ``[N, H, W]``: channels weighted by their position-averaged gradient."""
    weights = gradients.float().mean(dim=(2, 3), keepdim=True)
    return (weights * activations.float()).sum(dim=1).clamp(min=0.0)


def layer_cam(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """Return LayerCAM ``[N, H, W]``: each position weighted by its own positive gradient."""
    return (gradients.float().clamp(min=0.0) * activations.float()).sum(dim=1).clamp(min=0.0)


METHODS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "gradcam": grad_cam,
    "layercam": layer_cam,
}


def energy_inside(cam: torch.Tensor, mask: torch.Tensor) -> float | None:
    """Return the share of a map's energy inside an object mask ``[H, W]`` of the input.

    The energy-based pointing game of Score-CAM (Wang et al., 2020, section 4.2): the map,
    enlarged to the input by bilinear interpolation as it is displayed, summed inside the
    mask over its sum everywhere. None for a map that is zero everywhere.
    """
    large = torch.nn.functional.interpolate(
        cam.float()[None, None], size=tuple(mask.shape), mode="bilinear", align_corners=False
    )[0, 0].clamp(min=0.0)
    total = float(large.sum())
    if total <= 0.0:
        return None
    return float(large[mask.to(large.device)].sum()) / total


def _ranks(values: torch.Tensor) -> torch.Tensor:
    """Rank a 1-D tensor from 0, ties sharing their average rank."""
    ordered, order = values.sort(stable=True)
    _, inverse, counts = torch.unique_consecutive(ordered, return_inverse=True, return_counts=True)
    starts = counts.cumsum(0) - counts
    average = starts.double() + (counts.double() - 1.0) / 2.0
    ranks = torch.empty(len(values), dtype=torch.float64)
    ranks[order] = average[inverse]
    return ranks


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> float | None:
    """Return Spearman's rank correlation of two maps' values, or None when one is constant."""
    x, y = _ranks(a.flatten().cpu()), _ranks(b.flatten().cpu())
    x, y = x - x.mean(), y - y.mean()
    scale = float(x.norm() * y.norm())
    return None if scale == 0.0 else float((x * y).sum()) / scale


@dataclass(frozen=True)
class CamSettings:
    """How to compute the maps: the method, the layer (None: chosen), and the sanity check."""

    method: str = "gradcam"
    layer: str | None = None
    sanity: bool = True


@dataclass(frozen=True)
class ImageCams:
    """One image's model input and its class activation maps, one per class asked for."""

    index: int
    input: torch.Tensor  # [C, H, W], normalized as the model saw it
    labels: tuple[int, ...]
    maps: torch.Tensor  # [len(labels), h, w] at the CAM layer's resolution, on the host
    randomized: float | None  # the sanity check's rank correlation, for the first class


def gather_cams(
    adapter: ModelAdapter,
    files: Sequence[ImageFile],
    prepare: Prepare,
    wanted: Mapping[int, tuple[int, ...]],
    settings: CamSettings,
    batch_size: int,
    loading: Loading | None = None,
) -> Generator[ImageCams, None, None]:
    """Yield, in index order, the maps of each image in ``wanted`` for the classes it lists.

    ``wanted[i]`` names the classes whose maps image ``i`` needs (the predicted class
    first, then the true one for a mistake). Images that ask for fewer classes than others
    in their batch repeat their last one, and the repeats are dropped.

    With ``settings.sanity`` (Adebayo et al., 2018, "Sanity checks for saliency maps"), each batch
    runs once more with the weights of the layer's conv randomised, and each image's first
    map is compared with its map under those weights by rank correlation. A map that
    hardly changes shows the input's structure, not what the model learned.
    """
    compute, layer = METHODS[settings.method], settings.layer
    with adapter.gradients(layer) as model:
        for batch in batches(files, prepare, batch_size, sorted(wanted), loading):
            if batch.failed or batch.pixels is None:
                index, reason = batch.failed[0]
                raise InferenceError(f"{files[index].rel} could not be read again: {reason}")
            asked = [wanted[i] for i in batch.indices]
            slots = max(len(labels) for labels in asked)
            classes = [(*labels, *(labels[-1:] * (slots - len(labels)))) for labels in asked]
            activations, gradients = model.run(batch.pixels, classes)
            maps = torch.stack([compute(activations, g) for g in gradients], dim=1).cpu()
            checks: list[float | None] = [None] * len(asked)
            if settings.sanity:
                with adapter.randomized(layer):
                    other, (other_gradients,) = model.run(
                        batch.pixels, [labels[:1] for labels in asked]
                    )
                shuffled = compute(other, other_gradients).cpu()
                checks = [rank_correlation(maps[r, 0], shuffled[r]) for r in range(len(asked))]
            for row, (index, labels) in enumerate(zip(batch.indices, asked, strict=True)):
                yield ImageCams(
                    index, batch.pixels[row], labels, maps[row, : len(labels)], checks[row]
                )
