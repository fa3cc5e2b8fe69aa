"""Telling a sampled video frame that adds nothing from the last embedded one, before any model call."""

from __future__ import annotations

import numpy as np
from PIL import Image

from .media import VideoFrame

SIGNATURE_SIDE = 32
# Mean absolute difference (0-255 levels) of the 32x32 copies at or under which a frame counts as the
# same picture. On bench.moments' generated 10-minute video (H.264, sensor noise of sigma 2) frames of a
# still shot differed by at most 0.17, frames of moving shots by 15 or more and across cuts by 47 or more.
# 2 leaves room for noisier cameras while staying far below any motion measured.
DEFAULT_STILL_THRESHOLD = 2.0


def signature(frame: VideoFrame) -> np.ndarray:
    """A 32x32 copy of the frame, box-filtered so that noise and compression artefacts average out.

    In colour rather than grey: two shots of different hue can have the same brightness everywhere.
    """
    image = Image.frombytes("RGB", (frame.width, frame.height), frame.rgb)
    small = image.resize((SIGNATURE_SIDE, SIGNATURE_SIDE), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32)


def difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two signatures, in levels (0 the same, 255 black against white)."""
    return float(np.abs(a - b).mean())


class StillFilter:
    """Says which sampled frames of one video to embed: those that differ enough from the last one kept."""

    def __init__(self, threshold: float) -> None:
        if not threshold >= 0:
            raise ValueError(f"the still threshold must be >= 0, got {threshold}")
        self.threshold = threshold
        self._kept: np.ndarray | None = None

    def keep(self, frame: VideoFrame) -> bool:
        """Whether to embed `frame`; always true with a threshold of 0."""
        if self.threshold == 0:
            return True
        current = signature(frame)
        if self._kept is not None and difference(current, self._kept) <= self.threshold:
            return False
        self._kept = current
        return True
