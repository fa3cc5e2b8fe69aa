"""The benchmark suite in one command: python -m bench [--quick | --smoke] [--json OUT] [--model DIR]."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import common, film_media, media
from bench.common import FULL, QUICK, SMOKE, Sizes, Target

if TYPE_CHECKING:
    from bench.ingest import IngestVariant

PARTS = ("ingest", "video", "film", "query", "batching", "load")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Ingest, query, memory, video and dynamic-batching benchmarks against baselines measured in "
        "the same run; prints a table and writes JSON. The full run uses the ViT-B/16 architecture "
        "(random weights, the real model's compute) and takes 10-20 minutes on 2 cores.",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--quick", action="store_true", help="small counts and the tiny checkpoint (unless --model): a few minutes"
    )
    size.add_argument(
        "--smoke",
        action="store_true",
        help="tiny counts and the tiny checkpoint (unless --model): checks that every part runs and reports; "
        "the figures mean little",
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write every figure as JSON to OUT")
    parser.add_argument(
        "--model",
        type=Path,
        metavar="DIR",
        help="CLIP checkpoint directory (default: a random-weight one written once into the "
        "cache: ViT-B/16 for the full run, tiny for --quick)",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=common.DEFAULT_CACHE,
        metavar="DIR",
        help="where generated checkpoints and media are kept between runs (default bench/.cache)",
    )
    parser.add_argument(
        "--embedder-threads",
        type=int,
        default=0,
        metavar="N",
        help="torch threads of the embedder and of the in-process baselines (default: all cores)",
    )
    parser.add_argument("--skip", action="append", default=[], choices=PARTS, help="leave a part out (repeatable)")
    parser.add_argument("--only", choices=PARTS, help="run this part alone (the others are skipped)")
    return parser


def main(argv: Sequence[str] | None = None, sizes: Sizes | None = None) -> int:
    args = build_parser().parse_args(argv)
    sizes = sizes or (SMOKE if args.smoke else QUICK if args.quick else FULL)
    threads = args.embedder_threads or len(os.sched_getaffinity(0))
    skip = set(PARTS) - {args.only} if args.only else set(args.skip)
    run_id = uuid.uuid4().hex[:8]
    started = time.perf_counter()
    results: dict[str, Any] = {
        "suite": sizes.name,
        "sizes": asdict(sizes),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": common.machine(),
        "load_average": {"start": common.load_average()},
    }
    say(f"clipsearch benchmarks ({sizes.name}); load average {fmt_load(results['load_average']['start'])}")

    cache = common.cache_dir(args.cache)
    model = (
        args.model.resolve() if args.model else step(f"checkpoint {sizes.arch}", common.checkpoint, cache, sizes.arch)
    )
    png = step(f"{sizes.png_frames} PNG frames", media.png_frames, cache, sizes.png_frames, sizes.frame_size)
    jpeg = step(f"{sizes.jpeg_photos} JPEG photos", media.jpeg_photos, cache, sizes.jpeg_photos, sizes.photo_size)
    video = (
        None
        if "video" in skip
        else step(
            f"{sizes.video_seconds}s video", media.video, cache, sizes.video_seconds, sizes.video_fps, sizes.video_size
        )
    )

    film = (
        None
        if "film" in skip
        else step(f"{sizes.film_seconds}s film", film_media.film, cache, sizes.film_seconds, sizes.film_size)
    )

    import torch

    from bench import goals
    from bench.ingest import IngestVariant
    from embedder_service.inference import cpu_flags

    torch.set_num_threads(threads)  # the seed loop's
    row = goals.goal_row()
    # The model alone, in this process, on the runtime and precision each embedder under test runs.
    models = {variant.name: load_model(model, variant, threads) for variant in (goals.AUTO, goals.INT8)}
    embedder = models["auto"]
    info = embedder.info
    results["model"] = {
        "checkpoint": str(model),
        "dtype": info.dtype,
        "dtype_setting": "auto",
        "runtime": info.runtime,
        "image_size": info.image_size,
        "dimension": info.dimension,
        "int8_runtime": models["int8"].info.runtime,
    }
    results["goals"] = {"cpu": row.cpu, "flags": sorted(goals.FAST_FLAGS & cpu_flags()), **asdict(row)}
    results["settings"] = {
        "embedder_threads": threads,
        "decode_workers": decode_workers(),
        "services": "separate processes (Redis, python -m embedder_service for each of auto, int8 and torch, "
        "python -m search_service), client as `python -m client index`",
    }
    say(
        f"model {model} (auto: {info.runtime} {info.dtype}; int8: {models['int8'].info.runtime}), "
        f"{info.image_size}px, {info.dimension}-d, {threads} threads; goals of the {row.cpu} row"
    )

    with tempfile.TemporaryDirectory(prefix="clipsearch-bench-") as scratch:
        workdir = Path(scratch)
        if not skip >= {"ingest", "video", "film", "query"}:
            services = step("services", common.start_services, workdir, model, threads)
            try:
                others = {
                    variant.name: step(
                        f"{variant.name} embedder", goals.variant_embedder, variant, model, workdir, threads
                    )
                    for variant in (goals.INT8, goals.TORCH)
                }
                services.extra_embedders.extend(others.values())
                pids = {"auto": services.stack.embedders[0].pid} | {name: e.pid for name, e in others.items()}
                addresses = {"auto": services.embedder} | {name: e.address for name, e in others.items()}
                results["memory"] = {"embedder_rss_bytes_loaded": services.embedder_rss()}
                for address in addresses.values():
                    warm_up(address, services.search)
                results["memory"]["embedder_rss_bytes_warm"] = services.embedder_rss()
                if "ingest" not in skip:
                    variants = [
                        IngestVariant(name, addresses[name], models[name]) for name in (goals.INT8.name, "auto")
                    ]
                    results["ingest"] = step(
                        "ingest", ingest_part, services, variants, model, png, jpeg, sizes, run_id, cache
                    )
                if video is not None:
                    from bench import video as video_bench

                    results["video"] = step("video", video_bench.run, services, video, run_id)
                if film is not None:
                    from bench import film as film_bench

                    results["film"] = step(
                        "film", film_bench.run, services, film, run_id, info.image_size, sizes.film_rounds
                    )
                results["memory"].update(embedder_memory(pids["auto"]))
                results["memory"]["per_embedder"] = {name: embedder_memory(pid) for name, pid in pids.items()}
                if "query" not in skip:
                    from bench import query

                    results["query"] = step(
                        "queries",
                        query.run,
                        services,
                        embedder,
                        sizes.query_items,
                        sizes.queries,
                        sizes.text_queries,
                        addresses["torch"],
                    )
                    results["memory"]["redis_bytes_per_item"] = {
                        items: figures["redis_bytes_per_item"] for items, figures in results["query"].items()
                    }
            finally:
                services.stop()
        del embedder, models
        if "batching" not in skip:
            results["batching"] = step("dynamic batching", batching_part, model, sizes, workdir)
        if "load" not in skip:
            results["load"] = step("load", load_part, model, sizes, workdir)

    results["load_average"]["end"] = common.load_average()
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["targets"] = [target.to_json() for target in targets(results)]
    # The goals were set for ViT-B/16: next to a smaller model, decoding and RPCs weigh far more.
    results["targets_apply"] = (info.image_size, info.dimension) == (224, 512)
    print(table(results))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        say(f"wrote {args.json}")
    return 0


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def fmt_load(load: Sequence[float]) -> str:
    return " ".join(f"{value:.2f}" for value in load)


def step(name: str, function: Callable[..., Any], *args: Any) -> Any:
    say(f"- {name} ...")
    started = time.perf_counter()
    result = function(*args)
    say(f"  {name}: {time.perf_counter() - started:.1f} s (load average {fmt_load(common.load_average())})")
    return result


def decode_workers() -> int:
    """The client's decode and shrink threads, as `clipsearch index` picks them by default."""
    from client.ingest.engine import IngestOptions
    from client.ingest.engine import decode_workers as default_workers

    return IngestOptions().prepare_workers or default_workers()


