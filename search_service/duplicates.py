"""Near-duplicate photos: candidates whose perceptual hashes differ in a few bits collapse into one match."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Protocol, TypeVar

from search_service.errors import InvalidArgument

# The most bits two perceptual hashes may differ in for two photos to be copies, unless a query says.
# Measured by bench.duplicates on 200 generated photos: every copy resized to 25-50% or re-encoded (JPEG q=60
# to 95, PNG) was within 2 bits (92% within 0), unrelated photos 16 or more apart. 2 is the least that keeps
# every copy; each bit more merges more distinct look-alikes (a scene with an object added over 2% of it:
# 34% within 2 bits, 49% within 4), see docs/benchmarks.md. Distances are even (bits flip in pairs around
# the median), so 3 acts as 2.
DEFAULT_MAX_DISTANCE = 2
MAX_DISTANCE = 12  # beyond it unrelated photos start to merge, and finding close hashes gets slow


class Hashed(Protocol):
    @property
    def collection(self) -> object: ...
    @property
    def phash(self) -> int | None: ...


H = TypeVar("H", bound=Hashed)


def check_max_distance(max_distance: int | None) -> int:
    """The distance a query asked for, or the default; INVALID_ARGUMENT outside 0 to MAX_DISTANCE."""
    if max_distance is None:
        return DEFAULT_MAX_DISTANCE
    if not 0 <= max_distance <= MAX_DISTANCE:
        raise InvalidArgument(
            f"duplicates.max_distance={max_distance}; it must be 0 to {MAX_DISTANCE} bits "
            f"(unset means {DEFAULT_MAX_DISTANCE})"
        )
    return max_distance


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def _blocks(max_distance: int) -> list[tuple[int, int]]:
    """(shift, mask) of max_distance + 1 disjoint bit ranges covering 64 bits: two hashes within
    max_distance bits agree on at least one range, so only leaders sharing one need comparing."""
    parts = max_distance + 1
    bounds = [round(64 * i / parts) for i in range(parts + 1)]
    return [(lo, (1 << (hi - lo)) - 1) for lo, hi in itertools.pairwise(bounds)]


def collapse_photos(photos: Sequence[H], max_distance: int) -> list[tuple[H, list[H]]]:
    """Photos (with hashes, best first) collapsed: each joins the best earlier leader of its collection
    within max_distance bits, else leads a group of its own. Returns (leader, other copies) pairs.

    Joining leaders only (never chaining through copies) keeps every copy within max_distance of the
    photo shown, so a run of small edits does not merge photos that differ a lot.
    """
    blocks = _blocks(max_distance)
    leaders: list[tuple[H, list[H]]] = []
    buckets: dict[tuple[object, int, int], list[int]] = {}
    for photo in photos:
        h = photo.phash
        assert h is not None
        keys = [(photo.collection, n, (h >> shift) & mask) for n, (shift, mask) in enumerate(blocks)]
        found: int | None = None
        for key in keys:
            for index in buckets.get(key, ()):
                if (found is None or index < found) and hamming(h, leaders[index][0].phash or 0) <= max_distance:
                    found = index
        if found is None:
            for key in keys:
                buckets.setdefault(key, []).append(len(leaders))
            leaders.append((photo, []))
        else:
            leaders[found][1].append(photo)
    return leaders
