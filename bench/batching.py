"""Dynamic batching benchmark: concurrent single-item calls to an in-process embedder, batching on vs off."""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import grpc
import numpy as np
from PIL import Image

from clipsearch.v1 import embedder_pb2 as pb
from clipsearch.v1 import embedder_pb2_grpc
from embedder_service.config import EmbedderConfig
from embedder_service.model import ClipEmbedder, prefer_sleeping_openmp_threads

_ADJECTIVES = ["red", "small", "old", "shiny", "wet", "sleepy", "striped", "wooden", "bright", "broken"]
_NOUNS = ["cat", "bicycle", "lighthouse", "teapot", "mountain", "robot", "sailboat", "violin", "dog", "castle"]
_PLACES = [
    "on a beach at sunset",
    "in the snow",
    "next to a window",
    "in a busy street",
    "under a tree",
    "on a wooden table",
    "in the fog",
    "at night, lit by neon signs",
]


@dataclass(frozen=True)
class PhaseResult:
    """One kind of call (text or image) with batching on or off."""

    kind: str
    batching: bool
    requests: int
    seconds: float
    throughput: float  # requests (= items) per second
    p50_ms: float
    p95_ms: float
    forward_passes: int
    mean_batch: float  # items per batch handed to the model
    cpu_seconds: float  # this process's CPU time (server and callers) during the phase
    per_cpu_second: float  # requests per CPU second: less swayed by other load on a shared machine


def caption(n: int, style: str = "caption") -> str:
    """A distinct text for request n: a caption of 6 to 14 words, or ("short") an adjective and a noun.

    The random-weight checkpoints have a byte-level vocabulary: about one token per character, where CLIP's
    own tokenizer needs about one per word. A short text is as many tokens for them as a whole caption is
    for the released model.
    """
    if style == "short":
        return f"{_ADJECTIVES[n % 10]} {_NOUNS[n // 10 % 10]}"
    words = f"a photo of a {_ADJECTIVES[n % 10]} {_NOUNS[n // 10 % 10]}"
    return f"{words} {_PLACES[n // 100 % len(_PLACES)]}" if n % 2 else words


def sample_jpegs(count: int = 8) -> list[bytes]:
    """JPEG photos (scikit-image's samples where installed, else generated ones), 300 to 640 pixels a side."""
    images: list[Image.Image] = []
    try:
        import skimage.data

        folder = Path(skimage.data.__file__).parent
        for name in ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "hubble_deep_field"):
            for path in folder.glob(f"{name}.*"):
                with Image.open(path) as image:
                    images.append(image.convert("RGB"))
    except ImportError:
        pass
    rng = np.random.default_rng(0)
    while len(images) < count:
        small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)  # smooth, photo-like when upscaled
        images.append(Image.fromarray(small).resize((640, 480), Image.Resampling.BICUBIC))
    encoded = []
    for picture in images[:count]:
        buffer = io.BytesIO()
        picture.save(buffer, "JPEG", quality=90)
        encoded.append(buffer.getvalue())
    return encoded


def percentile_ms(latencies: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(latencies) * 1000, q)) if latencies else float("nan")


