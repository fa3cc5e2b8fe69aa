"""Image pass sizes per runtime and precision, and OpenVINO's streams, measured in interleaved rounds.

python -m bench.passes [--model DIR] [--rows RUNTIME:DTYPE,...] [--sizes 1,2,4,8,16] [--images 16] [--rounds 3]
[--streams]. Each row runs in its own process; inside it, every round times `--images` images in passes of
each size in turn, so the load of a shared machine hits the sizes alike; medians of the rounds are printed.
With --streams, OpenVINO rows also run their image tower with the THROUGHPUT hint and 2 streams fed by an
asynchronous request queue (each request a pass of its own), against the single request the embedder uses.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import DEFAULT_CACHE, cache_dir, checkpoint

DEFAULT_ROWS = ("torch:fp32", "torch:bf16", "openvino:bf16", "openvino:int8", "onnxruntime:fp32", "onnxruntime:int8")


def _timed(function: Any) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def worker(args: argparse.Namespace) -> dict[str, Any]:
    from embedder_service.model import ClipEmbedder, prefer_sleeping_openmp_threads

    prefer_sleeping_openmp_threads()
    runtime, dtype = args.worker.split(":")
    embedder = ClipEmbedder(
        str(args.model),
        dtype=dtype,
        device="cpu",
        threads=args.threads or None,
        runtime=runtime,
        cache_dir=args.models,
        image_pass_size=0,
    )
    info = embedder.load()
    size = info.image_size
    pixels = np.random.default_rng(0).standard_normal((args.images, 3, size, size)).astype(np.float32)
    sizes = [int(value) for value in args.sizes.split(",")]
    timings: dict[str, list[float]] = {str(n): [] for n in sizes}
    streams = args.streams and info.runtime == "openvino"
    queue = _openvino_queue(embedder, args) if streams else None
    if queue is not None:
        for n in sizes:
            timings[f"streams:{n}"] = []
    for number in range(args.rounds + 1):  # round 0 warms every size up
        for n in sizes:
            spent = _timed(lambda n=n: [embedder.embed_images(pixels[i : i + n]) for i in range(0, len(pixels), n)])
            if number:
                timings[str(n)].append(args.images / spent)
            if queue is not None:
                spent = _timed(lambda n=n: queue(pixels, n))
                if number:
                    timings[f"streams:{n}"].append(args.images / spent)
    return {
        "runtime": info.runtime,
        "dtype": info.dtype,
        "img_s": {key: round(statistics.median(values), 3) for key, values in timings.items()},
        "rounds": {key: [round(value, 3) for value in values] for key, values in timings.items()},
    }


def _openvino_queue(embedder: Any, args: argparse.Namespace) -> Any:
    """The image tower compiled again with the THROUGHPUT hint and 2 streams, run through AsyncInferQueue."""
    import openvino

    session = embedder._sessions["image"]  # the compiled model's path and precision
    core = openvino.Core()
    config = {
        "PERFORMANCE_HINT": "THROUGHPUT",
        "NUM_STREAMS": str(args.nstreams),
        "INFERENCE_PRECISION_HINT": "bf16" if session._dtype == "bf16" else "f32",
    }
    compiled = core.compile_model(str(session._path), "CPU", config)
    queue = openvino.AsyncInferQueue(compiled, args.nstreams)

    def run(pixels: np.ndarray, n: int) -> None:
        for start in range(0, len(pixels), n):
            queue.start_async([np.ascontiguousarray(pixels[start : start + n])])
        queue.wait_all()

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.passes", description=__doc__)
    parser.add_argument("--model", type=Path, help="checkpoint directory (default: random-weight ViT-B/16)")
    parser.add_argument("--rows", default=",".join(DEFAULT_ROWS), help="RUNTIME:DTYPE,... (default: all)")
    parser.add_argument("--sizes", default="1,2,4,8,16", help="pass sizes (default 1,2,4,8,16)")
    parser.add_argument("--images", type=int, default=16, help="images per timed run (default 16)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds after a warm-up round (default 3)")
    parser.add_argument("--threads", type=int, default=0, help="compute threads (default: all cores)")
    parser.add_argument("--streams", action="store_true", help="also OpenVINO THROUGHPUT with async requests")
    parser.add_argument("--nstreams", type=int, default=2, help="OpenVINO streams and requests (default 2)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--models", type=Path, default=DEFAULT_CACHE / "models", help="converted-model cache")
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    args.model = args.model or checkpoint(cache_dir(DEFAULT_CACHE), "vit-b-16")
    rows = []
    for row in args.rows.split(","):
        command = [sys.executable, "-m", "bench.passes", "--worker", row, "--model", str(args.model)]
        command += ["--sizes", args.sizes, "--images", str(args.images), "--rounds", str(args.rounds)]
        command += ["--threads", str(args.threads), "--models", str(args.models), "--nstreams", str(args.nstreams)]
        command += ["--streams"] if args.streams else []
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=3600)
        if done.returncode != 0:
            print(f"{row}: failed: {(done.stderr.strip() or 'no output').splitlines()[-1][:200]}", file=sys.stderr)
            continue
        result = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(result)
        best = max(result["img_s"], key=result["img_s"].get)
        figures = "  ".join(f"{key}: {value:.2f}" for key, value in result["img_s"].items())
        print(f"{result['runtime']:<12} {result['dtype']:<8} img/s by pass size  {figures}  (best {best})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
