"""The penultimate features of every image, kept small, and the nearest correct images.

Fed by the ``features`` tap (the input of the module that computes the logits), the
reducer keeps one unit vector per image: the features, flattened, projected to at most
``DIMS`` dimensions by a fixed random Gaussian matrix (seed 0; a Johnson–Lindenstrauss
projection keeps cosine similarities approximately, to within about 0.1 at 128
dimensions) and normalized, in float16, in a tensor allocated for every image on the
features' device. Like the top classes, it is the only per-image state of pass 1: 256
bytes an image.

:func:`nearest_correct` then finds, for each wrong prediction, the correctly predicted
images of the class it was mistaken for that are nearest by cosine similarity: what the
model thought it saw.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

__all__ = ["DIMS", "FeaturesReducer", "nearest_correct"]

DIMS = 128


class FeaturesReducer:
    """Keep every image's penultimate features as a projected unit vector."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._vectors: torch.Tensor | None = None
        self._projection: torch.Tensor | None = None

    @torch.no_grad()
    def update(self, x: torch.Tensor, indices: torch.Tensor) -> None:
        """Fold in one batch of features ``[N, ...]``, stored at the images' indices."""
        flat = x.float().flatten(1)
        if self._vectors is None:
            width = int(flat.shape[1])
            if width > DIMS:
                generator = torch.Generator().manual_seed(0)
                matrix = torch.randn(width, DIMS, generator=generator) / DIMS**0.5
                self._projection = matrix.to(flat.device)
            size = min(width, DIMS)
            self._vectors = torch.zeros(
                self.capacity, size, dtype=torch.float16, device=flat.device
            )
        if self._projection is not None:
            flat = flat @ self._projection
        unit = torch.nn.functional.normalize(flat, dim=1)
        self._vectors[indices.to(unit.device)] = unit.to(torch.float16)

    def state(self) -> torch.Tensor:
        """Return the vectors on the host, ``[capacity, dims]``; rows of unseen images are zero."""
        if self._vectors is None:
            raise RuntimeError("no batch was recorded for this tap")
        return self._vectors.cpu()

    def merge(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Combine the vectors of two disjoint sets of images (each zero where unseen)."""
        return a + b

    def finish(self, state: torch.Tensor) -> torch.Tensor:
        """Return the vectors as float32."""
        return state.float()


def nearest_correct(
    vectors: torch.Tensor,
    wrong: Mapping[int, int],
    correct: Sequence[tuple[int, int]],
    k: int,
) -> dict[int, tuple[tuple[int, float], ...]]:
    """For each wrong image (index → predicted class), the ``k`` nearest correct images of
    that class (``correct``: (index, class) pairs), with their cosine similarity, nearest
    first; ties go to the lower index."""
    by_class: dict[int, list[int]] = {}
    for index, label in correct:
        by_class.setdefault(label, []).append(index)
    found: dict[int, tuple[tuple[int, float], ...]] = {}
    for index, predicted in sorted(wrong.items()):
        candidates = sorted(by_class.get(predicted, ()))
        if not candidates:
            continue
        similarity = vectors[candidates] @ vectors[index]
        order = torch.sort(similarity, descending=True, stable=True).indices[:k].tolist()
        found[index] = tuple((candidates[i], round(float(similarity[i]), 6)) for i in order)
    return found
