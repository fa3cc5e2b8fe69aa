"""`clipsearch library ...` and one file, one item through `clipsearch index`: exact counts, nothing twice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from client import Client, SearchFilter
from client.cli import main
from client.uris import path_to_uri
from tests.support.client import write_images


def run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *args: object) -> dict[str, object]:
    code, out, err = run(capsys, *args, "--json")
    assert code == 0, err
    document = json.loads(out)
    assert isinstance(document, dict)
    return document


def by_collection(client: Client) -> dict[str, list[str]]:
    """Collection -> the sorted sources of its items (one entry per item and source)."""
    found: dict[str, list[str]] = {}
    for item in client.list_items():
        found.setdefault(item.collection, []).extend(item.sources)
    return {name: sorted(sources) for name, sources in sorted(found.items())}


def test_library_commands(cli_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "Holidays"
    write_images(folder, 3)
    assert run_json(capsys, "index", folder, "--collection", "trips")["indexed"] == 3

    added = run_json(capsys, "library", "add", folder)  # keeps the collection its files are in
    assert (added["name"], added["path"], added["collection"], added["items"], added["state"]) == (
        "Holidays",
        str(folder),
        "trips",
        3,
        "pending",
    )
    code, out, err = run(capsys, "library", "list")
    assert code == 0, err
    assert "Holidays" in out and "trips" in out and "waiting for an indexer" in out
    listed = run_json(capsys, "library", "list")["libraries"]
    assert isinstance(listed, list) and [lib["name"] for lib in listed] == ["Holidays"]
    assert run_json(capsys, "library", "rescan", "Holidays")["rescan_requests"] == 1

    # Indexing inside the library uses its collection; another one is refused in one line.
    write_images(folder / "more", 1, seed=8)
    assert run_json(capsys, "index", folder / "more")["indexed"] == 1
    code, _, err = run(capsys, "index", folder / "more", "--collection", "other")
    assert code == 1 and err.count("\n") == 1
    assert "in the library 'Holidays', indexed into the collection 'trips'" in err

    refused: list[list[object]] = [
        ["library", "add", folder],
        ["library", "add", folder / "more"],
        ["library", "add", tmp_path],
        ["library", "remove", "nope"],
        ["library", "rescan", "nope"],
        ["library", "add", tmp_path / "x"],
    ]
    for args in refused:
        code, _, err = run(capsys, *args)
        assert code == 1 and err.count("\n") == 1 and "Traceback" not in err, err

    code, out, err = run(capsys, "library", "remove", "Holidays")
    assert code == 0, err
    assert "4 items left the index; no file was touched" in out
    assert run_json(capsys, "library", "list")["libraries"] == []
    assert len(list(folder.rglob("*.*"))) == 4
    code, out, _ = run(capsys, "library", "list")
    assert "no libraries" in out


def test_reindexing_with_and_without_collection_then_prune(
    cli_env: dict[str, str], client: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "Pictures"
    photos = write_images(folder, 5)
    uris = [path_to_uri(p) for p in photos]

    # The README's steps: first into "home", then without --collection, then --prune after deletions.
    assert run_json(capsys, "index", folder, "--collection", "home")["indexed"] == 5
    again = run_json(capsys, "index", folder)
    assert (again["indexed"], again["skipped_known"]) == (0, 5)
    assert by_collection(client) == {"home": uris}

    code, _, err = run(capsys, "index", folder, "--collection", "default")
    assert code == 1 and err.count("\n") == 1
    assert "already indexed in the collection 'home' (5 items)" in err
    assert "clipsearch index " + str(folder) + " --collection home" in err
    assert by_collection(client) == {"home": uris}

    photos[0].unlink()
    photos[3].unlink()
    pruned = run_json(capsys, "index", folder, "--prune")
    assert (pruned["indexed"], pruned["skipped_known"], pruned["pruned_sources"], pruned["pruned_items"]) == (
        0,
        3,
        2,
        2,
    )
    assert by_collection(client) == {"home": [uris[1], uris[2], uris[4]]}

    # With --collection naming it, the same; a file alone too.
    assert run_json(capsys, "index", folder, "--collection", "home", "--prune")["pruned_sources"] == 0
    assert run_json(capsys, "index", photos[1])["skipped_known"] == 1
    write_images(tmp_path / "new", 1, seed=50)[0].replace(folder / "new.png")
    assert run_json(capsys, "index", folder)["indexed"] == 1
    assert by_collection(client) == {"home": sorted([uris[1], uris[2], uris[4], path_to_uri(folder / "new.png")])}

    # A folder holding two collections (left by older runs) is refused without --collection.
    other = tmp_path / "other"
    write_images(other, 2, seed=70)
    client.index([other / "img00.png"], collection="a", one_item_per_file=False)
    client.index([other / "img01.jpg"], collection="b", one_item_per_file=False)
    code, _, err = run(capsys, "index", other)
    assert code == 1 and "indexed in several collections, 'a' (1 item), 'b' (1 item)" in err
    assert sum(1 for _ in client.list_items(SearchFilter(collections=("default",)))) == 0