def run_phase(
    embedder: ClipEmbedder,
    base: EmbedderConfig,
    kind: str,
    batching: bool,
    *,
    callers: int,
    seconds: float | None,
    requests: int | None,
    images: list[bytes],
    text_style: str = "caption",
) -> tuple[PhaseResult, list[float]]:
    """Starts a server, lets `callers` threads send single-item calls until the budget is spent, stops it."""
    from embedder_service.server import build_server

    server = build_server(replace(base, dynamic_batching=batching), embedder)
    server.start()
    server.set_serving(True)
    counter = iter(range(10**9))
    counter_lock = threading.Lock()
    latencies: list[list[float]] = [[] for _ in range(callers)]
    window = [0.0, 0.0]  # start, stop: set once every caller is connected and warmed up

    def open_window() -> None:
        window[0] = time.perf_counter()
        window[1] = window[0] + (seconds or 0.0)

    barrier = threading.Barrier(callers + 1, action=open_window)
    errors: list[BaseException] = []

    def next_request() -> int | None:
        with counter_lock:
            n = next(counter)
        if requests is not None:
            return n if n < requests else None
        return n if time.perf_counter() < window[1] else None

    def call(stub: embedder_pb2_grpc.EmbedderStub, n: int) -> None:
        if kind == "text":
            stub.EmbedTexts(pb.EmbedTextsRequest(texts=[caption(n, text_style)]), timeout=600)
        else:
            stub.EmbedImages(pb.EmbedImagesRequest(images=[pb.Image(encoded=images[n % len(images)])]), timeout=600)

    def work(index: int) -> None:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = embedder_pb2_grpc.EmbedderStub(channel)
            call(stub, index)  # connect and warm up outside the measurement
            barrier.wait()
            try:
                while (n := next_request()) is not None:
                    started = time.perf_counter()
                    call(stub, n)
                    latencies[index].append(time.perf_counter() - started)
            except BaseException as error:  # noqa: BLE001 - reported after the phase
                errors.append(error)

    threads = [threading.Thread(target=work, args=(i,), name=f"caller-{i}") for i in range(callers)]
    for thread in threads:
        thread.start()
    try:
        registry = server.registry
        barrier.wait()  # the callers have warmed up: counting starts
        cpu_before = _cpu_time()
        passes_before = registry.get_sample_value("embedder_batch_size_count", {"kind": kind}) or 0.0
        rows_before = registry.get_sample_value("embedder_batch_size_sum", {"kind": kind}) or 0.0
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - window[0]
        cpu = _cpu_time() - cpu_before
        passes = (registry.get_sample_value("embedder_batch_size_count", {"kind": kind}) or 0.0) - passes_before
        rows = (registry.get_sample_value("embedder_batch_size_sum", {"kind": kind}) or 0.0) - rows_before
    finally:
        server.stop(0)
    if errors:
        raise RuntimeError(f"{kind} phase (batching {'on' if batching else 'off'}) failed: {errors[0]!r}")
    flat = [value for caller in latencies for value in caller]
    return summary(kind, batching, flat, elapsed, int(passes), rows, cpu), flat


