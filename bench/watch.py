"""The indexer: latency from a photo written into a library to it being searchable, and its CPU while idle."""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from bench import common
from client import Client, SearchFilter
from client.ids import image_id, sha256_bytes
from client.uris import path_to_uri
from clipsearch.testing.processes import base_env, start_stack
from clipsearch.v1 import search_pb2, search_pb2_grpc

GOAL_P95_SECONDS = 5.0
GOAL_IDLE_CPU = 0.01  # of one core
COLLECTION = "bench"


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (/proc/PID/stat, in clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def photo(n: int, size: tuple[int, int]) -> bytes:
    rng = np.random.default_rng(9000 + n)
    out = io.BytesIO()
    common.with_noise(common.scene(rng, *size), rng, 3.0).save(out, "JPEG", quality=90)
    return out.getvalue()


def wait(check: Any, within: float, what: str, interval: float = 0.02) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > within:
            raise SystemExit(f"bench.watch: not within {within:.0f} s: {what}")
        time.sleep(interval)
    return time.monotonic() - started


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def seed_known_files(search: str, dimension: int, folder: Path, files: int, per_folder: int) -> None:
    """`files` small files under `folder`, stored in the index as a run would have (one item each), so the
    indexer's catch-up finds every one known and the watch is then idle over all of them. Their bytes are not
    pictures: nothing decodes them, the catch-up only reads and hashes them."""
    channel = grpc.insecure_channel(search)
    stub = search_pb2_grpc.SearchStub(channel)
    rng = np.random.default_rng(1)
    batch: list[search_pb2.Item] = []
    for n in range(files):
        path = folder / f"d{n // per_folder:04d}" / f"f{n:06d}.jpg"
        if n % per_folder == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
        data = f"file {n}\n".encode()
        path.write_bytes(data)
        digest = sha256_bytes(data)
        vector = rng.standard_normal(dimension).astype(np.float32)
        batch.append(
            search_pb2.Item(
                id=image_id(COLLECTION, digest),
                vector=vector.tolist(),
                metadata=search_pb2.Metadata(
                    sources=[path_to_uri(path)],
                    media_type=search_pb2.MEDIA_TYPE_IMAGE,
                    collection=COLLECTION,
                    content_hash=digest,
                ),
            )
        )
        if len(batch) == 1000:
            stub.Upsert(search_pb2.UpsertRequest(items=batch), timeout=60)
            batch = []
    if batch:
        stub.Upsert(search_pb2.UpsertRequest(items=batch), timeout=60)
    channel.close()


def start_indexer(embedder: str, search: str, log_path: Path, mode: str) -> subprocess.Popen[bytes]:
    """`python -m client.indexer` as its own process, its output into `log_path` (opened with `mode`)."""
    with log_path.open(mode) as log:
        return subprocess.Popen(
            [sys.executable, "-m", "client.indexer", "--embedder", embedder, "--search", search],
            env=base_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def run(args: argparse.Namespace) -> dict[str, Any]:
    model = common.checkpoint(common.cache_dir(Path(args.cache)), "tiny")
    with tempfile.TemporaryDirectory(prefix="bench-watch-") as scratch:
        work = Path(scratch)
        stack = start_stack(work / "services", str(model))
        indexer: subprocess.Popen[bytes] | None = None
        try:
            embedder, search = stack.embedder_addresses[0], stack.search.address
            with Client(embedder, search, connect_timeout=30) as client:
                big, photos = work / "big", work / "photos"
                big.mkdir()
                photos.mkdir()
                started = time.monotonic()
                seed_known_files(search, stack.dimension, big, args.files, args.per_folder)
                seeded = time.monotonic() - started
                client.add_library(big, COLLECTION)
                client.add_library(photos, COLLECTION)
                indexer = start_indexer(embedder, search, work / "indexer.log", "wb")
                started = time.monotonic()
                wait(
                    lambda: all(lib.state == "watching" for lib in client.list_libraries()),
                    args.catch_up_timeout,
                    "the catch-up of the seeded files",
                    interval=0.5,
                )
                catch_up = time.monotonic() - started

                # Idle: everything indexed, nothing changing.
                time.sleep(2.0)
                load_before = common.load_average()
                cpu0, wall0 = cpu_seconds(indexer.pid), time.monotonic()
                time.sleep(args.idle_seconds)
                idle_cpu = (cpu_seconds(indexer.pid) - cpu0) / (time.monotonic() - wall0)

                # Latency: a photo written (closed) -> found by a query on its path.
                blobs = [photo(n, (args.width, args.height)) for n in range(args.photos)]
                latencies: list[float] = []
                for n, blob in enumerate(blobs):
                    path = photos / f"photo{n:03d}.jpg"
                    written = time.monotonic()
                    path.write_bytes(blob)
                    written = time.monotonic()
                    query = SearchFilter(sources=(path_to_uri(path),))
                    wait(lambda q=query: any(True for _ in client.list_items(q)), 60, f"{path.name} searchable")
                    latencies.append(time.monotonic() - written)
                    time.sleep(args.gap)
                hits = client.search_image(
                    photos / "photo000.jpg", top=1, filter=SearchFilter(collections=(COLLECTION,))
                )
                assert hits and hits[0].source.endswith("photo000.jpg"), hits

                # A restart: the indexer looks only at the files changed since it last recorded being caught up.
                wait(
                    lambda: all(lib.status.caught_up_at > time.time() - 60 for lib in client.list_libraries()),
                    120,
                    "the indexer recording that it is caught up",
                    interval=0.5,
                )
                indexer.terminate()
                indexer.wait(30)
                indexer = start_indexer(embedder, search, work / "indexer.log", "ab")
                started = time.monotonic()
                identity = f":{indexer.pid}"
                wait(
                    lambda: all(
                        lib.state == "watching" and lib.status.indexer.endswith(identity)
                        for lib in client.list_libraries()
                    ),
                    args.catch_up_timeout,
                    "the catch-up after a restart",
                    interval=0.2,
                )
                restart_catch_up = time.monotonic() - started
        finally:
            if indexer is not None:
                indexer.terminate()
                indexer.wait(30)
            stack.stop()
    p50, p95 = statistics.median(latencies), percentile(latencies, 0.95)
    return {
        "files_watched": args.files + args.photos,
        "folders_watched": args.files // args.per_folder + 2,
        "seed_seconds": round(seeded, 1),
        "catch_up_seconds": round(catch_up, 1),
        "restart_catch_up_seconds": round(restart_catch_up, 1),
        "idle_seconds": args.idle_seconds,
        "idle_cpu_share_of_a_core": round(idle_cpu, 5),
        "idle_cpu_goal": GOAL_IDLE_CPU,
        "idle_cpu_ratio_to_goal": round(idle_cpu / GOAL_IDLE_CPU, 3),
        "photos": args.photos,
        "photo_size": [args.width, args.height],
        "latency_p50_seconds": round(p50, 3),
        "latency_p95_seconds": round(p95, 3),
        "latency_max_seconds": round(max(latencies), 3),
        "latency_goal_p95_seconds": GOAL_P95_SECONDS,
        "latency_p95_ratio_to_goal": round(p95 / GOAL_P95_SECONDS, 3),
        "load_average_before_idle": load_before,
        "load_average_after": common.load_average(),
        "cpus": os.cpu_count(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.watch", description=__doc__)
    parser.add_argument("--files", type=int, default=100_000, help="files in the watched library (default 100000)")
    parser.add_argument("--per-folder", type=int, default=1000, help="files per sub-folder (default 1000)")
    parser.add_argument("--photos", type=int, default=20, help="photos written one by one for the latency")
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--height", type=int, default=1200)
    parser.add_argument("--gap", type=float, default=0.5, help="seconds between two photos (default 0.5)")
    parser.add_argument("--idle-seconds", type=float, default=60.0, help="how long the idle CPU is measured")
    parser.add_argument("--catch-up-timeout", type=float, default=1800.0)
    parser.add_argument("--cache", default=str(common.DEFAULT_CACHE))
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the figures to OUT")
    args = parser.parse_args(argv)
    result = run(args)
    print(
        f"watch latency, photo {args.width}x{args.height} written -> searchable ({args.photos} photos): "
        f"p50 {result['latency_p50_seconds']:.2f} s, p95 {result['latency_p95_seconds']:.2f} s "
        f"(goal p95 <= {GOAL_P95_SECONDS:.0f} s: ratio {result['latency_p95_ratio_to_goal']:.2f})"
    )
    print(
        f"indexer idle CPU with {result['files_watched']} files in {result['folders_watched']} folders watched: "
        f"{100 * result['idle_cpu_share_of_a_core']:.3f}% of a core over {args.idle_seconds:.0f} s "
        f"(goal < {100 * GOAL_IDLE_CPU:.0f}%: ratio {result['idle_cpu_ratio_to_goal']:.3f}); "
        f"catch-up of the seeded files on start: {result['catch_up_seconds']:.1f} s (every file read), after a "
        f"restart: {result['restart_catch_up_seconds']:.1f} s (only what changed)"
    )
    print(f"load average {result['load_average_before_idle']} before, {result['load_average_after']} after")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
