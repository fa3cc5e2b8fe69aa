"""Telling still frames apart: the signature, the difference and the filter that keeps frames."""

from __future__ import annotations

import numpy as np
import pytest

from client.ingest.engine import marker_tag
from client.ingest.media import VideoFrame
from client.ingest.stills import DEFAULT_STILL_THRESHOLD, StillFilter, difference, signature


def frame(pixels: np.ndarray, t: float = 0.0) -> VideoFrame:
    height, width = pixels.shape[:2]
    return VideoFrame(pixels.astype(np.uint8).tobytes(), width, height, width, height, t, int(t))


def picture(seed: int, size: tuple[int, int] = (96, 64)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3)).astype(np.float32)


def noisy(pixels: np.ndarray, seed: int, sigma: float = 2.0) -> np.ndarray:
    return np.clip(pixels + np.random.default_rng(seed).normal(0, sigma, pixels.shape), 0, 255)


def test_the_signature_is_a_32x32_copy_in_colour() -> None:
    assert signature(frame(picture(1))).shape == (32, 32, 3)


def test_noise_differs_little_and_another_picture_much() -> None:
    base = picture(1)
    same = difference(signature(frame(noisy(base, 2))), signature(frame(noisy(base, 3))))
    other = difference(signature(frame(base)), signature(frame(picture(4))))
    assert same < DEFAULT_STILL_THRESHOLD / 2
    assert other > 10 * DEFAULT_STILL_THRESHOLD


def test_a_change_of_hue_at_the_same_brightness_is_seen() -> None:
    red = np.full((64, 96, 3), (200.0, 40.0, 40.0))
    green = np.full((64, 96, 3), (40.0, 120.0, 40.0))  # about the same grey level as the red
    assert difference(signature(frame(red)), signature(frame(green))) > DEFAULT_STILL_THRESHOLD


def test_the_filter_compares_with_the_last_kept_frame_not_the_last_seen() -> None:
    stills = StillFilter(threshold=5.0)
    base = np.full((64, 96, 3), 100.0)
    # Each step brightens by 3 levels: alike to the frame before, but not to the kept one after two steps.
    kept = [stills.keep(frame(base + 3 * n, n)) for n in range(5)]
    assert kept == [True, False, True, False, True]


def test_a_threshold_of_zero_keeps_every_frame_and_a_negative_one_is_refused() -> None:
    stills = StillFilter(0.0)
    same = frame(picture(1))
    assert all(stills.keep(same) for _ in range(3))
    with pytest.raises(ValueError, match="threshold"):
        StillFilter(-1.0)


def test_the_marker_names_the_threshold_when_frames_are_skipped() -> None:
    assert marker_tag(12, 1.0) == "clipsearch:frames=12@1fps"
    assert marker_tag(12, 1.0, 2.0) == "clipsearch:frames=12@1fps~2"
