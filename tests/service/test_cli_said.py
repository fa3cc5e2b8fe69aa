"""`clipsearch index` reporting what is said, and `clipsearch search --said` alone and with --text, in-process
through main([...]) against in-process services."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from client.cli import main
from tests.support.subtitled import srt, write_video


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.usefixtures("cli_env")
def test_index_then_search_what_is_said(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    write_video(tmp_path / "night.mkv", subtitles=[("subrip", "eng", [(3.0, 4.5, "See you tomorrow."), (5, 6, "Bye")])])
    write_video(tmp_path / "film.mp4")
    (tmp_path / "film.zh.srt").write_bytes(srt([(1.0, 2.5, "我们明天见")]).encode("gbk"))
    (tmp_path / "film.en.srt").write_bytes(b"\x00\x01junk" * 100)

    code, out, err = run(capsys, "index", tmp_path)
    assert code == 0, err
    assert "3 subtitle lines from 2 tracks" in out
    problems = [line for line in err.splitlines() if "film.en.srt" in line]
    assert len(problems) == 1 and "binary data" in problems[0]

    code, out, err = run(capsys, "search", "--said", "see you tomorrow", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["query"] == {"said": "see you tomorrow"}
    [hit] = doc["results"]
    assert (hit["start_seconds"], hit["end_seconds"], hit["text"]) == (3.0, 4.5, "See you tomorrow.")
    assert hit["paths"][0].endswith("night.mkv")

    code, out, err = run(capsys, "search", "--said", "明天")
    assert code == 0, err
    assert "我们明天见" in out and "film.mp4" in out

    code, out, err = run(capsys, "search", "--text", "a red picture", "--said", "bye", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["query"] == {"text": "a red picture", "said": "bye"}
    said = [h for h in doc["results"] if h["said_lines"]]
    assert said and said[0]["paths"][0].endswith("night.mkv") and said[0]["said_rank"] == 1

    code, out, err = run(capsys, "search")
    assert code != 0 and "--said" in err


@pytest.mark.usefixtures("cli_env")
def test_index_without_subtitles(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    write_video(tmp_path / "night.mkv", subtitles=[("subrip", "eng", [(3.0, 4.5, "See you tomorrow.")])])
    code, out, err = run(capsys, "index", tmp_path, "--no-subtitles", "--json")
    assert code == 0, err
    assert json.loads(out)["subtitle_lines"] == 0
    code, out, err = run(capsys, "search", "--said", "tomorrow", "--json")
    assert json.loads(out)["results"] == []
