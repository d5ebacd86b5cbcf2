"""Pass 1 as a tally: pluggable reducers, each fed one tap's tensors batch by batch.

A :class:`Reducer` is four methods:

* ``update(x, indices)`` takes a batch of its tap's output (``[N, ...]``, on the model's
  device) and the global indices of the batch's images (``[N]``, same device). It keeps
  its running state on that device and never moves anything to the host, so a pass has
  no per-batch host synchronisation;
* ``state()`` returns that running state as plain host tensors (one transfer, at the end);
* ``merge(a, b)`` combines the states of two disjoint sets of images (two shards, two
  processes) into the state of their union. Merged state never depends on how the images
  were batched or split, up to float64 rounding;
* ``finish(state)`` turns a state into a frozen, torch-free result record.

A :class:`Tally` holds reducers by tap and is the sink a recording calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

import torch

from ..models.adapter import Tap

__all__ = ["Reducer", "Tally"]

S = TypeVar("S")
R_co = TypeVar("R_co", covariant=True)
AnyReducer = TypeVar("AnyReducer", bound="Reducer[Any, Any]")


class Reducer(Protocol[S, R_co]):
    """Reduce one tap's tensors, batch by batch, to a result independent of the batching."""

    def update(self, x: torch.Tensor, indices: torch.Tensor) -> None:
        """Fold in one batch of the tap's output and its images' global indices."""
        ...

    def state(self) -> S:
        """Return the running state as plain host tensors."""
        ...

    def merge(self, a: S, b: S) -> S:
        """Combine the states of two disjoint sets of images."""
        ...

    def finish(self, state: S) -> R_co:
        """Turn a state into a frozen result."""
        ...


class Tally:
    """Feed every tap's tensors to the reducers registered for it."""

    def __init__(self) -> None:
        self._reducers: dict[Tap, list[Reducer[Any, Any]]] = {}
        self._indices: torch.Tensor | None = None

    def add(self, tap: Tap, reducer: AnyReducer) -> AnyReducer:
        """Register ``reducer`` for ``tap`` and return it, so the caller keeps a typed handle."""
        self._reducers.setdefault(tap, []).append(reducer)
        return reducer

    @property
    def taps(self) -> tuple[Tap, ...]:
        """Return every tap some reducer listens to, sorted."""
        return tuple(sorted(self._reducers))

    def start_batch(self, indices: Sequence[int], device: torch.device) -> None:
        """Say which images the next forward pass carries (their global indices)."""
        self._indices = torch.tensor(indices, dtype=torch.long).to(device, non_blocking=True)

    def __call__(self, tap: Tap, x: torch.Tensor) -> None:
        """Hand one tap's tensor to its reducers (the recording's sink)."""
        if self._indices is None:
            raise RuntimeError("Tally.start_batch must be called before each forward pass")
        for reducer in self._reducers.get(tap, ()):
            reducer.update(x, self._indices)
