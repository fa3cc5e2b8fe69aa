"""Pytest fixtures and helpers for the end-to-end tests: `clipsearch serve` and the CLI as real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image, ImageDraw

from clipsearch.testing.probes import wait_for, wait_for_status

REPO = Path(__file__).resolve().parents[2]
# Generous limits for busy CI machines; reaching one fails the test, nothing asserts on durations.
SERVE_START_TIMEOUT = 240.0
CLI_TIMEOUT = 600.0
STATS_TIMEOUT = 120.0


def clipsearch_command() -> list[str]:
    """The installed `clipsearch` console script, or its entry point through this interpreter."""
    script = Path(sys.executable).with_name("clipsearch")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from client.cli import main; sys.exit(main())"]


@dataclass
class CliResult:
    """A finished `clipsearch` process: exit code, output, and the process's peak resident memory."""

    returncode: int
    stdout: str
    stderr: str
    max_rss_bytes: int

    def json(self) -> Any:
        assert self.returncode == 0, f"exit code {self.returncode}: {self.stderr.strip()[-2000:]}"
        return json.loads(self.stdout)


# Runs a command and writes its peak RSS to a file. The measured process is spawned from this small
# launcher, never forked from pytest: Linux counts the memory a process had before exec() in its peak, so
# a fork of a pytest that loaded torch would report torch's size.
_MEASURE = """\
import os, sys
pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as report:
    report.write(str(usage.ru_maxrss * 1024))  # Linux reports kilobytes
sys.exit(os.waitstatus_to_exitcode(status) % 256)
"""


def run_cli(args: Sequence[str], env: Mapping[str, str], *, tmp: Path, check: bool = True) -> CliResult:
    """Runs `clipsearch ARGS` to completion, measuring the peak resident memory of that process alone."""
    stem = tmp / f"cli-{time.monotonic_ns()}"
    out, err, rss = stem.with_suffix(".out"), stem.with_suffix(".err"), stem.with_suffix(".rss")
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-c", _MEASURE, str(rss), *clipsearch_command(), *args],
            env=dict(env),
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            process_group=0,
        )
    try:
        code = process.wait(CLI_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise
    result = CliResult(code, out.read_text(), err.read_text(), int(rss.read_text() or 0))
    for path in (out, err, rss):
        path.unlink()
    if check:
        assert result.returncode == 0, (
            f"clipsearch {' '.join(args)} exited with {result.returncode}:\n{result.stderr[-3000:]}"
        )
    return result


def fully_indexed_stats(env: Mapping[str, str], tmp: Path) -> dict[str, Any]:
    """`clipsearch stats --json` once the search index reports 100% indexed (counts are final then)."""
    stats: dict[str, Any] = {}

    def indexed() -> bool:
        stats.update(run_cli(["stats", "--json"], env, tmp=tmp).json())
        return bool(stats["percent_indexed"] >= 100 and not stats["indexing"])

    wait_for(indexed, STATS_TIMEOUT, lambda: f"index still at {stats['percent_indexed']}%", interval=0.5)
    return stats


def wait_until_serving(address: str, timeout: float = SERVE_START_TIMEOUT) -> None:
    wait_for_status(address, "SERVING", timeout)


def process_table() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, state, command line) for every process, from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        table[int(entry.name)] = (int(fields[1]), fields[0], cmdline.strip())
    return table


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.decode(errors="replace").split("=", 1) for item in raw.split(b"\0") if b"=" in item)
    return dict(pairs)


def descendants(pid: int) -> dict[int, str]:
    """The live descendants of a process: pid -> command line."""
    table = process_table()
    found: dict[int, str] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, (ppid, state, cmdline) in table.items():
            if ppid == parent and child not in found and state not in ("Z", "X"):
                found[child] = cmdline
                frontier.append(child)
    return found


def alive(pids: Sequence[int]) -> list[int]:
    """Those of `pids` that still run (zombies count as gone)."""
    table = process_table()
    return [pid for pid in pids if pid in table and table[pid][1] not in ("Z", "X")]


def wait_until_gone(pids: Sequence[int], timeout: float = 60.0) -> None:
    wait_for(lambda: not alive(pids), timeout, lambda: f"processes {alive(pids)} still run after {timeout:.0f} s")


