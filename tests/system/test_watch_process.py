"""The indexer that `clipsearch serve` runs, with the real watcher: a library follows its folder within 10 s."""

from __future__ import annotations

import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

from client import Client, SearchFilter
from client.uris import path_to_uri
from tests.support.client import write_images
from tests.support.e2e import ServeProcess, run_cli, start_serve

WITHIN = 10.0  # seconds from a change on disk to the index following it


def indexed(client: Client, path: Path) -> bool:
    return any(True for _ in client.list_items(SearchFilter(sources=(path_to_uri(path),))))


def wait_for(check: Callable[[], bool], within: float, what: str, stack: ServeProcess) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < within, f"not within {within} s: {what}\n{stack.log[-3000:]}"
        time.sleep(0.1)
    return time.monotonic() - started


def client_of(stack: ServeProcess) -> Client:
    return Client(stack.exports["EMBEDDER_ADDR"], stack.search_address, connect_timeout=30)


def test_serve_keeps_a_library_indexed_and_catches_up_after_a_restart(tmp_path: Path, tiny_clip_dir: Path) -> None:
    folder = tmp_path / "Pictures"
    photos = write_images(folder, 3)
    spare = write_images(tmp_path / "spare", 4, seed=31)
    stack = start_serve(tmp_path, tiny_clip_dir).wait_ready()
    try:
        assert "indexer" in stack.children()
        assert "  indexer   keeps the libraries indexed (clipsearch library add PATH)" in stack.lines
        added = run_cli(
            ["library", "add", str(folder), "--collection", "home", "--json"], stack.client_env(), tmp=tmp_path
        )
        assert added.json()["collection"] == "home"
        with client_of(stack) as client:
            wait_for(lambda: all(indexed(client, p) for p in photos), 60, "the first catch-up", stack)
            wait_for(lambda: client.library("Pictures").state == "watching", WITHIN, "watching", stack)

            # A photo copied in is found by a search, with no command run.
            copied = folder / "2024" / "copied.jpg"
            copied.parent.mkdir()
            shutil.copy(spare[1], copied)
            wait_for(lambda: indexed(client, copied), WITHIN, "a copied photo", stack)
            hits = client.search_image(copied, top=1, filter=SearchFilter(collections=("home",)))
            assert hits and path_to_uri(copied) in hits[0].sources

            # A deleted one is gone.
            photos[0].unlink()
            wait_for(lambda: not indexed(client, photos[0]), WITHIN, "a deleted photo removed", stack)

            # Half a file, a pause longer than the indexer waits for a file to settle, then the rest: never
            # indexed half, never reported as failed, indexed once complete.
            data = spare[2].read_bytes()
            half = folder / "half.png"
            half.write_bytes(data[: len(data) // 2])
            time.sleep(3.0)
            assert not indexed(client, half)
            assert client.library("Pictures").status.failed_files == 0
            with half.open("ab") as f:
                f.write(data[len(data) // 2 :])
            wait_for(lambda: indexed(client, half), WITHIN, "the completed file", stack)
            (item,) = client.list_items(SearchFilter(sources=(path_to_uri(half),)))
            assert (item.width, item.height) == (96, 72)
            assert client.library("Pictures").items == 4
    finally:
        assert stack.stop(signal.SIGTERM) == 0, stack.log[-3000:]
    assert "Traceback" not in stack.log

    # While nothing watches: a photo added, one deleted. Restarted, serve lists the library and catches up.
    shutil.copy(spare[3], folder / "while-down.jpg")
    copied.unlink()
    again = start_serve(tmp_path, tiny_clip_dir).wait_ready()
    try:
        with client_of(again) as client:
            assert [lib.name for lib in client.list_libraries()] == ["Pictures"]
            expected = sorted(path_to_uri(p) for p in (photos[1], photos[2], half, folder / "while-down.jpg"))
            wait_for(
                lambda: (
                    sorted(s for i in client.list_items(SearchFilter(collections=("home",))) for s in i.sources)
                    == expected
                ),
                60,
                "the catch-up after the restart",
                again,
            )
            wait_for(lambda: client.library("Pictures").state == "watching", WITHIN, "watching again", again)
            listed = run_cli(["library", "list", "--json"], again.client_env(), tmp=tmp_path).json()
            (library,) = listed["libraries"]
            assert (library["items"], library["state"], library["failed_files"]) == (4, "watching", 0)
    finally:
        assert again.stop(signal.SIGTERM) == 0, again.log[-3000:]
    assert "Traceback" not in again.log
