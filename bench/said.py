"""What is said: the cost of reading subtitles in `clipsearch index` of a film, and a said query's p50 over a
library's worth of generated cue lines against a plain vector query over the same service."""

from __future__ import annotations

import argparse
import functools
import json
import os
import tempfile
import time
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import redis

from bench import common
from bench.common import median, percentile_ms, ratio
from clipsearch.v1 import search_pb2 as pb
from clipsearch.v1 import search_pb2_grpc

GOAL_INDEX_SHARE = 0.02  # of the index run's time spent reading and storing subtitles
DIMENSION = 512
LINES_PER_MINUTE = 12.5  # a film's subtitles: about 1500 lines in two hours
FILM_SIZE = (640, 360)
FILM_FPS = 24
CHINESE = "的一是不了人我在有他这中大来上个国到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市眼体别处总才场师书比住员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计或司利受光王果亲界及今京务制解各任至清物台象记边共风战干接它许八特觉望直服毛林题建南度统色字请交爱让认算论百吃义科怎元社术结六功指思非流每青管夫连远资队跟带花快条院变联言权往展该领传近留红治决周保达办运武半候七必城父强步完革深区即求品士转量空甚众技轻程告江语英基派满式李息写呢识极令黄德收脸钱党倒未持取设始版双历越史商千片容研像找友孩站广改议形委早房音火际则首单据导影失拿网香似斯专石若兵弟谁校读志飞观争究包组造落视济喜离虽坏兴破"
VOCABULARY = 20_000
SYLLABLES = [a + b for a in "bdfghklmnprstvwz" for b in ("a", "e", "i", "o", "u", "ai", "ou", "ee")]
WARMUP = 5
CUE_INDEX = "clipsearch-cues:said-bench"  # the cue index of the search service the library is loaded into
UPSERT_BATCH = 1000


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.said",
        description="What is said, each figure beside its baseline from the same run: the seconds `clipsearch "
        "index` spends reading and storing a generated film's subtitles (an embedded SubRip track and a GBK file "
        "beside it) against the run's own time; and a said query's p50 over generated cue lines against a plain "
        "vector query (k=10) over the same search service.",
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write every figure as JSON to OUT")
    parser.add_argument("--model", type=Path, metavar="DIR", help="CLIP checkpoint (default: the tiny random one)")
    parser.add_argument("--cache", type=Path, default=common.DEFAULT_CACHE, metavar="DIR", help="generated media")
    parser.add_argument("--film-seconds", type=int, default=600, metavar="S", help="generated film (default 600)")
    parser.add_argument("--films", type=int, default=1000, metavar="N", help="films of cue lines (default 1000)")
    parser.add_argument("--lines", type=int, default=1500, metavar="N", help="cue lines per film (default 1500)")
    parser.add_argument(
        "--frames", type=int, default=100, metavar="N", help="stored frames per film of the library (default 100)"
    )
    parser.add_argument("--queries", type=int, default=200, metavar="N", help="queries of each kind (default 200)")
    parser.add_argument("--rounds", type=int, default=3, metavar="N", help="query rounds, medians reported")
    parser.add_argument("--skip-index", action="store_true", help="only the query figures")
    return parser


# --- the film -----------------------------------------------------------------------------------------------


def srt_stamp(t: float) -> str:
    ms = round(t * 1000)
    return f"{ms // 3_600_000:02}:{ms // 60_000 % 60:02}:{ms // 1000 % 60:02},{ms % 1000:03}"


