"""Embedder runtimes compared in one run: img/s, start time (first and cached), RSS and cosine to torch fp32.

python -m bench.runtimes [--model DIR] [--batch 8] [--threads N]. Without --model it writes the random-weight
ViT-B/16 architecture (embedder_service.checkpoint). Each runtime runs in its own process, twice: the first
start converts into an empty cache, the second reads it and is the one timed for throughput and memory.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROWS = (
    ("torch", "fp32"),
    ("torch", "bf16"),
    ("openvino", "fp32"),
    ("openvino", "bf16"),
    ("openvino", "int8"),
    ("onnxruntime", "fp32"),
    ("onnxruntime", "int8"),
)


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def worker(args: argparse.Namespace) -> None:
    """One runtime in this process: load, time `reps` passes of `batch` images, save the vectors."""
    from embedder_service.model import ClipEmbedder, prefer_sleeping_openmp_threads

    prefer_sleeping_openmp_threads()
    started = time.perf_counter()
    embedder = ClipEmbedder(
        str(args.model),
        dtype=args.dtype,
        device="cpu",
        threads=args.threads,
        runtime=args.runtime,
        cache_dir=args.cache,
        image_pass_size=args.batch,
    )
    info = embedder.load()
    load_s = time.perf_counter() - started
    result: dict[str, object] = {"load_s": load_s, "runtime": info.runtime, "dtype": info.dtype}
    if args.reps:
        size = info.image_size
        pixels = np.random.default_rng(0).standard_normal((args.batch, 3, size, size)).astype(np.float32)
        vectors = embedder.embed_images(pixels)  # warm-up
        started = time.perf_counter()
        for _ in range(args.reps):
            vectors = embedder.embed_images(pixels)
        result["img_s"] = args.reps * args.batch / (time.perf_counter() - started)
        result["rss_mb"] = _rss_mb()
        np.save(args.vectors, vectors)
    print(json.dumps(result))


def _run(args: argparse.Namespace, runtime: str, dtype: str, cache: Path, reps: int, vectors: Path) -> dict[str, float]:
    command = [sys.executable, "-m", "bench.runtimes", "--worker", runtime, dtype, "--model", str(args.model)]
    command += ["--cache", str(cache), "--batch", str(args.batch), "--reps", str(reps), "--vectors", str(vectors)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=3600)
    if done.returncode != 0:
        lines = (done.stderr.strip() or "no output").splitlines()
        raise RuntimeError(lines[-1][:200])
    parsed: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return parsed


def _cpu_flags() -> str:
    from embedder_service.inference import cpu_flags

    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
    return " ".join(flag for flag in wanted if flag in cpu_flags()) or "none of avx2/avx512/amx"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.runtimes", description=__doc__)
    parser.add_argument("--model", type=Path, help="checkpoint directory (default: random-weight ViT-B/16)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--reps", type=int, default=4, help="timed passes per runtime (default 4)")
    parser.add_argument("--threads", type=int, default=0, help="compute threads (default: all cores)")
    parser.add_argument(
        "--rows",
        help="comma-separated RUNTIME:DTYPE rows to run (default: all; torch:fp32, the reference, always runs)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--worker", nargs=2, metavar=("RUNTIME", "DTYPE"), help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--vectors", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        args.runtime, args.dtype = args.worker
        args.threads = args.threads or None
        worker(args)
        return 0
    from embedder_service.inference import cpu_flags, installed

    with tempfile.TemporaryDirectory(prefix="bench-runtimes-") as scratch:
        root = Path(scratch)
        if args.model is None:
            from embedder_service.checkpoint import write_checkpoint

            args.model = write_checkpoint(root / "vit-b-16", arch="vit-b-16")
        native_bf16 = bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})
        wanted = {tuple(row.split(":", 1)) for row in args.rows.split(",")} if args.rows else set(ROWS)
        rows = []
        for runtime, dtype in ROWS:
            if (runtime, dtype) not in wanted and (runtime, dtype) != ("torch", "fp32"):
                continue
            if dtype == "bf16" and not native_bf16:
                continue  # emulated there: slower than fp32 (docs/benchmarks.md)
            if runtime != "torch" and not installed(runtime):
                print(f"{runtime}: not installed (pip install 'clipsearch[fast]')", file=sys.stderr)
                continue
            cache = root / f"cache-{runtime}-{dtype}"
            vectors = root / f"{runtime}-{dtype}.npy"
            try:
                first = _run(args, runtime, dtype, cache, 0, vectors)
                second = _run(args, runtime, dtype, cache, args.reps, vectors)
            except (RuntimeError, subprocess.TimeoutExpired) as error:
                print(f"{runtime} {dtype}: failed ({error})", file=sys.stderr)
                continue
            rows.append(
                {
                    "runtime": runtime,
                    "dtype": dtype,
                    "img_s": second["img_s"],
                    "first_start_s": first["load_s"],
                    "second_start_s": second["load_s"],
                    "rss_mb": second["rss_mb"],
                    "vectors": np.load(vectors),
                }
            )
    reference = next(row for row in rows if (row["runtime"], row["dtype"]) == ("torch", "fp32"))
    want = np.asarray(reference["vectors"], dtype=np.float64)
    for row in rows:
        row["x_torch_fp32"] = float(row["img_s"]) / float(reference["img_s"])
        got = np.asarray(row.pop("vectors"), dtype=np.float64)
        row["min_cosine"] = float((got * want).sum(axis=1).min())
    threads = args.threads or len(os.sched_getaffinity(0))
    if args.json:
        print(json.dumps({"cpu_flags": _cpu_flags(), "threads": threads, "batch": args.batch, "rows": rows}, indent=1))
        return 0
    print(f"CPU flags: {_cpu_flags()}; {threads} threads, batch {args.batch}, {args.reps} timed passes")
    print(
        f"{'runtime':<12} {'dtype':<5} {'img/s':>7} {'x torch':>8} {'min cos':>8} {'1st start':>10} {'2nd start':>10} {'RSS MB':>7}"
    )
    for row in rows:
        print(
            f"{row['runtime']:<12} {row['dtype']:<5} {row['img_s']:>7.2f} {row['x_torch_fp32']:>7.2f}x "
            f"{row['min_cosine']:>8.5f} {row['first_start_s']:>9.1f}s {row['second_start_s']:>9.1f}s "
            f"{row['rss_mb']:>7.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
