"""Several processes under torchrun: each runs pass 1 over its shard; rank 0 does the rest.

``torchrun --nproc-per-node N -m reportgen build ...`` starts N copies of the command with
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` set (and the rendezvous address; several nodes
join through torchrun's usual rendezvous). Every process reads the same sorted file list
and takes one contiguous range of whole batches of it. Pass 1's reducer states (host tensors) are gathered
on rank 0 and merged in rank order, which gives the states of the whole set: counts,
maxima, minima and top-k merge exactly, float64 sums up to their last bits. Rank 0 then
finishes and selects; the gradient pass and the second passes (the pages' and the unit
pages') are shared out batch by batch by :func:`spread`, each job announced by rank 0;
rank 0 draws, writes and publishes the site.

A process that fails sends its failure instead of its states, so no process waits for
one that is gone; rank 0 then fails the build with that process's message and exit
status before it writes anything, and the previous site stays where it was.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar

import torch
import torch.distributed as dist

from .errors import FeatreportError

__all__ = [
    "Failure",
    "Group",
    "RankFailed",
    "failure",
    "from_environment",
    "secondary",
    "spread",
]

T = TypeVar("T")
B = TypeVar("B")
R = TypeVar("R")

# Rank 0 gathers once, after every process's pass 1; a slow shard must not time out.
TIMEOUT = datetime.timedelta(hours=6)


class RankFailed(FeatreportError):
    """Another process of a torchrun build failed; its message and exit status carry over."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click declares it per class


@dataclass(frozen=True)
class Failure:
    """What a process sends instead of its states when it failed."""

    rank: int
    message: str
    exit_code: int


@dataclass
class Group:
    """This process's place among the torchrun processes of one build."""

    rank: int
    size: int
    local_rank: int

    def shard(self, count: int, batch_size: int) -> range:
        """Return this process's contiguous range of ``count`` sorted files, in whole batches.

        Cut at batch boundaries, every batch holds the images it holds in one process: a
        convolution's float32 result may depend on the batch it runs in.
        """
        batches = -(-count // batch_size)
        first, last = (r * batches // self.size for r in (self.rank, self.rank + 1))
        return range(min(first * batch_size, count), min(last * batch_size, count))

    def gather(self, item: T | Failure) -> list[T] | None:
        """Send ``item`` to rank 0; there, return every process's item in rank order.

        Raises :class:`RankFailed` on rank 0 when any process sent a :class:`Failure`.
        """
        items: list[T | Failure] | None = [item] * self.size if self.rank == 0 else None
        dist.gather_object(item, items, dst=0)
        if items is None:
            return None
        for got in items:
            if isinstance(got, Failure):
                raise RankFailed(
                    f"process {got.rank} of {self.size} failed: {got.message}", got.exit_code
                )
        return items  # type: ignore[return-value]

    def broadcast(self, item: T) -> T:
        """Send ``item`` from rank 0 to every process; return what rank 0 sent (elsewhere,
        ``item`` only gives the type)."""
        box = [item]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def __enter__(self) -> Group:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        dist.destroy_process_group()


def from_environment(device: str) -> Group | None:
    """Join the torchrun group this process was started in, or return None when alone.

    NCCL where the build runs on CUDA, gloo otherwise; each process on CUDA takes the GPU
    of its local rank.
    """
    size = int(os.environ.get("WORLD_SIZE", "1") or "1")
    if size <= 1:
        return None
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device in ("auto", "cuda") and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT)
    return Group(rank, size, local)


def failure(rank: int, error: BaseException) -> Failure:
    """Describe an exception for rank 0: the message a user can act on, and its status."""
    if isinstance(error, FeatreportError):
        return Failure(rank, error.format_message(), error.exit_code)
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return Failure(rank, f"{type(error).__name__}: {first}" if first else type(error).__name__, 1)


def spread(group: Group, batches: Sequence[B], run: Callable[[B], list[R]]) -> Iterator[R]:
    """Run ``batches`` across the processes, batch ``i`` on rank ``i % size``; on rank 0,
    yield every batch's results in batch order, one round of ``size`` batches at a time.

    Every process calls it with the same batches; on the others it yields nothing. Every
    process takes part in every round, even after a failure (it then sends the failure
    again), so rank 0 can decide afterwards whether a failure ends the build (it raises
    its own error as itself, another process's as :class:`RankFailed`) or only a part of
    it, and the processes still agree on what comes next.
    """
    own: BaseException | None = None
    sent_failure: Failure | None = None
    first: Failure | None = None
    for start in range(0, len(batches), group.size):
        mine = start + group.rank
        done: list[R] = []
        if sent_failure is None and mine < len(batches):
            try:
                done = run(batches[mine])
            except Exception as error:
                own, sent_failure = error, failure(group.rank, error)
        # Rank 0 keeps its own results: sending them to itself would pickle them twice.
        sent: list[R] | Failure = sent_failure or ([] if group.rank == 0 else done)
        items: list[list[R] | Failure] | None = [sent] * group.size if group.rank == 0 else None
        dist.gather_object(sent, items, dst=0)
        if items is None:
            continue
        first = first or next((i for i in items if isinstance(i, Failure)), None)
        if first is None:
            yield from done
            for part in items[1:]:
                yield from part  # type: ignore[misc]
    if group.rank == 0 and own is not None:
        raise own
    if first is not None:
        raise RankFailed(
            f"process {first.rank} of {group.size} failed: {first.message}", first.exit_code
        )


def secondary() -> bool:
    """Say whether this process is a torchrun process other than rank 0 (it writes nothing)."""
    return int(os.environ.get("WORLD_SIZE", "1") or "1") > 1 and os.environ.get("RANK") != "0"
