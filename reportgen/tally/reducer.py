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

A :class:`Tally` holds reducers by tap and is the sink a recording calls. Its
:meth:`Tally.states` are every reducer's state in the order they were added (``None``
where the reducer's tap saw no batch), and :meth:`Tally.merge` combines two processes'
states reducer by reducer, so shards of one image set merge into the whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

import torch

from ..models.adapter import Tap

__all__ = ["Reducer", "Results", "Tally"]

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
        self._added: list[tuple[Tap, Reducer[Any, Any]]] = []
        self._fed: set[Tap] = set()
        self._indices: torch.Tensor | None = None

    def add(self, tap: Tap, reducer: AnyReducer) -> AnyReducer:
        """Register ``reducer`` for ``tap`` and return it, so the caller keeps a typed handle."""
        self._reducers.setdefault(tap, []).append(reducer)
        self._added.append((tap, reducer))
        return reducer

    @property
    def layout(self) -> tuple[str, ...]:
        """Name every reducer in the order added: two tallies merge only if these agree."""
        return tuple(f"{tap.layer}:{tap.point}:{type(r).__name__}" for tap, r in self._added)

    def states(self) -> tuple[Any, ...]:
        """Return every reducer's state on the host, in the order added; None where unfed."""
        return tuple(r.state() if tap in self._fed else None for tap, r in self._added)

    def merge(self, a: Sequence[Any], b: Sequence[Any]) -> tuple[Any, ...]:
        """Combine two image sets' :meth:`states`, reducer by reducer."""
        return tuple(
            y if x is None else x if y is None else r.merge(x, y)
            for (_, r), x, y in zip(self._added, a, b, strict=True)
        )

    def finish(self, states: Sequence[Any]) -> Results:
        """Finish every fed reducer from ``states`` (as :meth:`states` or :meth:`merge` give)."""
        return Results(
            {
                id(r): r.finish(state)
                for (_, r), state in zip(self._added, states, strict=True)
                if state is not None
            }
        )

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
        self._fed.add(tap)
        for reducer in self._reducers.get(tap, ()):
            reducer.update(x, self._indices)


class Results:
    """Finished results of a tally's reducers, looked up by the reducer's handle."""

    def __init__(self, by_reducer: dict[int, Any]) -> None:
        self._by_reducer = by_reducer

    def __getitem__(self, reducer: Reducer[Any, R_co]) -> R_co:
        """Return ``reducer``'s result; KeyError when its tap saw no batch."""
        return self._by_reducer[id(reducer)]  # type: ignore[no-any-return]

    def __contains__(self, reducer: object) -> bool:
        """Say whether ``reducer`` has a result."""
        return id(reducer) in self._by_reducer