def load_model(model: Path, variant: Any, threads: int) -> Any:
    """The checkpoint in this process as the embedder runs it for `variant` (converted models are cached)."""
    from embedder_service.model import ClipEmbedder

    embedder = ClipEmbedder(str(model), dtype=variant.dtype, device="cpu", threads=threads, runtime=variant.runtime)
    embedder.load()
    return embedder


def warm_up(embedder: str, search: str) -> None:
    """One text and one image through an embedder: its first passes allocate what later ones reuse."""
    from PIL import Image

    from client.api import Client

    buffer = io.BytesIO()
    Image.new("RGB", (320, 240), (200, 120, 40)).save(buffer, "PNG")
    with Client(embedder, search, timeout=600) as client:
        client.embed_texts(["a photo of a cat"])
        client.embed_image(buffer.getvalue())


def ingest_part(
    services: common.Services,
    variants: list[IngestVariant],
    model: Path,
    png: Path,
    jpeg: Path,
    sizes: Sizes,
    run_id: str,
    cache: Path,
) -> dict[str, Any]:
    from bench import ingest

    # The first half of each folder's files, for clipsearch index's marginal rate.
    halves = {
        "png": media.png_frames(cache, max(1, sizes.png_frames // 2), sizes.frame_size),
        "jpeg": media.jpeg_photos(cache, max(1, sizes.jpeg_photos // 2), sizes.photo_size),
    }
    return ingest.run(
        services,
        variants,
        model,
        png,
        jpeg,
        halves,
        rounds=sizes.ingest_rounds,
        model_images=sizes.model_only_images,
        seed_png_files=sizes.seed_png_frames,
        run_id=run_id,
    )


def embedder_memory(pid: int) -> dict[str, int]:
    """An embedder's resident memory now and at its peak (after ingest: weights and activations)."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    fields = {
        line.split(":")[0]: int(line.split()[1]) * 1024 for line in status if line.startswith(("VmRSS:", "VmHWM:"))
    }
    return {"embedder_rss_bytes": fields["VmRSS"], "embedder_peak_rss_bytes": fields["VmHWM"]}


def batching_part(model: Path, sizes: Sizes, workdir: Path) -> dict[str, Any]:
    """bench.batching's run (8 concurrent callers, batching on vs off), its JSON kept whole."""
    from bench import batching

    out = workdir / "batching.json"
    argv = ["--checkpoint", str(model), "--json", str(out)]
    argv += (
        ["--requests", str(sizes.batching_requests)]
        if sizes.batching_requests
        else ["--seconds", str(sizes.batching_seconds or 10.0)]
    )
    with contextlib.redirect_stdout(io.StringIO()):
        batching.main(argv)
    figures: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return figures


def load_part(model: Path, sizes: Sizes, workdir: Path) -> dict[str, Any]:
    """bench.load's run (client threads mixing text and image queries and upserts), its JSON kept whole."""
    if importlib.util.find_spec("bench.load") is None:
        return {"skipped": "bench/load.py is not in this checkout"}
    from bench import load

    out = workdir / "load.json"
    with contextlib.redirect_stdout(io.StringIO()):
        code = load.main(
            [
                "--model",
                str(model),
                "--duration",
                f"{sizes.load_seconds:g}",
                "--warmup",
                f"{sizes.load_warmup:g}",
                "--clients",
                str(sizes.load_clients),
                "--json",
                str(out),
            ]
        )
    return {**json.loads(out.read_text(encoding="utf-8")), "exit_code": code}


def targets(results: dict[str, Any]) -> list[Target]:
    from bench import goals

    row = goals.GoalRow(**{key: results["goals"][key] for key in ("cpu", "int8_vs_seed", "auto_vs_seed")})
    found = goals.ingest_targets(results.get("ingest", {}), row)
    found += goals.text_query_target(results.get("query", {}))
    if results.get("film"):
        from bench.film import target as film_target

        found.append(film_target(results["film"]))
    for items, figures in results.get("query", {}).items():
        found.append(
            Target(
                f"query {items}: gRPC search p50 / direct FT.SEARCH p50",
                figures["grpc_vs_direct_p50"],
                1.5,
                upper_bound=True,
            )
        )
        found.append(
            Target(
                f"query {items}: text via client p50 / in-process + FT.SEARCH p50",
                figures["text_client_vs_inprocess_p50"],
                1.3,
                upper_bound=True,
            )
        )
        found.append(Target(f"query {items}: recall@10 vs brute force", figures["recall_at_10"], 0.98, unit=""))
    ratios = results.get("batching", {}).get("throughput_ratio_on_vs_off", {})
    for kind, goal in (("text", 2.0), ("image", 1.3)):
        if kind in ratios:
            found.append(Target(f"batching {kind}: 8 callers, on / off throughput", ratios[kind], goal))
    return found


def table(results: dict[str, Any]) -> str:
    rows: list[tuple[str, str]] = []

    def add(name: str, value: Any, unit: str = "") -> None:
        if value is None:
            text = "-"
        elif isinstance(value, float):
            text = f"{value:,.3f}".rstrip("0").rstrip(".") if abs(value) < 100 else f"{value:,.1f}"
        else:
            text = f"{value:,}" if isinstance(value, int) else str(value)
        rows.append((name, f"{text} {unit}".strip()))

    model = results.get("model", {})
    add(
        "model; auto runs on / int8 runs on",
        f"{Path(model.get('checkpoint', '?')).name}; {model.get('runtime')} {model.get('dtype')} / "
        f"{model.get('int8_runtime')} int8",
    )
    goals = results.get("goals", {})
    add(
        "goals: CPU row (flags)",
        f"{goals.get('cpu')} ({' '.join(goals.get('flags', [])) or 'none of them'}): int8 / seed >= "
        f"{goals.get('int8_vs_seed')}x, auto / seed >= {goals.get('auto_vs_seed')}x, index / model alone >= "
        f"{goals.get('index_vs_model')}",
    )
    add(
        "embedder threads / client decode workers",
        f"{results['settings']['embedder_threads']} / {results['settings']['decode_workers']}",
    )
    ingest = results.get("ingest")
    if ingest:
        from bench.goals import ingest_rows

        ingest_rows(ingest, add)
    memory = results.get("memory", {})
    if "embedder_rss_bytes" in memory:
        add(
            "embedder RSS: started / after a first call / after ingest and video / peak",
            " / ".join(
                f"{memory[key] / 2**20:,.0f}"
                for key in (
                    "embedder_rss_bytes_loaded",
                    "embedder_rss_bytes_warm",
                    "embedder_rss_bytes",
                    "embedder_peak_rss_bytes",
                )
            )
            + " MiB",
        )
    for name, figures in memory.get("per_embedder", {}).items():
        add(
            f"embedder RSS, {name}: after ingest and video / peak",
            f"{figures['embedder_rss_bytes'] / 2**20:,.0f} / {figures['embedder_peak_rss_bytes'] / 2**20:,.0f} MiB",
        )
    video = results.get("video")
    if video:
        add(
            f"video {video['video']['width']}x{video['video']['height']} {video['video']['codec']} "
            f"{video['video']['seconds']:g}s @1fps: in-stream / seed (PNG files)",
            f"{video['instream_frames_s']} / {video['seed_frames_s']} frames/s = {video['instream_vs_seed']}x",
        )
        add(
            "video: CPU ms per frame, in-stream / seed",
            f"{video['instream_cpu_ms_per_frame']} / {video['seed_cpu_ms_per_frame']}",
        )
    if results.get("film"):
        from bench.film import rows as film_rows

        film_rows(results["film"], add)
    for items, q in results.get("query", {}).items():
        add(
            f"query {items}: gRPC / direct FT.SEARCH p50 (empty gRPC call p50)",
            f"{q['grpc_p50_ms']} / {q['direct_p50_ms']} ms ({q['grpc_empty_call_p50_ms']} ms)",
        )
        add(
            f"query {items}: text via client / in-process p50",
            f"{q['text_client_p50_ms']} / {q['text_inprocess_p50_ms']} ms",
        )
        if "text_torch_p50_ms" in q:
            add(
                f"query {items}: text end to end p50, torch / auto embedder (text tower alone, torch / auto)",
                f"{q['text_torch_p50_ms']} / {q['text_client_p50_ms']} ms ({q['text_model_torch_p50_ms']} / "
                f"{q['text_model_auto_p50_ms']} ms)",
            )
        add(f"query {items}: Redis bytes per item", q["redis_bytes_per_item"], "B")
    batching = results.get("batching", {})
    for phase in batching.get("results", []):
        add(
            f"batching {phase['kind']} {'on' if phase['batching'] else 'off'}: calls/s, p50, p95",
            f"{phase['throughput']} /s, {phase['p50_ms']} ms, {phase['p95_ms']} ms",
        )
    for kind, alone in batching.get("model_alone", {}).items():
        add(
            f"batching {kind}: model alone, items/s in passes of 1 / of {alone['batch']} (ceiling of on / off)",
            f"{alone['items_per_pass_1']} / {alone['items_per_pass_batch']} /s = {alone['ceiling']}x",
        )
    load = results.get("load", {})
    if "skipped" in load:
        add("load benchmark", f"skipped: {load['skipped']}")
    elif "total" in load:
        total = load["total"]
        add(
            f"load: {load['config']['clients']} clients mixing text/image/upsert: ops/s, p50, p99, errors",
            f"{total['per_second']:.1f} /s, {total['p50_ms']:.1f} ms, {total['p99_ms']:.1f} ms, {total['errors']}",
        )
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    lines.append("")
    target_rows = results.get("targets", [])
    if target_rows and not results.get("targets_apply", True):
        lines.append("(not a ViT-B/16-sized model: the goals below were set for ViT-B/16; shown for reference)")
    if target_rows:
        name_width = max(len(t["name"]) for t in target_rows)
        lines.append(f"{'target':<{name_width}}  {'value':>8}  {'goal':>8}  result")
        for t in target_rows:
            status = {True: "met", False: "MISSED", None: "-"}[t["met"]]
            margin = f" ({t['margin']:+.0%})" if t["margin"] is not None else ""
            value = f"{t['value']:.3f}" if t["value"] is not None else "-"
            note = f"; {t['note']}" if t["note"] and t["met"] is False else ""
            lines.append(
                f"{t['name']:<{name_width}}  {value:>8}  {t['comparison']}{t['goal']:<7}  {status}{margin}{note}"
            )
    lines.append(
        f"load average: start {fmt_load(results['load_average']['start'])}, "
        f"end {fmt_load(results['load_average']['end'])}; {results['machine']['cpu']}, "
        f"{results['machine']['cores']} cores; {results['seconds']} s"
    )
    return "\n".join(lines)