def film(cache: Path, seconds: int) -> Path:
    """A film of `seconds` (MPEG-4 video, shots of moving colour) with an English SubRip track inside and a
    Chinese GBK film.zh.srt beside it, LINES_PER_MINUTE lines each. Made once into the cache."""
    import av

    folder = cache / "media" / f"said-film-{seconds}s"
    path = folder / "film.mkv"
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    count = int(seconds / 60 * LINES_PER_MINUTE)
    times = sorted(rng.uniform(0, seconds - 3, count))
    english = [(t, t + 2.5, sentence(rng)) for t in times]
    chinese = [(t, t + 2.5, chinese_line(rng)) for t in times]
    width, height = FILM_SIZE
    partial = folder / ".film.partial.mkv"
    with av.open(str(partial), "w", format="matroska") as out:
        video = out.add_stream("mpeg4", rate=FILM_FPS)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        subs = out.add_stream("subrip")
        subs.codec_context.subtitle_header = b"[Script Info]\nScriptType: v4.00+\n"
        subs.time_base = Fraction(1, 1000)
        subs.metadata["language"] = "eng"
        colour = rng.integers(0, 256, 3)
        for n in range(seconds * FILM_FPS):
            if n % (FILM_FPS * 5) == 0:
                colour = rng.integers(0, 256, 3)
            frame = np.empty((height, width, 3), np.uint8)
            frame[:] = colour
            x = (n * 4) % (width - 40)
            frame[100:140, x : x + 40] = 255 - colour
            for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        for start, end, text in english:
            packet = av.Packet(text.encode())
            packet.stream, packet.time_base = subs, subs.time_base
            packet.pts = packet.dts = round(start * 1000)
            packet.duration = round((end - start) * 1000)
            out.mux(packet)
    body = "".join(f"{i}\n{srt_stamp(a)} --> {srt_stamp(b)}\n{t}\n\n" for i, (a, b, t) in enumerate(chinese, 1))
    (folder / "film.zh.srt").write_bytes(body.encode("gbk"))
    partial.rename(path)
    return path


def index_figures(services: common.Services, path: Path) -> dict[str, Any]:
    report, _ = common.clipsearch_index(services, [path], "said-film")
    seconds = report["seconds"]
    return {
        "frames": report["frames"],
        "index_seconds": seconds,
        "subtitle_lines": report["subtitle_lines"],
        "subtitle_tracks": report["subtitle_tracks"],
        "subtitle_seconds": report["subtitle_seconds"],
        "subtitle_share": ratio(report["subtitle_seconds"], seconds),
        "subtitle_problems": report["subtitle_problems"],
    }


# --- the library of cue lines -------------------------------------------------------------------------------


def zipf_cdf(size: int) -> np.ndarray:
    """Zipf's law with exponent 1, as word frequencies in English and character frequencies in Chinese roughly
    follow: the word of rank r is used in proportion to 1/r (the commonest about 10% of the time)."""
    weights = 1.0 / np.arange(1, size + 1, dtype=np.float64)
    cdf: np.ndarray = np.cumsum(weights) / float(weights.sum())
    return cdf


WORD_CDF = zipf_cdf(VOCABULARY)
CHINESE_CDF = zipf_cdf(len(CHINESE))


@functools.cache
def vocabulary_word(rank: int) -> str:
    """The word of a rank (0 the commonest): its digits in base len(SYLLABLES), as syllables; short words are the
    common ones, and no two ranks spell the same word (each syllable starts with its one consonant)."""
    parts = [SYLLABLES[rank % len(SYLLABLES)]]
    rank //= len(SYLLABLES)
    while rank:
        parts.append(SYLLABLES[rank % len(SYLLABLES)])
        rank //= len(SYLLABLES)
    return "".join(parts)


def sentence(rng: np.random.Generator) -> str:
    ranks = np.searchsorted(WORD_CDF, rng.random(int(rng.integers(3, 11))))
    return " ".join(vocabulary_word(int(r)) for r in ranks).capitalize() + "."


def chinese_line(rng: np.random.Generator) -> str:
    ranks = np.searchsorted(CHINESE_CDF, rng.random(int(rng.integers(4, 15))))
    return "".join(CHINESE[int(r)] for r in ranks) + "。"


