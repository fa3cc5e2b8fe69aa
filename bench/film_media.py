"""A generated film-like encode: 1080p H.264 (x264 preset medium, B-frames), 24 fps, shots of 2-20 s."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image

from bench.media import scene

FILM_FPS = 24
FILM_SIZE = (1920, 1080)
# Frames are drawn at half size and scaled up by swscale, then grain is added at full size: a 1080p
# film of two minutes costs about 8 CPU minutes to make, most of it x264's own work.
_GRAIN_FRAMES = 16
_GRAIN_SIGMA = 3.0


@dataclass(frozen=True)
class Shot:
    """A shot of the film: where it starts and ends (seconds) and how its camera moves."""

    start: float
    end: float
    kind: str  # "still" (grain only), "pan" or "zoom"
    scene: int


def shots_for(seconds: int, seed: int = 11) -> list[Shot]:
    """Shots of 2-20 s filling `seconds`, half of them still (with grain), the others panning or zooming."""
    rng = np.random.default_rng(seed)
    shots: list[Shot] = []
    start = 0.0
    while start < seconds:
        length = float(rng.integers(2 * FILM_FPS, 20 * FILM_FPS + 1)) / FILM_FPS
        end = min(float(seconds), start + length)
        kind = "still" if len(shots) % 2 == 0 else ("pan" if rng.random() < 0.5 else "zoom")
        shots.append(Shot(start, end, kind, len(shots)))
        start = end
    return shots


def _drawn_frame(picture: np.ndarray, shot: Shot, t: float, drawn: tuple[int, int]) -> np.ndarray:
    """The half-size picture of `shot` at `t` seconds into it: a window of its larger scene."""
    width, height = drawn
    big_h, big_w = picture.shape[:2]
    if shot.kind == "still":
        return picture[:height, :width]
    progress = t / max(shot.end - shot.start, 1e-6)
    if shot.kind == "pan":
        x = round(progress * (big_w - width))
        y = round(progress * (big_h - height) / 2)
        return picture[y : y + height, x : x + width]
    zoom = 1.0 + 0.5 * progress  # a slow push in, about the scene's middle
    w, h = round(big_w / zoom), round(big_h / zoom)
    x, y = (big_w - w) // 2, (big_h - h) // 2
    window = Image.fromarray(picture[y : y + h, x : x + w])
    return np.asarray(window.resize(drawn, Image.Resampling.BILINEAR))


def film(cache: Path, seconds: int = 120, size: tuple[int, int] = FILM_SIZE) -> Path:
    """The film (made once into the cache) with its shot list beside it as JSON (`<film>.shots.json`)."""
    path = cache / "media" / f"film-{size[0]}x{size[1]}-{seconds}s-{FILM_FPS}fps-x264medium.mp4"
    if path.is_file():
        return path
    shots = shots_for(seconds)
    rng = np.random.default_rng(23)
    width, height = size
    drawn = (width // 2, height // 2)
    grain = [rng.normal(0, _GRAIN_SIGMA, (height, width)).astype(np.int16) for _ in range(_GRAIN_FRAMES)]
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with av.open(str(partial), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=FILM_FPS)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "medium", "crf": "23"}
        index = 0
        for shot in shots:
            picture = np.asarray(scene(np.random.default_rng(100 + shot.scene), drawn[0] * 3 // 2, drawn[1] * 3 // 2))
            while index < round(shot.end * FILM_FPS):
                pixels = _drawn_frame(picture, shot, index / FILM_FPS - shot.start, drawn)
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
                planes = frame.reformat(width, height, format="yuv420p").to_ndarray()
                luma = planes[:height].astype(np.int16) + grain[int(rng.integers(_GRAIN_FRAMES))]
                planes[:height] = np.clip(luma, 0, 255).astype(np.uint8)
                out = av.VideoFrame.from_ndarray(planes, format="yuv420p")
                out.pts = index
                for packet in stream.encode(out):
                    container.mux(packet)
                index += 1
        for packet in stream.encode():
            container.mux(packet)
    shots_path(path).write_text(json.dumps([asdict(shot) for shot in shots], indent=1) + "\n", encoding="utf-8")
    partial.rename(path)
    return path


def shots_path(film_path: Path) -> Path:
    return film_path.with_name(f"{film_path.name}.shots.json")


def load_shots(film_path: Path) -> list[Shot]:
    return [Shot(**shot) for shot in json.loads(shots_path(film_path).read_text(encoding="utf-8"))]
