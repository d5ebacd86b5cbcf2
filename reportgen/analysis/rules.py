"""The rules behind every verdict the report states, and their wording.

Definitions (stated in the report word for word):

* A channel is **dead** when its output is constant over every image and position:
  ``max - min <= DEAD_RANGE * max(1, |max|, |min|)``. Such a channel carries no
  information, whatever layer follows. Statistics are of the conv's own output, before
  any batch norm or ReLU.
* A filter is **dead** when its weight L2 norm is at most ``DEAD_FILTER_RATIO`` times
  the median norm of its layer (or exactly zero).
* Two filters are **near-duplicates** when the cosine similarity of their flattened
  weights exceeds ``DUPLICATE_COSINE``. Filters with fewer than ``MIN_DUPLICATE_WEIGHTS``
  weights are not compared: short vectors are alike by chance.
"""

from __future__ import annotations

__all__ = [
    "DEAD_FILTER_RATIO",
    "DEAD_RANGE",
    "DEFINITIONS",
    "DUPLICATE_COSINE",
    "MIN_DUPLICATE_WEIGHTS",
]

DEAD_RANGE = 1e-6
DEAD_FILTER_RATIO = 1e-3
DUPLICATE_COSINE = 0.99
MIN_DUPLICATE_WEIGHTS = 4

DEFINITIONS = {
    "dead_channel": (
        "a channel whose output is constant over every image and position (range at most "
        f"{DEAD_RANGE:g} of its magnitude); it carries no information to later layers"
    ),
    "dead_filter": (
        f"a filter whose weight L2 norm is at most {DEAD_FILTER_RATIO:g} × the median norm "
        "of its layer"
    ),
    "duplicate_filters": (
        f"two filters whose flattened weights have cosine similarity above {DUPLICATE_COSINE:g}"
    ),
    "depth": "the order in which the forward pass first calls the conv layer",
    "statistics": "computed on the conv layer's own output, before any batch norm or ReLU",
}
