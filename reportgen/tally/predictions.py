"""The top classes of every image, kept on the device in tensors indexed by image."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

__all__ = ["TopClasses", "TopClassesReducer", "TopClassesState"]

TOP_K = 5


@dataclass(frozen=True)
class TopClassesState:
    """Top-k softmax probabilities and classes per image, with which images were seen."""

    num_classes: int
    probabilities: torch.Tensor  # [images, k] float32
    classes: torch.Tensor  # [images, k] int64
    seen: torch.Tensor  # [images] bool


@dataclass(frozen=True)
class TopClasses:
    """The number of classes, and each image's top classes with their probabilities."""

    num_classes: int
    by_image: Mapping[int, tuple[tuple[int, float], ...]]  # best first, up to five


class TopClassesReducer:
    """Keep the top five softmax classes of every image (fed by the logits tap).

    Memory is the only per-image state of pass 1: five probabilities and five class
    indices an image, allocated for ``capacity`` images on the logits' device.
    """

    def __init__(self, capacity: int, k: int = TOP_K) -> None:
        self.capacity = capacity
        self.k = k
        self._state: TopClassesState | None = None

    @torch.no_grad()
    def update(self, x: torch.Tensor, indices: torch.Tensor) -> None:
        """Fold in one batch of logits ``[N, classes]``."""
        classes = int(x.shape[1])
        if self._state is None:
            k = min(self.k, classes)
            self._state = TopClassesState(
                num_classes=classes,
                probabilities=torch.zeros(self.capacity, k, device=x.device),
                classes=torch.zeros(self.capacity, k, dtype=torch.long, device=x.device),
                seen=torch.zeros(self.capacity, dtype=torch.bool, device=x.device),
            )
        state = self._state
        probabilities = torch.softmax(x.float(), dim=1)
        values, top = probabilities.topk(state.probabilities.shape[1], dim=1)
        state.probabilities[indices] = values
        state.classes[indices] = top
        state.seen[indices] = True

    def state(self) -> TopClassesState:
        """Return the tables on the host (empty when no batch was seen)."""
        if self._state is None:
            return TopClassesState(
                0,
                torch.zeros(self.capacity, 0),
                torch.zeros(self.capacity, 0, dtype=torch.long),
                torch.zeros(self.capacity, dtype=torch.bool),
            )
        s = self._state
        return TopClassesState(s.num_classes, s.probabilities.cpu(), s.classes.cpu(), s.seen.cpu())

    def merge(self, a: TopClassesState, b: TopClassesState) -> TopClassesState:
        """Combine the tables of two disjoint sets of images."""
        if not a.seen.any():
            return b
        if not b.seen.any():
            return a
        return TopClassesState(
            num_classes=max(a.num_classes, b.num_classes),
            probabilities=torch.where(b.seen[:, None], b.probabilities, a.probabilities),
            classes=torch.where(b.seen[:, None], b.classes, a.classes),
            seen=a.seen | b.seen,
        )

    def finish(self, state: TopClassesState) -> TopClasses:
        """List each seen image's (class, probability) pairs, best first."""
        seen = torch.nonzero(state.seen).flatten().tolist()
        classes, probabilities = state.classes.tolist(), state.probabilities.tolist()
        return TopClasses(
            num_classes=state.num_classes,
            by_image={
                i: tuple(
                    (int(c), float(p)) for c, p in zip(classes[i], probabilities[i], strict=True)
                )
                for i in seen
            },
        )
