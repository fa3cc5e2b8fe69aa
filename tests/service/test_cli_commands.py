"""The `clipsearch` command in-process through main([...]), and once as the installed console script."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from client.cli import EXIT_PARTIAL, main
from tests.support.client import write_images, write_video

CLIPSEARCH = Path(sys.executable).parent / "clipsearch"


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *args: str | Path) -> object:
    code, out, err = run(capsys, *args, "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.fixture
def library(tmp_path: Path) -> Path:
    folder = tmp_path / "library"
    write_images(folder, 6)
    write_video(folder / "clips" / "colours.mp4", seconds=4, fps=5)
    return folder


def test_index_search_classify_and_stats_as_json(
    cli_env: dict[str, str], library: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = run_json(capsys, "index", library)
    assert report["images"] == 6 and report["frames"] == 4 and report["failed"] == []  # type: ignore[index]
    assert run_json(capsys, "index", library)["indexed"] == 0  # type: ignore[index]

    found = run_json(capsys, "search", "--text", "colourful blocks", "--top", "3")
    results = found["results"]  # type: ignore[index]
    assert len(results) == 3 and results[0]["rank"] == 1
    assert {"id", "score", "sources", "paths", "timestamp_seconds", "media"} <= set(results[0])

    photo = library / "img02.png"
    by_image = run_json(capsys, "search", "--image", photo, "--top", "2")["results"]  # type: ignore[index]
    assert by_image[0]["paths"] == [str(photo.resolve())]
    own_id = by_image[0]["id"]
    like = run_json(capsys, "search", "--like", own_id, "--top", "5")["results"]  # type: ignore[index]
    assert len(like) == 5 and own_id not in [r["id"] for r in like]

    frames = run_json(capsys, "search", "--text", "x", "--media", "video", "--top", "10", "--frames")["results"]  # type: ignore[index]
    assert sorted(r["timestamp_seconds"] for r in frames) == [0.0, 1.0, 2.0, 3.0]
    assert all(
        (r["start_seconds"], r["end_seconds"], r["frames"]) == (r["timestamp_seconds"],) * 2 + (1,) for r in frames
    )
    # By default the four consecutive frames are one moment, at its best frame.
    (moment,) = run_json(capsys, "search", "--text", "x", "--media", "video")["results"]  # type: ignore[index]
    assert (moment["start_seconds"], moment["end_seconds"], moment["frames"]) == (0.0, 3.0, 4)
    assert moment["id"] == frames[0]["id"] and moment["timestamp_seconds"] == frames[0]["timestamp_seconds"]

    labels = run_json(capsys, "classify", photo, "--labels", "cat", "dog", "boat", "--template", "a photo of {}")[
        "labels"
    ]  # type: ignore[index]
    assert math.fsum(s["probability"] for s in labels) == pytest.approx(1.0, abs=1e-5)
    assert [s["probability"] for s in labels] == sorted((s["probability"] for s in labels), reverse=True)
    by_id = run_json(
        capsys, "classify", "--id", own_id, "--labels", "cat", "dog", "boat", "--template", "a photo of {}"
    )["labels"]  # type: ignore[index]
    assert [s["label"] for s in by_id] == [s["label"] for s in labels]

    stats = run_json(capsys, "stats")
    assert stats["items"] == 10 and stats["dimension"] == 32  # type: ignore[index]
    assert run_json(capsys, "collections") == {"collections": [{"name": "default", "items": 10}]}


def test_tables_for_people(cli_env: dict[str, str], library: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "index", library, "--collection", "mine")
    assert code == 0
    assert "indexed 10 (6 images, 4 video frames from 1 video)" in out and "failed 0" in out
    code, out, _ = run(capsys, "search", "--image", library / "img01.jpg", "--top", "3")
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:5] == ["#", "score", "source", "time", "id"]
    assert str((library / "img01.jpg").resolve()) in lines[1] and "1.0000" in lines[1]
    code, out, _ = run(capsys, "search", "--text", "x", "--media", "video", "--top", "1", "--collection", "mine")
    assert code == 0 and "colours.mp4" in out and re.search(r"00:00:00–00:00:03 \(4 frames, best 00:00:0[0-3]\)", out)
    code, out, _ = run(capsys, "classify", library / "img01.jpg", "--labels", "red", "green")
    assert code == 0 and "red" in out and "green" in out
    code, out, _ = run(capsys, "stats")
    assert code == 0 and "mine" in out
    code, out, _ = run(capsys, "delete", "--collection", "mine")
    assert code == 0 and out.strip() == "deleted 10 items"
    code, out, _ = run(capsys, "search", "--text", "x")
    assert code == 0 and out.strip() == "no matches"


def test_prune_and_delete_by_source(cli_env: dict[str, str], library: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_json(capsys, "index", library)
    (library / "img00.png").unlink()
    pruned = run_json(capsys, "index", library, "--prune")
    assert pruned["pruned_sources"] == 1 and pruned["pruned_items"] == 1  # type: ignore[index]
    removed = run_json(capsys, "delete", "--source", library / "clips")
    assert removed == {"deleted": 4, "updated": 0}
    assert run_json(capsys, "stats")["items"] == 5  # type: ignore[index]
    assert run_json(capsys, "delete", "--id", "img-nope")["deleted"] == 0  # type: ignore[index]


def test_bad_files_are_reported_and_the_exit_code_says_so(
    cli_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "mixed"
    write_images(folder, 2)
    (folder / "broken.jpg").write_bytes(b"not an image at all")
    os.mkfifo(folder / "fifo.png")
    code, out, err = run(capsys, "index", folder, "--json")
    assert code == EXIT_PARTIAL
    report = json.loads(out)
    assert report["images"] == 2
    assert {Path(f["path"]).name for f in report["failed"]} == {"broken.jpg", "fifo.png"}
    assert "broken.jpg" in err and "fifo.png" in err and "Traceback" not in err


def test_user_mistakes_get_one_line_and_a_nonzero_exit(
    cli_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("hello")
    for args in (
        ["search", "--image", not_image],
        ["search", "--image", tmp_path / "missing.png"],
        ["search", "--like", "img-unknown"],
        ["classify", not_image, "--labels", "a", "b"],
        ["classify", "--labels", "a"],
        ["index", tmp_path, "--fps", "0"],
        ["search", "--text", "x", "--top", "5000"],
    ):
        code, out, err = run(capsys, *args)
        assert code != 0, args
        assert err.count("\n") == 1 or err.startswith("usage:"), (args, err)
        assert "Traceback" not in err and out == ""


def test_a_service_that_is_down_is_named_in_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEARCH_ADDR", "127.0.0.1:1")
    code, out, err = run(capsys, "stats", "--json")
    assert code == 1 and out == ""
    assert err.count("\n") == 1
    assert "127.0.0.1:1" in err and "clipsearch serve" in err and "search" in err
    code, _, err = run(capsys, "search", "--text", "cat", "--embedder", "127.0.0.1:2,127.0.0.1:3")
    assert code == 1 and "embedder" in err and "127.0.0.1:2, 127.0.0.1:3" in err


@pytest.mark.system  # the installed `clipsearch` command runs as a process
def test_the_installed_console_script(cli_env: dict[str, str], tmp_path: Path) -> None:
    assert CLIPSEARCH.exists(), "install the project: pip install -e ."
    photos = write_images(tmp_path / "photos", 3)
    env = {**os.environ, **cli_env}
    indexed = subprocess.run(
        [str(CLIPSEARCH), "index", str(photos[0].parent), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert indexed.returncode == 0, indexed.stderr
    assert json.loads(indexed.stdout)["images"] == 3
    found = subprocess.run(
        [str(CLIPSEARCH), "search", "--image", str(photos[1]), "--top", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert found.returncode == 0, found.stderr
    assert str(photos[1].resolve()) in found.stdout
    shutil.rmtree(photos[0].parent)
    down = subprocess.run(
        [str(CLIPSEARCH), "stats", "--search", "127.0.0.1:1"], env=env, capture_output=True, text=True, timeout=120
    )
    assert down.returncode == 1 and down.stderr.count("\n") == 1 and "127.0.0.1:1" in down.stderr
