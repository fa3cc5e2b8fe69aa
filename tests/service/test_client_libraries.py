"""The Client's library methods on in-process services: add, list, rescan, report, remove."""

from __future__ import annotations

from pathlib import Path

import pytest

from client import Client, Conflict, InvalidInput, LibraryFailure, LibraryStatus, NotFound
from tests.support.client import write_images


def test_add_list_report_rescan_remove(client: Client, tmp_path: Path) -> None:
    folder = tmp_path / "Pictures"
    write_images(folder, 3)
    link = tmp_path / "link"
    link.symlink_to(folder)
    client.index([folder], collection="home")

    added = client.add_library(link)  # resolved through the link; keeps the collection its items are in

    assert (added.name, added.path, added.collection, added.items, added.state) == (
        "Pictures",
        str(folder),
        "home",
        3,
        "pending",
    )
    status = LibraryStatus(
        "indexing", 1, 4, 30.0, failures=(LibraryFailure(str(folder / "x.jpg"), "cannot identify image file"),)
    )
    assert client.report_library_status("Pictures", status)
    (listed,) = client.list_libraries()
    assert listed.status.describe() == "indexing 1 of 4 files, about 30 s left; 1 file failed"
    assert listed.to_json()["failures"] == [{"path": str(folder / "x.jpg"), "reason": "cannot identify image file"}]
    assert client.request_rescan("Pictures").rescan_requests == 1

    assert client.remove_library("Pictures") == 3
    assert client.list_libraries() == []
    assert client.collections() == {}
    assert sorted(p.name for p in folder.iterdir()) == ["img00.png", "img01.jpg", "img02.png"]  # files untouched


def test_refusals(client: Client, tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "file.txt").write_text("x")
    client.add_library(tmp_path / "a", "one")
    with pytest.raises(Conflict, match="inside the library 'a'"):
        client.add_library(tmp_path / "a" / "b")
    with pytest.raises(InvalidInput, match="no such folder"):
        client.add_library(tmp_path / "missing")
    with pytest.raises(InvalidInput, match="not a folder"):
        client.add_library(tmp_path / "file.txt")
    with pytest.raises(NotFound, match="no library named 'zz'"):
        client.remove_library("zz")
    with pytest.raises(NotFound):
        client.request_rescan("zz")
    assert [lib.name for lib in client.list_libraries()] == ["a"]
