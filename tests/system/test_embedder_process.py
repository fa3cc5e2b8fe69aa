"""`python -m embedder_service` as a real process: serves a checkpoint written by the checkpoint CLI, stops
on SIGTERM, and exits with one clear line when the model cannot be found."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, cast

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clipsearch.v1 import embedder_pb2 as pb
from clipsearch.v1 import embedder_pb2_grpc
from embedder_service.checkpoint import main as checkpoint_cli

ROOT = Path(__file__).resolve().parents[2]
# Generous guards so a hung process fails the test instead of hanging it; nothing here measures time.
START_GUARD_SECONDS = 300


def run_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("EMBEDDER_", "CLIP_MODEL"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def spawn(args: list[str], env: Mapping[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, env=dict(env), text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


@dataclass
class ServerProcess:
    """`python -m embedder_service` serving a checkpoint written by the checkpoint CLI."""

    checkpoint: Path
    process: subprocess.Popen[str]
    log: list[str] = field(default_factory=list)
    serving: threading.Event = field(default_factory=threading.Event)
    port: int = 0
    reader: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self.reader = threading.Thread(target=self.read_log, daemon=True)
        self.reader.start()

    def read_log(self) -> None:
        for line in cast(IO[str], self.process.stderr):
            self.log.append(line)
            match = re.search(r"serving clipsearch\.v1\.Embedder on 127\.0\.0\.1:(\d+)", line)
            if match:
                self.port = int(match.group(1))
                self.serving.set()


@pytest.fixture(scope="module")
def server_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Started when first requested and left to boot while other tests run."""
    checkpoint = tmp_path_factory.mktemp("cli") / "tiny"
    checkpoint_cli([str(checkpoint), "--arch", "tiny"])
    process = spawn(
        ["-m", "embedder_service"],
        run_env(
            CLIP_MODEL=str(checkpoint),
            EMBEDDER_PORT="0",
            EMBEDDER_GRACE_SECONDS="5",
            EMBEDDER_CACHE_DIR=str(checkpoint.parent / "converted"),
        ),
    )
    server = ServerProcess(checkpoint, process)
    yield server
    if process.poll() is None:
        process.kill()
        process.wait()
    server.reader.join(START_GUARD_SECONDS)
    if process.stderr is not None:
        process.stderr.close()  # else the pipe is closed at garbage collection, with a ResourceWarning


def test_not_found_model_exits_with_one_line(tmp_path: Path, server_process: ServerProcess) -> None:
    """(Requests server_process only so that the server boots while these processes run.)"""
    missing = tmp_path / "no-such-checkpoint"
    offline = run_env(CLIP_MODEL="openai/clip-vit-base-patch16", HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    # Both start at once: most of each run is importing torch and transformers.
    processes = {
        "missing directory": spawn(["-m", "embedder_service"], run_env(CLIP_MODEL=str(missing))),
        "uncached hub id": spawn(["-m", "embedder_service"], offline),
    }
    for case, process in processes.items():
        _, stderr = process.communicate(timeout=START_GUARD_SECONDS)
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert process.returncode != 0, case
        assert len(lines) == 1, f"{case}: expected one line, got:\n{stderr}"
        assert "CLIP_MODEL=" in lines[0] and "python -m embedder_service.checkpoint" in lines[0], case
        assert "Traceback" not in stderr


def test_a_refused_checkpoint_exits_with_one_line(tmp_path: Path, tiny_clip_dir: Path) -> None:
    """An unsupported family, and a checkpoint missing a weight, are refused before serving, without a traceback."""
    import json
    import shutil

    from safetensors.numpy import load_file, save_file

    blip, holed = tmp_path / "blip", tmp_path / "holed"
    for copy in (blip, holed):
        shutil.copytree(tiny_clip_dir, copy)
    config = json.loads((blip / "config.json").read_text())
    (blip / "config.json").write_text(json.dumps({**config, "model_type": "blip"}))
    weights = load_file(holed / "model.safetensors")
    del weights["visual_projection.weight"]
    save_file(weights, holed / "model.safetensors", metadata={"format": "pt"})
    cache = str(tmp_path / "cache")
    processes = {
        "'blip'": spawn(["-m", "embedder_service"], run_env(CLIP_MODEL=str(blip), EMBEDDER_CACHE_DIR=cache)),
        "1 missing (visual_projection.weight)": spawn(
            ["-m", "embedder_service"], run_env(CLIP_MODEL=str(holed), EMBEDDER_CACHE_DIR=cache)
        ),
    }
    for expected, process in processes.items():
        _, stderr = process.communicate(timeout=START_GUARD_SECONDS)
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert process.returncode != 0, expected
        assert len(lines) == 1, f"{expected}: expected one line, got:\n{stderr}"
        assert lines[0].startswith("embedder: CLIP_MODEL=") and expected in lines[0]
        assert "Traceback" not in stderr


def test_serves_a_cli_checkpoint_reports_health_and_stops_on_sigterm(server_process: ServerProcess) -> None:
    server = server_process.process
    assert (server_process.checkpoint / "model.safetensors").is_file()
    assert server_process.serving.wait(START_GUARD_SECONDS), "server did not start:\n" + "".join(server_process.log)
    with grpc.insecure_channel(f"127.0.0.1:{server_process.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "clipsearch.v1.Embedder"):
            status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        stub = embedder_pb2_grpc.EmbedderStub(channel)
        info = stub.GetModelInfo(pb.GetModelInfoRequest())
        assert info.model_id == str(server_process.checkpoint)
        embedding = stub.EmbedTexts(pb.EmbedTextsRequest(texts=["a photo of a cat"])).embeddings[0]
        assert len(embedding.values) == info.dimension
    server.send_signal(signal.SIGTERM)
    assert server.wait(START_GUARD_SECONDS) == 0
    server_process.reader.join(START_GUARD_SECONDS)  # the log up to the process's exit
    text = "".join(server_process.log)
    assert "received SIGTERM" in text and "embedder stopped" in text
    assert "Traceback" not in text