def load_library(stub: search_pb2_grpc.SearchStub, films: int, lines: int, frames: int) -> tuple[float, list[str]]:
    """Stores `films` films of `lines` cue lines (a tenth of the films Chinese) and `frames` frames each; returns
    the seconds it took and a sample of lines to query for."""
    rng = np.random.default_rng(17)
    started = time.perf_counter()
    sample: list[str] = []
    batch: list[pb.Item] = []
    for f in range(films):
        content_hash = f"{f:064x}"
        zh = f % 10 == 9
        length = lines * 4.8  # seconds: a line every 4.8 s
        cues = [
            pb.Cue(start_seconds=i * 4.8, end_seconds=i * 4.8 + 3, text=chinese_line(rng) if zh else sentence(rng))
            for i in range(lines)
        ]
        sample += [c.text for c in cues[:: max(1, lines // 3)]]
        track = pb.CueTrack(name="film.srt", language="zh" if zh else "en", cues=cues)
        stub.CueWrite(pb.CueWriteRequest(collection="library", content_hash=content_hash, tracks=[track]), timeout=600)
        for n in range(frames):
            batch.append(
                pb.Item(
                    id=f"f{f}-{n}",
                    vector=rng.standard_normal(DIMENSION).astype(np.float32).tolist(),
                    metadata=pb.Metadata(
                        sources=[f"file:///bench/film-{f}.mkv"],
                        media_type=pb.MEDIA_TYPE_VIDEO_FRAME,
                        collection="library",
                        content_hash=content_hash,
                        timestamp_seconds=n * length / frames,
                        frame_interval_seconds=1.0,
                    ),
                )
            )
            if len(batch) >= UPSERT_BATCH:
                stub.Upsert(pb.UpsertRequest(items=batch), timeout=600)
                batch = []
    if batch:
        stub.Upsert(pb.UpsertRequest(items=batch), timeout=600)
    while stub.Stats(pb.StatsRequest()).indexing:
        time.sleep(0.5)
    return time.perf_counter() - started, sample


def said_queries(rng: np.random.Generator, sample: Sequence[str], count: int) -> list[str]:
    """Two or three consecutive words (or, in Chinese lines, characters) of stored lines; a third as phrases."""
    queries = []
    for n in range(count):
        line = sample[int(rng.integers(0, len(sample)))].rstrip(".。")
        if " " in line:
            words = line.lower().split()
            at = int(rng.integers(0, max(1, len(words) - 2)))
            text = " ".join(words[at : at + int(rng.integers(2, 4))])
        else:
            at = int(rng.integers(0, max(1, len(line) - 2)))
            text = line[at : at + 2]
        queries.append(f'"{text}"' if n % 3 == 0 else text)
    return queries


def query_round(
    stub: search_pb2_grpc.SearchStub, r: redis.Redis, said: Sequence[str], vectors: Sequence[list[float]]
) -> dict[str, Any]:
    """p50 of a said query (k=10) against a plain vector query (k=10), interleaved so both meet the same load,
    and beside them the ceiling: the full-text search alone that the said query sends Redis first (its first
    window of 100 cues, ranked by BM25), timed on the same Redis."""
    times: dict[str, list[float]] = {"said": [], "vector": [], "redis": []}
    found = 0
    for n, (text, vector) in enumerate(zip(said, vectors, strict=True)):
        started = time.perf_counter()
        response = stub.Query(pb.QueryRequest(said=text, k=10), timeout=60)
        said_seconds = time.perf_counter() - started
        started = time.perf_counter()
        stub.Query(pb.QueryRequest(vector=vector, k=10), timeout=60)
        vector_seconds = time.perf_counter() - started
        started = time.perf_counter()
        r.execute_command(
            *("FT.SEARCH", CUE_INDEX, f"@text:({response.said_query})", "WITHSCORES", "SCORER", "BM25"),
            *("RETURN", "3", "start", "end", "line", "LIMIT", "0", "100", "DIALECT", "2"),
        )
        redis_seconds = time.perf_counter() - started
        if n >= WARMUP:
            times["said"].append(said_seconds)
            times["vector"].append(vector_seconds)
            times["redis"].append(redis_seconds)
            found += bool(response.matches)
    said_p50, vector_p50 = percentile_ms(times["said"], 50), percentile_ms(times["vector"], 50)
    redis_p50 = percentile_ms(times["redis"], 50)
    return {
        "said_p50_ms": said_p50,
        "said_p95_ms": percentile_ms(times["said"], 95),
        "vector_p50_ms": vector_p50,
        "vector_p95_ms": percentile_ms(times["vector"], 95),
        "said_vs_vector": ratio(said_p50, vector_p50),
        "redis_full_text_p50_ms": redis_p50,
        "redis_full_text_p95_ms": percentile_ms(times["redis"], 95),
        "ceiling_vs_vector": ratio(redis_p50, vector_p50),
        "said_found": found,
        "queries": len(times["said"]),
    }


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    cache = common.cache_dir(args.cache)
    model = args.model or common.checkpoint(cache, "tiny")
    results: dict[str, Any] = {"model": str(model)}
    services = common.start_services(workdir / "services", model, embedder_threads=max(1, (os.cpu_count() or 2) // 2))
    try:
        if not args.skip_index:
            results["index"] = {
                "film_seconds": args.film_seconds,
                **index_figures(services, film(cache, args.film_seconds)),
            }
        search = services.search_service("said-bench", DIMENSION)
        rng = np.random.default_rng(5)
        with (
            grpc.insecure_channel(search.address, options=[("grpc.max_send_message_length", 64 << 20)]) as channel,
            redis.Redis.from_url(services.redis_url) as r,
        ):
            stub = search_pb2_grpc.SearchStub(channel)
            load_seconds, sample = load_library(stub, args.films, args.lines, args.frames)
            said = said_queries(rng, sample, args.queries + WARMUP)
            vectors = [rng.standard_normal(DIMENSION).astype(np.float32).tolist() for _ in said]
            rounds = [query_round(stub, r, said, vectors) for _ in range(args.rounds)]
            items = stub.Stats(pb.StatsRequest()).items
    finally:
        services.stop()
    figures: dict[str, Any] = {key: median([r[key] for r in rounds]) for key in rounds[0]}
    results["query"] = {
        "cue_lines": args.films * args.lines,
        "frames": items,
        "load_seconds": round(load_seconds, 1),
        **figures,
        "rounds": [r["said_vs_vector"] for r in rounds],
    }
    results["load_average"] = common.load_average()
    return results


def table(results: dict[str, Any]) -> str:
    rows = [("figure", "value", "baseline (same run)", "ratio", "goal")]
    if "index" in results:
        i = results["index"]
        share = i["subtitle_share"]
        rows.append(
            (
                f"clipsearch index of a {i['film_seconds']} s film: {i['subtitle_lines']} lines, {i['subtitle_tracks']} tracks",
                f"{i['subtitle_seconds']} s reading subtitles",
                f"{i['index_seconds']} s index run ({i['frames']} frames)",
                f"{share}",
                f"<= {GOAL_INDEX_SHARE} {'met' if share is not None and share <= GOAL_INDEX_SHARE else 'NOT met'}",
            )
        )
    q = results["query"]
    rows.append(
        (
            f"query p50, k=10, {q['cue_lines']} cue lines and {q['frames']} frames (median of {len(q['rounds'])} rounds)",
            f"said {q['said_p50_ms']} ms (p95 {q['said_p95_ms']})",
            f"vector {q['vector_p50_ms']} ms (p95 {q['vector_p95_ms']})",
            f"{q['said_vs_vector']}x",
            f"{q['said_found']} of {q['queries']} said queries found their line",
        )
    )
    rows.append(
        (
            "ceiling: the full-text search alone in Redis (first window of 100 cues, BM25)",
            f"{q['redis_full_text_p50_ms']} ms (p95 {q['redis_full_text_p95_ms']})",
            f"vector {q['vector_p50_ms']} ms",
            f"{q['ceiling_vs_vector']}x",
            "",
        )
    )
    rows.append(("load average (1, 5, 15 min)", " ".join(f"{v:.2f}" for v in results["load_average"]), "", "", ""))
    widths = [max(len(str(row[i])) for row in rows) for i in range(5)]
    return "\n".join("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="clipsearch-bench-said-") as scratch:
        results = run(args, Path(scratch))
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
