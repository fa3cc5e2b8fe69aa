"""`clipsearch search --collapse-duplicates`: copies of a photo indexed from several files are one result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from client.cli import main
from tests.support.photos import copies, encode, scene


def test_copies_are_one_result_listing_the_others(
    cli_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "library"
    folder.mkdir()
    files = copies(scene(1))
    for kind in ("png", "half.jpg", "q60.jpg"):
        (folder / f"beach.{kind}").write_bytes(files[kind])
    (folder / "other.png").write_bytes(encode(scene(2), "PNG"))
    assert main(["index", str(folder)]) == 0
    capsys.readouterr()

    search = ["search", "--text", "a beach", "--min-score", "-1"]
    assert main([*search, "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["results"]) == 4
    assert main([*search, "--collapse-duplicates", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert [r["rank"] for r in results] == [1, 2]
    beach = next(r for r in results if r["duplicates"])
    names = sorted(Path(p).name for r in (beach, *beach["duplicates"]) for p in r["paths"])
    assert names == ["beach.half.jpg", "beach.png", "beach.q60.jpg"]
    assert all({"id", "score", "sources", "paths"} <= set(d) for d in beach["duplicates"])
    assert [d["score"] for d in beach["duplicates"]] == sorted((d["score"] for d in beach["duplicates"]), reverse=True)
    assert beach["score"] >= beach["duplicates"][0]["score"]
    other = next(r for r in results if not r["duplicates"])
    assert [Path(p).name for p in other["paths"]] == ["other.png"]

    monkeypatch.setenv("COLUMNS", "400")
    assert main([*search, "--collapse-duplicates"]) == 0
    table = capsys.readouterr().out
    assert "+ 2 near-duplicates: " in table
    assert table.count("beach.") == 3 and "other.png" in table
