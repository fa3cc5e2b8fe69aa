"""Whether int8 (and bf16) are accurate enough on your model and images: cosine to fp32 and top-10 overlap.

python -m bench.accuracy --model DIR --images DIR [--queries FILE] [--runtime auto|openvino|onnxruntime]
embeds every image (up to --limit) and every query in fp32 on torch and in each reduced precision, then
prints the distribution of per-vector cosines to fp32, the mean overlap of each query's top 10 images (and
of each image's 10 nearest images), and a verdict against the project's floors.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from embedder_service.model import ClipEmbedder

COSINE_FLOOR = {"int8": 0.99, "bf16": 0.999}
OVERLAP_FLOOR = 0.9
TOP = 10


def _embedder(model: Path, runtime: str, dtype: str, cache: Path) -> ClipEmbedder:
    from embedder_service.model import ClipEmbedder

    embedder = ClipEmbedder(str(model), dtype=dtype, device="cpu", runtime=runtime, cache_dir=cache)
    embedder.load()
    return embedder


def top_overlap(
    reference: np.ndarray, candidate: np.ndarray, queries_ref: np.ndarray, queries_cand: np.ndarray
) -> float:
    """Mean fraction of each query's top-TOP items under the reference that the candidate also ranks top-TOP."""
    k = min(TOP, reference.shape[0])
    want = np.argsort(-(queries_ref @ reference.T), axis=1)[:, :k]
    got = np.argsort(-(queries_cand @ candidate.T), axis=1)[:, :k]
    return float(np.mean([len(set(w) & set(g)) / k for w, g in zip(want, got, strict=True)]))


def neighbour_overlap(reference: np.ndarray, candidate: np.ndarray) -> float:
    """top_overlap with every image as the query, itself excluded."""
    k = min(TOP, reference.shape[0] - 1)
    if k < 1:
        return 1.0
    ref_scores, cand_scores = reference @ reference.T, candidate @ candidate.T
    np.fill_diagonal(ref_scores, -np.inf)
    np.fill_diagonal(cand_scores, -np.inf)
    want = np.argsort(-ref_scores, axis=1)[:, :k]
    got = np.argsort(-cand_scores, axis=1)[:, :k]
    return float(np.mean([len(set(w) & set(g)) / k for w, g in zip(want, got, strict=True)]))


def _distribution(cosines: np.ndarray) -> dict[str, float]:
    return {
        "min": float(cosines.min()),
        "p1": float(np.percentile(cosines, 1)),
        "p5": float(np.percentile(cosines, 5)),
        "median": float(np.median(cosines)),
    }


def compare(
    reference: tuple[np.ndarray, np.ndarray], candidate: tuple[np.ndarray, np.ndarray], dtype: str
) -> dict[str, Any]:
    """Cosine distributions, top-10 overlaps and the verdict of one precision against fp32."""
    (ref_images, ref_texts), (images, texts) = reference, candidate
    image_cosines = (images.astype(np.float64) * ref_images).sum(axis=1)
    text_cosines = (texts.astype(np.float64) * ref_texts).sum(axis=1)
    query_overlap = top_overlap(ref_images, images, ref_texts, texts)
    image_overlap = neighbour_overlap(ref_images, images)
    floor = COSINE_FLOOR[dtype]
    passed = (
        min(image_cosines.min(), text_cosines.min()) >= floor and min(query_overlap, image_overlap) >= OVERLAP_FLOOR
    )
    return {
        "image_cosine": _distribution(image_cosines),
        "text_cosine": _distribution(text_cosines),
        "query_top10_overlap": query_overlap,
        "image_top10_overlap": image_overlap,
        "verdict": "ok" if passed else "below the floor: keep fp32 for this model",
        "floors": {"cosine": floor, "top10_overlap": OVERLAP_FLOOR},
    }


def _embed_all(embedder: ClipEmbedder, pixels: list[np.ndarray], queries: list[str]) -> tuple[np.ndarray, np.ndarray]:
    images = np.concatenate([embedder.embed_images(np.stack(pixels[i : i + 16])) for i in range(0, len(pixels), 16)])
    return images, embedder.embed_texts(queries)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.accuracy", description=__doc__)
    parser.add_argument("--model", type=Path, required=True, help="checkpoint directory (or hub id in the cache)")
    parser.add_argument("--images", type=Path, required=True, help="a folder of your images (searched recursively)")
    parser.add_argument("--queries", type=Path, help="text queries, one a line (default: built-in captions)")
    parser.add_argument("--runtime", default="auto", choices=("auto", "openvino", "onnxruntime"))
    parser.add_argument("--limit", type=int, default=1000, help="most images to embed (default 1000)")
    parser.add_argument("--bf16", action="store_true", help="also compare bf16 (slow where the CPU emulates it)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from embedder_service.calibration import CAPTIONS, user_images
    from embedder_service.inference import RuntimeUnavailable
    from embedder_service.model import ModelNotFound
    from embedder_service.preprocess import Preprocessor

    if not args.images.is_dir():
        print(f"--images {args.images}: not a directory", file=sys.stderr)
        return 2
    queries = list(CAPTIONS)
    if args.queries is not None:
        try:
            queries = [line.strip() for line in args.queries.read_text().splitlines() if line.strip()]
        except OSError as error:
            print(f"--queries {args.queries}: {error.strerror}", file=sys.stderr)
            return 2
        if not queries:
            print(f"--queries {args.queries}: no queries in it", file=sys.stderr)
            return 2
    results: dict[str, dict[str, Any]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="clip-accuracy-") as cache:
            reference_model = _embedder(args.model, "torch", "fp32", Path(cache))
            images = user_images(args.images, limit=args.limit)
            preprocess = Preprocessor(reference_model.preprocess_spec)
            pixels = [preprocess(image) for image in images]
            reference = _embed_all(reference_model, pixels, queries)
            del reference_model
            for dtype in ("int8", "bf16") if args.bf16 else ("int8",):
                runtime = "openvino" if dtype == "bf16" and args.runtime == "auto" else args.runtime
                candidate = _embedder(args.model, runtime, dtype, Path(cache))
                results[dtype] = compare(reference, _embed_all(candidate, pixels, queries), dtype)
                results[dtype]["runtime"] = candidate.info.runtime
    except (ModelNotFound, RuntimeUnavailable, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    summary = {"images": len(pixels), "queries": len(queries), "results": results}
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    print(f"{len(pixels)} images, {len(queries)} queries; floors: cosine int8 0.99 / bf16 0.999, top-10 overlap 0.9")
    for dtype, result in results.items():
        print(f"{dtype} on {result['runtime']}:")
        for kind in ("image_cosine", "text_cosine"):
            d = result[kind]
            print(f"  {kind:<13} min {d['min']:.5f}  p1 {d['p1']:.5f}  p5 {d['p5']:.5f}  median {d['median']:.5f}")
        print(
            f"  top-10 overlap: queries {result['query_top10_overlap']:.3f}, images {result['image_top10_overlap']:.3f}"
        )
        print(f"  verdict: {result['verdict']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
