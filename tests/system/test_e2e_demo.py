"""The one-command demo (`make demo` runs scripts/demo.py), as CI runs it: on a local tiny checkpoint."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.e2e import REPO, process_table

DEMO = REPO / "scripts" / "demo.py"
DEMO_TIMEOUT = 600


def run_demo(workdir: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(DEMO), "--workdir", str(workdir)],
        env=env,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT,
    )


def processes_using(directory: Path) -> list[str]:
    """Processes that still run inside `directory` or name it on their command line."""
    found = []
    for pid, (_, state, cmdline) in process_table().items():
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            cwd = ""
        if state not in ("Z", "X") and (cwd.startswith(str(directory)) or str(directory) in cmdline):
            found.append(f"{pid} {cmdline}")
    return found


def section(output: str, command: str) -> list[str]:
    """The output lines of one `$ clipsearch …` step of the demo."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"$ clipsearch {command}"))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("$ ")), len(lines))
    return [line for line in lines[start + 1 : end] if line.strip()]


def test_the_demo_runs_every_step_on_a_local_checkpoint(tmp_path: Path, tiny_clip_dir: Path) -> None:
    # Wide enough that no table row wraps (a moment's span widens the search table), so lines count rows.
    env = {**os.environ, "CLIP_MODEL": str(tiny_clip_dir), "COLUMNS": "300"}
    env.pop("REDIS_URL", None)
    result = run_demo(tmp_path, env)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    out = result.stdout
    assert "export EMBEDDER_ADDR=" in out and "export SEARCH_ADDR=" in out
    assert any("16" in line for line in section(out, "index"))  # 10 photos + 6 one-per-second frames
    assert len(section(out, "search --text")) == 1 + 5  # header and five results
    image_hits = section(out, "search --image")
    assert "photos/cat.jpg" in image_hits[1], image_hits  # the query photo itself comes first
    labels = section(out, "classify")
    assert all(any(label in line for line in labels) for label in ("a cup of coffee", "a cat", "a rocket"))
    assert out.rstrip().endswith("Done.")
    serve_log = (tmp_path / "serve.log").read_text()
    assert "received SIGTERM; stopping" in serve_log and "Traceback" not in serve_log
    assert processes_using(tmp_path) == []


def test_without_the_model_the_demo_says_how_to_use_a_local_checkpoint(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty-hf-home")}
    for name in ("CLIP_MODEL", "REDIS_URL", "TRANSFORMERS_CACHE", "HF_HUB_CACHE"):
        env.pop(name, None)
    result = run_demo(tmp_path / "work", env)
    assert result.returncode == 1, result.stdout[-3000:]
    error = result.stderr
    # serve's one line, carrying the embedder's own one-line reason, then what to do.
    fatal = [line for line in error.splitlines() if line.startswith("demo: clipsearch serve:")]
    assert len(fatal) == 1 and "embedder exited with code" in fatal[0] and "CLIP_MODEL" in fatal[0], error
    assert "CLIP_MODEL=checkpoints/tiny make demo" in error and "make checkpoint" in error
    assert "python -m embedder_service.checkpoint" in error
    assert "Traceback" not in error
    # A child that never became ready is not restarted: serve gave up at once and stopped Redis.
    serve_log = (tmp_path / "work" / "serve.log").read_text()
    assert "restarting" not in serve_log
    assert processes_using(tmp_path) == []