class ServeProcess:
    """`clipsearch serve` started as a user starts it, with the addresses it writes to its --ready-file."""

    def __init__(self, args: Sequence[str], env: Mapping[str, str], log_path: Path, ready_path: Path) -> None:
        self.log_path = log_path
        self.out_path = log_path.with_suffix(".out")
        self.ready_path = ready_path
        self.ready: dict[str, Any] = {}
        with log_path.open("w") as log, self.out_path.open("w") as out:
            self.process = subprocess.Popen(
                [*clipsearch_command(), "serve", *args, "--ready-file", str(ready_path)],
                env=dict(env),
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=log,
                text=True,
            )

    @property
    def lines(self) -> list[str]:
        """What serve printed on stdout: the banner, complete once the ready file exists."""
        return self.out_path.read_text(errors="replace").splitlines()

    def read_ready_file(self) -> dict[str, Any] | None:
        """The ready file this serve wrote, or None while there is none (or one a killed serve left)."""
        try:
            ready: dict[str, Any] = json.loads(self.ready_path.read_text())
        except FileNotFoundError:
            return None
        assert ready["version"] == 1, ready
        return ready if ready["pid"] == self.pid else None

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = SERVE_START_TIMEOUT) -> ServeProcess:
        deadline = time.monotonic() + timeout
        while (ready := self.read_ready_file()) is None:
            if self.process.poll() is not None:
                raise AssertionError(f"clipsearch serve exited with {self.process.returncode}:\n{self.log[-4000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"clipsearch serve not ready after {timeout:.0f} s:\n{self.log[-4000:]}")
            time.sleep(0.2)
        self.ready = ready
        return self

    @property
    def exports(self) -> dict[str, str]:
        """The variables serve tells a client to set: EMBEDDER_ADDR, SEARCH_ADDR and the TLS and token paths."""
        exports: dict[str, str] = self.ready["client_env"]
        return exports

    @property
    def embedder_addresses(self) -> list[str]:
        addresses: list[str] = self.ready["embedder_addresses"]
        return addresses

    @property
    def search_address(self) -> str:
        return str(self.ready["search_address"])

    def client_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """An environment in which `clipsearch` talks to this stack."""
        return {
            **(os.environ if base is None else base),
            "EMBEDDER_ADDR": self.exports["EMBEDDER_ADDR"],
            "SEARCH_ADDR": self.search_address,
            "COLUMNS": "200",
        }

    def children(self) -> dict[str, int]:
        """The direct children by role: "redis", "search", "web", "indexer", and "embedder@PORT" for each replica."""
        roles: dict[str, int] = {}
        for pid, (ppid, state, cmdline) in process_table().items():
            if ppid != self.pid or state in ("Z", "X"):
                continue
            if "search_service.redis_server" in cmdline:
                roles["redis"] = pid
            elif "-m embedder_service" in cmdline:
                roles[f"embedder@{_environ(pid).get('EMBEDDER_PORT')}"] = pid
            elif "-m search_service" in cmdline:
                roles["search"] = pid
            elif "-m client.web" in cmdline:
                roles["web"] = pid
            elif "-m client.indexer" in cmdline:
                roles["indexer"] = pid
        return roles

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 120.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"clipsearch serve did not stop within {timeout:.0f} s:\n{self.log[-3000:]}") from None


def start_serve(
    tmp: Path, model_dir: Path, *extra: str, env: Mapping[str, str] | None = None, web: bool = False
) -> ServeProcess:
    """Starts `clipsearch serve` on free ports with its data in `tmp`, with the web page if `web`; the caller
    stops it."""
    base = dict(os.environ if env is None else env)
    base.pop("REDIS_URL", None)
    args = [
        "--model",
        str(model_dir),
        "--data-dir",
        str(tmp / "data"),
        "--embedder-port",
        "0",
        "--search-port",
        "0",
        "--dtype",
        "fp32",
        *(("--web-port", "0") if web else ("--no-web",)),
        *extra,
    ]
    return ServeProcess(args, base, tmp / "serve.log", tmp / "serve-ready.json")


@pytest.fixture(scope="session")
def serve_stack(tmp_path_factory: pytest.TempPathFactory, tiny_clip_dir: Path) -> Iterator[ServeProcess]:
    """One `clipsearch serve` with two embedder replicas of a tiny CLIP for the end-to-end tests, stopped
    with SIGTERM at the end."""
    tmp = tmp_path_factory.mktemp("serve-stack")
    stack = start_serve(tmp, tiny_clip_dir, "--embedders", "2")
    try:
        stack.wait_ready()
        yield stack
    finally:
        stack.stop()


def write_test_images(directory: Path, count: int, seed: int = 0) -> list[Path]:
    """Distinct pictures (a smooth colour field with a few shapes) of varied sizes, as PNG and JPEG files."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in range(count):
        rng = np.random.default_rng(seed * 100_000 + number)
        width, height = (int(v) for v in rng.integers(72, 320, size=2))
        rows, columns = (int(v) for v in rng.integers(2, 6, size=2))
        field = rng.integers(0, 256, size=(rows, columns, 3), dtype=np.uint8)
        image = Image.fromarray(field).resize((width, height), Image.Resampling.BICUBIC)
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(2, 6))):
            x0, y0 = int(rng.integers(0, width - 8)), int(rng.integers(0, height - 8))
            box = (x0, y0, int(rng.integers(x0 + 8, width + 1)), int(rng.integers(y0 + 8, height + 1)))
            colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
        path = directory / f"picture-{number:03d}.{'png' if number % 2 else 'jpg'}"
        image.save(path, quality=95)
        paths.append(path)
    return paths


def second_pattern(second: int, width: int, height: int, seed: int = 7) -> np.ndarray:
    """The picture a test video shows during one second: a colour field of its own (HxWx3 uint8)."""
    rng = np.random.default_rng(seed * 1_000_003 + second)
    field = rng.integers(0, 256, size=(3, 4, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(field).resize((width, height), Image.Resampling.BICUBIC))


def write_test_video(path: Path, seconds: int, fps: int, width: int, height: int) -> int:
    """An H.264 video whose picture changes every second (a new colour field) and within it (a bar sweeps
    across). Returns its frame count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = 0
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "12"}
        for second in range(seconds):
            pattern = second_pattern(second, width, height)
            for step in range(fps):
                picture = pattern.copy()
                column = (step * width) // fps
                picture[:, column : column + max(1, width // 16)] = 255
                for packet in stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                    container.mux(packet)
                frames += 1
        for packet in stream.encode():
            container.mux(packet)
    return frames
