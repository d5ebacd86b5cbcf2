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

from ..data.batches import Prepare, batches
from ..data.files import ImageFile
from ..errors import InferenceError
from ..models.adapter import ModelAdapter

__all__ = ["METHODS", "ImageCams", "gather_cams", "grad_cam", "layer_cam"]


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


@dataclass(frozen=True)
class ImageCams:
    """One image's model input and its class activation maps, one per class asked for."""

    index: int
    input: torch.Tensor  # [C, H, W], normalized as the model saw it
    labels: tuple[int, ...]
    maps: torch.Tensor  # [len(labels), h, w] at the CAM layer's resolution, on the host


def gather_cams(
    adapter: ModelAdapter,
    files: Sequence[ImageFile],
    prepare: Prepare,
    wanted: Mapping[int, tuple[int, ...]],
    method: str,
    layer: str | None,
    batch_size: int,
) -> Generator[ImageCams, None, None]:
    """Yield, in index order, the maps of each image in ``wanted`` for the classes it lists.

    ``wanted[i]`` names the classes whose maps image ``i`` needs (the predicted class
    first, then the true one for a mistake). Images that ask for fewer classes than others
    in their batch repeat their last one, and the repeats are dropped.
    """
    compute = METHODS[method]
    with adapter.gradients(layer) as model:
        for batch in batches(files, prepare, batch_size, sorted(wanted)):
            if batch.failed or batch.pixels is None:
                index, reason = batch.failed[0]
                raise InferenceError(f"{files[index].rel} could not be read again: {reason}")
            asked = [wanted[i] for i in batch.indices]
            slots = max(len(labels) for labels in asked)
            classes = [(*labels, *(labels[-1:] * (slots - len(labels)))) for labels in asked]
            activations, gradients = model.run(batch.pixels, classes)
            maps = torch.stack([compute(activations, g) for g in gradients], dim=1).cpu()
            for row, (index, labels) in enumerate(zip(batch.indices, asked, strict=True)):
                yield ImageCams(index, batch.pixels[row], labels, maps[row, : len(labels)])
