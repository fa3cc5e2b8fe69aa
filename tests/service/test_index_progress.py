"""`clipsearch index` counts first (files; videos by duration), then reports progress; Ctrl-C says what was done."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from client.cli import main
from client.cli.index_progress import IndexBar
from client.ingest.engine import Ingest
from client.ingest.progress import Meter, plan
from client.ingest.reports import ProgressEvent
from tests.support.client import write_images, write_video


@pytest.fixture
def media(tmp_path: Path) -> Path:
    folder = tmp_path / "media"
    write_images(folder, 4)
    write_video(folder / "z-clips" / "four-seconds.mp4", seconds=4, fps=5)  # walked after the photos
    (folder / "notes.txt").write_text("not media")
    return folder


def test_the_plan_counts_files_and_videos_by_duration(media: Path) -> None:
    planned = plan([media], fps=2.0)
    assert (planned.images, planned.videos, planned.files) == (4, 1, 5)
    assert planned.video_seconds == pytest.approx(4.0, abs=0.3)
    assert planned.units == 4 + 8  # an image is one unit, a video one per frame sampled at 2 fps
    assert planned.describe() == "4 images and 1 video (0.1 min)"


def test_the_meter_follows_the_events_to_the_whole_plan(media: Path) -> None:
    planned = plan([media], fps=1.0)
    meter = Meter(planned)
    labels = sorted(planned.weights)
    for label in labels[:2]:
        meter(ProgressEvent("file", 0, label))
        meter(ProgressEvent("indexed", 1))
    assert (meter.files_done, meter.units_done, meter.total) == (1, 2, 8)
    assert meter.fraction == pytest.approx(0.25)
    video = next(label for label in labels if label.endswith(".mp4"))
    meter(ProgressEvent("file", 0, video))
    meter(ProgressEvent("indexed", 1))
    meter(ProgressEvent("failed", 1, video, "truncated"))  # the rest of its frames count as done
    assert meter.units_done == 2 + 4 and meter.failed == 1


def test_ctrl_c_says_what_was_done_and_that_the_same_command_resumes(
    cli_env: dict[str, str], media: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Ingest._process_video

    def interrupted(self: Ingest, found: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Ingest, "_process_video", interrupted)
    # Ctrl-C as the video starts, after the photos were read.
    assert main(["index", str(media)]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    found = re.fullmatch(
        r"clipsearch: interrupted after (\d) of 5 files \((\d+)% of the work\): (\d) items indexed, 0 already "
        r"indexed, 0 failed; run the same command again to resume \(what is indexed is skipped\)\n",
        err,
    )
    assert found, err
    assert int(found.group(1)) in (3, 4) and int(found.group(2)) <= 50

    monkeypatch.setattr(Ingest, "_process_video", original)
    assert main(["index", str(media), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["skipped_known"] + report["images"] == 4 and report["frames"] >= 1


def test_the_bar_reports_failures_and_notes_without_a_terminal(media: Path, tmp_path: Path) -> None:
    out = tmp_path / "err.txt"
    with out.open("w") as stream, IndexBar(stream, False, plan([media])) as bar:
        bar(ProgressEvent("note", 0, message="indexing into 'home'"))
        bar(ProgressEvent("failed", 1, "/x.jpg", "cannot identify image file"))
    assert out.read_text().splitlines() == ["indexing into 'home'", "skipped /x.jpg: cannot identify image file"]
