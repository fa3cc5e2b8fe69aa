"""Synthetic embeddings for the scale benchmark: film-like frames (shots that drift, cuts between) and blobs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

DIMENSION = 512
FRAMES_PER_FILM = 1000  # sampled seconds of one film, as ingest stores them
MEAN_SHOT_FRAMES = 12.0  # frames between cuts, on average (a shot of about 12 s at 1 frame a second)
SHOT_SUBSPACE = 8  # a shot drifts within a few directions only: the camera moves, the scene stays
FILM_STYLE = 0.5  # how much of every shot is the film's own look (lighting, colour, cast): films differ
DRIFT = 0.1  # length of a frame's step within the shot's subspace (the shot's centre has length ~1.1)
JITTER = 0.02  # length of each frame's noise in every direction (compression, grain)
QUERY_NOISE = 0.6  # how far a query is from the frame it describes, relative to the frame's length
BLOB_CENTRES = 1000
BLOB_SPREAD = 0.35


@dataclass(frozen=True)
class Film:
    """One film's frames: unit vectors, each frame's second, and the frame number where each shot begins."""

    number: int
    vectors: np.ndarray  # (frames, DIMENSION) float32, unit length
    shot_starts: np.ndarray


def _unit(rows: np.ndarray) -> np.ndarray:
    out: np.ndarray = (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)
    return out


def film(number: int, frames: int = FRAMES_PER_FILM, seed: int = 0) -> Film:
    """Frames of one film: shots of near-identical frames, each drifting slowly within a low-dimensional
    subspace of its own, and a cut to a different shot every MEAN_SHOT_FRAMES frames on average."""
    rng = np.random.default_rng([seed, number])
    style = _unit(rng.standard_normal(DIMENSION))
    vectors = np.empty((frames, DIMENSION), dtype=np.float32)
    starts: list[int] = []
    n = 0
    while n < frames:
        length = min(int(rng.geometric(1.0 / MEAN_SHOT_FRAMES)), frames - n)
        starts.append(n)
        centre = FILM_STYLE * style + _unit(rng.standard_normal(DIMENSION))
        basis = _unit(rng.standard_normal((SHOT_SUBSPACE, DIMENSION)))
        steps = rng.standard_normal((length, SHOT_SUBSPACE)).astype(np.float32) * DRIFT / np.sqrt(SHOT_SUBSPACE)
        walk = np.cumsum(steps, axis=0) @ basis
        jitter = rng.standard_normal((length, DIMENSION)).astype(np.float32) * JITTER / np.sqrt(DIMENSION)
        vectors[n : n + length] = _unit(centre + walk + jitter)
        n += length
    return Film(number, vectors, np.asarray(starts))


def films(count: int, frames: int = FRAMES_PER_FILM, seed: int = 0) -> Iterator[Film]:
    for number in range(count):
        yield film(number, frames, seed)


def blobs(number: int, frames: int = FRAMES_PER_FILM, seed: int = 0) -> np.ndarray:
    """The earlier recall figure's data: Gaussian blobs around BLOB_CENTRES random centres (one "film" of
    `frames` of them, numbered as films are, so the same pipeline stores both)."""
    centres = np.random.default_rng([seed, 1 << 30]).standard_normal((BLOB_CENTRES, DIMENSION)).astype(np.float32)
    rng = np.random.default_rng([seed, number, 7])
    picks = rng.integers(0, BLOB_CENTRES, frames)
    spread = rng.standard_normal((frames, DIMENSION)).astype(np.float32) * BLOB_SPREAD
    return _unit(centres[picks] + spread)


def queries(rng: np.random.Generator, pick: np.ndarray, noise: float = QUERY_NOISE) -> np.ndarray:
    """Queries near the frames `pick` (rows of vectors): each frame plus noise of `noise` times its length."""
    spread = rng.standard_normal(pick.shape).astype(np.float32) * noise / np.sqrt(pick.shape[1])
    return _unit(pick + spread)


def exact_top(queries: np.ndarray, stored: np.ndarray, k: int, chunk: int = 100_000) -> np.ndarray:
    """Row numbers of each query's k most similar stored vectors by cosine, best first (what FLAT returns):
    `stored` as the index holds them (rounded to FLOAT16 when it stores FLOAT16), normalised again."""
    best_scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_rows = np.zeros((len(queries), 0), dtype=np.int64)
    q = _unit(queries.astype(np.float32))
    for start in range(0, len(stored), chunk):
        block = _unit(stored[start : start + chunk].astype(np.float32))
        scores = q @ block.T
        take = min(k, scores.shape[1])
        top = np.argpartition(-scores, take - 1, axis=1)[:, :take]
        best_scores = np.concatenate([best_scores, np.take_along_axis(scores, top, axis=1)], axis=1)
        best_rows = np.concatenate([best_rows, top + start], axis=1)
        keep = np.argsort(-best_scores, axis=1, kind="stable")[:, :k]
        best_scores = np.take_along_axis(best_scores, keep, axis=1)
        best_rows = np.take_along_axis(best_rows, keep, axis=1)
    return best_rows


def float16_effect(films: int, queries_count: int = 300, seed: int = 9) -> dict[str, float]:
    """How rounding to FLOAT16 changes exact search over `films` film-like films and as many blob batches:
    the share of each query's exact top 10 (over FLOAT32) that exact search over FLOAT16 also returns, how
    often the first result stays, and the largest change of a top-10 cosine."""
    rng = np.random.default_rng(seed)
    out: dict[str, float] = {}
    for kind in ("film", "blob"):
        vectors = np.concatenate([film(n).vectors if kind == "film" else blobs(n) for n in range(films)])
        picked = vectors[rng.integers(0, len(vectors), queries_count)]
        q = queries(rng, picked, noise=QUERY_NOISE if kind == "film" else 0.3)
        want, got = exact_top(q, vectors, 10), exact_top(q, vectors.astype(np.float16), 10)
        rounded = vectors.astype(np.float16).astype(np.float32)
        change = np.abs((q[:, None, :] * vectors[want]).sum(-1) - (q[:, None, :] * rounded[want]).sum(-1)).max()
        out[f"{kind}_top10_kept"] = round(
            float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(want, got, strict=True)])), 4
        )
        out[f"{kind}_first_kept"] = round(float(np.mean(want[:, 0] == got[:, 0])), 4)
        out[f"{kind}_max_cosine_change"] = float(f"{change:.2g}")
    return out
