"""Scale: a 40-minute video indexes completely through `clipsearch index`, in bounded client memory."""

from __future__ import annotations

from pathlib import Path

from tests.support.e2e import ServeProcess, fully_indexed_stats, run_cli, write_test_video

FPS, WIDTH, HEIGHT = 2, 96, 64
LONG_SECONDS = 40 * 60
SHORT_SECONDS = 60
MiB = 1024 * 1024
# The CLI process's peak resident memory: an absolute ceiling, and the most the 40-minute video may add
# over a 1-minute one (holding every decoded frame would add about 2400 * 96 * 64 * 3 bytes = 42 MiB
# before any per-frame overhead).
PEAK_RSS_LIMIT = 256 * MiB
PEAK_RSS_GROWTH_LIMIT = 32 * MiB


def test_a_forty_minute_video_indexes_completely_in_bounded_memory(serve_stack: ServeProcess, tmp_path: Path) -> None:
    short, long = tmp_path / "one-minute.mp4", tmp_path / "forty-minutes.mp4"
    write_test_video(short, SHORT_SECONDS, FPS, WIDTH, HEIGHT)
    assert write_test_video(long, LONG_SECONDS, FPS, WIDTH, HEIGHT) == LONG_SECONDS * FPS
    env = serve_stack.client_env()

    baseline = run_cli(["index", str(short), "--collection", "scale-baseline", "--json"], env, tmp=tmp_path)
    result = run_cli(["index", str(long), "--collection", "scale", "--json"], env, tmp=tmp_path)
    report = result.json()
    assert report["failed"] == [] and report["videos"] == 1
    assert report["frames"] == report["indexed"] == LONG_SECONDS  # --fps 1: one frame per second

    stats = fully_indexed_stats(env, tmp_path)
    assert stats["collections"]["scale"] == LONG_SECONDS
    assert stats["collections"]["scale-baseline"] == SHORT_SECONDS

    print(
        f"clipsearch index peak RSS: {result.max_rss_bytes / MiB:.0f} MiB for {LONG_SECONDS} frames, "
        f"{baseline.max_rss_bytes / MiB:.0f} MiB for {SHORT_SECONDS}; took {report['seconds']:.1f} s"
    )
    assert result.max_rss_bytes <= PEAK_RSS_LIMIT
    assert result.max_rss_bytes <= baseline.max_rss_bytes + PEAK_RSS_GROWTH_LIMIT