def model_ceiling(
    embedder: ClipEmbedder, kind: str, batch: int, images: list[bytes], *, items: int, text_style: str, rounds: int = 2
) -> dict[str, float | int | None]:
    """The model alone, without a server: items/s in passes of 1 and of `batch` (taken in turn, `rounds`
    times), and their ratio: the most that merging `batch` concurrent single-item calls can gain here."""
    from embedder_service.preprocess import Preprocessor, decode_image

    if kind == "image":
        prepare = Preprocessor(embedder.preprocess_spec)
        pixels = np.stack([prepare(decode_image(data, 10**9).image) for data in images])
        rows = np.concatenate([pixels] * (batch // len(pixels) + 1))[:batch]

        def run(size: int) -> None:
            embedder.embed_images(rows[:size])
    else:
        texts = [caption(n, text_style) for n in range(batch)]

        def run(size: int) -> None:
            embedder.embed_texts(texts[:size])

    run(batch)  # warm-up: the first pass of a shape allocates what later ones reuse
    seconds = {1: 0.0, batch: 0.0}
    done = {1: 0, batch: 0}
    for _ in range(rounds):
        for size in (1, batch):
            started = time.perf_counter()
            for _ in range(max(1, items // size)):
                run(size)
                done[size] += size
            seconds[size] += time.perf_counter() - started
    single, merged = done[1] / seconds[1], done[batch] / seconds[batch]
    return {
        "batch": batch,
        "items_per_pass_1": round(single, 3),
        "items_per_pass_batch": round(merged, 3),
        "ceiling": ratio(merged, single),
    }


def _cpu_time() -> float:
    times = os.times()
    return times.user + times.system


def summary(
    kind: str, batching: bool, latencies: list[float], seconds: float, passes: int, rows: float, cpu_seconds: float
) -> PhaseResult:
    return PhaseResult(
        kind=kind,
        batching=batching,
        requests=len(latencies),
        seconds=round(seconds, 3),
        throughput=round(len(latencies) / seconds, 3) if seconds else 0.0,
        p50_ms=round(percentile_ms(latencies, 50), 2),
        p95_ms=round(percentile_ms(latencies, 95), 2),
        forward_passes=passes,
        mean_batch=round(rows / passes, 2) if passes else 0.0,
        cpu_seconds=round(cpu_seconds, 3),
        per_cpu_second=round(len(latencies) / cpu_seconds, 3) if cpu_seconds else 0.0,
    )


def pooled(kind: str, batching: bool, rounds: list[tuple[PhaseResult, list[float]]]) -> PhaseResult:
    """The rounds of one kind and mode as one phase: all calls over all the time."""
    latencies = [value for _, values in rounds for value in values]
    passes = sum(result.forward_passes for result, _ in rounds)
    rows = sum(result.forward_passes * result.mean_batch for result, _ in rounds)
    return summary(
        kind,
        batching,
        latencies,
        sum(result.seconds for result, _ in rounds),
        passes,
        rows,
        sum(result.cpu_seconds for result, _ in rounds),
    )


def machine() -> dict[str, object]:
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch_threads": _torch_threads(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.batching",
        description="Throughput and latency of 8 concurrent callers sending one text (then one image) per call "
        "to an in-process embedder over gRPC, with dynamic batching on and off.",
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="CLIP checkpoint directory (default: a tiny random one, written to a temporary "
        "directory; for the real figure: python -m embedder_service.checkpoint DIR "
        "--arch vit-b-16)",
    )
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--seconds", type=float, default=None, help="length of each phase (default 10)")
    budget.add_argument("--requests", type=int, default=None, help="calls per phase, instead of a time")
    parser.add_argument("--callers", type=int, default=8, help="concurrent callers (default 8)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="alternate off and on this many times per kind, pooling the figures (default 1)",
    )
    parser.add_argument("--kinds", default="text,image", help="text, image or both (default text,image)")
    parser.add_argument(
        "--texts",
        choices=("caption", "short"),
        default="caption",
        help="caption: 6 to 14 words; short: adjective and noun, as many tokens for the random "
        "checkpoints' byte-level vocabulary as a caption is for CLIP's (default caption)",
    )
    parser.add_argument(
        "--dtype",
        choices=("auto", "fp32", "bf16", "int8"),
        default="auto",
        help="model precision (default auto: bf16 where the CPU computes it natively)",
    )
    parser.add_argument(
        "--runtime",
        choices=("auto", "torch", "openvino", "onnxruntime"),
        default="auto",
        help="EMBEDDER_RUNTIME (default auto, as the embedder runs)",
    )
    parser.add_argument(
        "--max-wait-ms",
        type=float,
        default=EmbedderConfig.batch_max_wait_ms,
        help=f"batching's longest wait (default {EmbedderConfig.batch_max_wait_ms:g})",
    )
    parser.add_argument(
        "--max-batch",
        type=int,
        default=EmbedderConfig.batch_max_size,
        help=f"most items per merged pass (default {EmbedderConfig.batch_max_size})",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON to this file")
    args = parser.parse_args(argv)
    # As the server does; only effective before torch is imported (not when another benchmark ran first).
    omp_policy_applied = prefer_sleeping_openmp_threads()
    seconds = None if args.requests is not None else (args.seconds or 10.0)
    kinds = [kind.strip() for kind in args.kinds.split(",") if kind.strip()]
    if not kinds or set(kinds) - {"text", "image"}:
        parser.error("--kinds takes text, image or text,image")

    with tempfile.TemporaryDirectory(prefix="clipsearch-bench-") as scratch:
        checkpoint = args.checkpoint
        if checkpoint is None:
            from embedder_service.checkpoint import write_checkpoint

            checkpoint = write_checkpoint(Path(scratch) / "tiny", arch="tiny")
        embedder = ClipEmbedder(str(checkpoint), dtype=args.dtype, device="cpu", runtime=args.runtime)
        info = embedder.load()
        base = EmbedderConfig(
            host="127.0.0.1",
            port=0,
            model=str(checkpoint),
            dtype=args.dtype,
            runtime=args.runtime,
            device="cpu",
            workers=max(16, args.callers * 2),
            batch_max_wait_ms=args.max_wait_ms,
            batch_max_size=args.max_batch,
        )
        images = sample_jpegs()
        load_before = os.getloadavg()
        print(
            f"model {checkpoint} ({info.dtype}, {info.image_size}px, {info.dimension}-d); {args.callers} callers; "
            f"{f'{seconds:g}s' if seconds else f'{args.requests} calls'} per phase; "
            f"load average {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}",
            file=sys.stderr,
        )
        results: list[PhaseResult] = []
        round_ratios: dict[str, list[float | None]] = {}
        ceilings: dict[str, dict[str, float | int | None]] = {}
        for kind in kinds:
            phases: dict[bool, list[tuple[PhaseResult, list[float]]]] = {False: [], True: []}
            for _ in range(args.rounds):
                for batching in (False, True):
                    result, latencies = run_phase(
                        embedder,
                        base,
                        kind,
                        batching,
                        callers=args.callers,
                        seconds=seconds,
                        requests=args.requests,
                        images=images,
                        text_style=args.texts,
                    )
                    phases[batching].append((result, latencies))
                    print(
                        f"  {kind:5} batching {'on ' if batching else 'off'}: {result.throughput:8.2f}/s  "
                        f"p50 {result.p50_ms:8.1f} ms  p95 {result.p95_ms:8.1f} ms  "
                        f"mean batch {result.mean_batch:5.2f}  ({result.requests} calls)",
                        file=sys.stderr,
                    )
            results += [pooled(kind, batching, phases[batching]) for batching in (False, True)]
            measured = sum(r.requests for r, _ in phases[False]) // max(1, args.rounds)
            ceilings[kind] = model_ceiling(
                embedder, kind, args.callers, images, items=min(max(args.callers, measured), 512), text_style=args.texts
            )
            print(
                f"  {kind:5} model alone: {ceilings[kind]['items_per_pass_1']:.2f}/s in passes of 1, "
                f"{ceilings[kind]['items_per_pass_batch']:.2f}/s in passes of {args.callers} "
                f"= {ceilings[kind]['ceiling']}x",
                file=sys.stderr,
            )
            round_ratios[kind] = [
                ratio(on.throughput, off.throughput)
                for (off, _), (on, _) in zip(phases[False], phases[True], strict=True)
            ]
        load_after = os.getloadavg()

    ratios, cpu_ratios = {}, {}
    for kind in kinds:
        off, on = (next(r for r in results if r.kind == kind and r.batching is b) for b in (False, True))
        ratios[kind] = ratio(on.throughput, off.throughput)
        cpu_ratios[kind] = ratio(on.per_cpu_second, off.per_cpu_second)
    print(_table(results, ratios, round_ratios, cpu_ratios, ceilings))
    print(f"load average before {_load(load_before)}, after {_load(load_after)}")
    report = {
        "benchmark": "dynamic_batching",
        "checkpoint": str(args.checkpoint or "tiny (temporary)"),
        "model": {
            "dtype": info.dtype,
            "runtime": info.runtime,
            "image_size": info.image_size,
            "dimension": info.dimension,
        },
        "callers": args.callers,
        "rounds": args.rounds,
        "seconds_per_phase": seconds,
        "requests_per_phase": args.requests,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "omp_wait_policy_applied": omp_policy_applied,
        "max_wait_ms": args.max_wait_ms,
        "max_batch": args.max_batch,
        "texts": args.texts,
        "machine": machine(),
        "load_average_before": list(load_before),
        "load_average_after": list(load_after),
        "results": [asdict(result) for result in results],
        "throughput_ratio_on_vs_off": ratios,
        "throughput_ratio_on_vs_off_per_round": round_ratios,
        "per_cpu_second_ratio_on_vs_off": cpu_ratios,
        # The model alone in passes of 1 and of `callers` items: what merging can gain at most on this machine.
        "model_alone": ceilings,
    }
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


def ratio(on: float, off: float) -> float | None:
    return round(on / off, 3) if off else None


def _load(load: tuple[float, float, float]) -> str:
    return " ".join(f"{value:.2f}" for value in load)


def _table(
    results: list[PhaseResult],
    ratios: dict[str, float | None],
    round_ratios: dict[str, list[float | None]],
    cpu_ratios: dict[str, float | None],
    ceilings: dict[str, dict[str, float | int | None]],
) -> str:
    header = (
        f"{'kind':6} {'batching':8} {'calls/s':>9} {'p50 ms':>9} {'p95 ms':>9} {'mean batch':>10} "
        f"{'calls':>6} {'calls/cpu-s':>11}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(
            f"{r.kind:6} {'on' if r.batching else 'off':8} {r.throughput:9.2f} {r.p50_ms:9.1f} "
            f"{r.p95_ms:9.1f} {r.mean_batch:10.2f} {r.requests:6d} {r.per_cpu_second:11.2f}"
        )
    for kind, pooled_ratio in ratios.items():
        if pooled_ratio is None:
            lines.append(f"{kind}: no ratio (no calls with batching off)")
            continue
        line = f"{kind}: batching on / off throughput = {pooled_ratio:.2f}x"
        if len(round_ratios[kind]) > 1:
            line += " (rounds: " + ", ".join(f"{value:.2f}x" if value else "-" for value in round_ratios[kind]) + ")"
        if cpu_ratios[kind] is not None:
            line += f"; per CPU second {cpu_ratios[kind]:.2f}x"
        if kind in ceilings:
            line += f"; model alone, passes of {ceilings[kind]['batch']} / passes of 1: {ceilings[kind]['ceiling']}x"
        lines.append(line)
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
