"""The indexer on in-process services with the real watcher: a library follows its folder within seconds."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from client import Client, SearchFilter
from client.indexer import Indexer, IndexerOptions
from client.uris import path_to_uri
from tests.support.client import write_images

FAST = IndexerOptions(
    poll_seconds=0.5, settle_seconds=0.5, incomplete_grace_seconds=3.0, tick_seconds=0.1, caught_up_every_seconds=1.0
)


def sources(client: Client, collection: str) -> list[str]:
    return sorted(s for item in client.list_items(SearchFilter(collections=(collection,))) for s in item.sources)


def wait_for(check: Callable[[], bool], within: float, what: str) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < within, f"not within {within} s: {what}"
        time.sleep(0.1)
    return time.monotonic() - started


class Running:
    """An Indexer on a thread of its own."""

    def __init__(self, client: Client, options: IndexerOptions = FAST) -> None:
        self.indexer = Indexer(client, options)
        self.errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.indexer.run_forever()
        except BaseException as exc:  # noqa: BLE001 - any error of the thread fails the test in stop()
            self.errors.append(exc)

    def stop(self) -> None:
        self.indexer.stop()
        self._thread.join(30)
        self.indexer.close()
        assert not self.errors, self.errors


@pytest.fixture
def running(client: Client) -> Iterator[Callable[[], Running]]:
    started: list[Running] = []

    def start() -> Running:
        started.append(Running(client))
        return started[-1]

    yield start
    for r in started:
        r.indexer.stop()
        r.indexer.close()


def test_follows_the_folder(
    client: Client, tmp_path: Path, running: Callable[[], Running], caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "Pictures"
    first = write_images(folder, 2)
    spare = write_images(tmp_path / "spare", 3, seed=5)
    library = client.add_library(folder, "home")
    indexer = running()

    wait_for(lambda: len(sources(client, "home")) == 2, 30, "the catch-up")
    wait_for(lambda: client.library(library.name).state == "watching", 10, "watching")

    copied = folder / "sub" / "new.jpg"
    copied.parent.mkdir()
    shutil.copy(spare[1], copied)
    wait_for(lambda: path_to_uri(copied) in sources(client, "home"), 10, "a copied photo indexed")

    first[0].unlink()
    wait_for(lambda: path_to_uri(first[0]) not in sources(client, "home"), 10, "a deleted photo removed")

    # Half a file, then a pause longer than the settle time: not indexed, not reported; then the rest.
    data = spare[2].read_bytes()
    half = folder / "half.jpg"
    half.write_bytes(data[: len(data) // 2])
    time.sleep(2.0)
    assert path_to_uri(half) not in sources(client, "home")
    assert client.library(library.name).status.failed_files == 0
    with half.open("ab") as f:
        f.write(data[len(data) // 2 :])
    wait_for(lambda: path_to_uri(half) in sources(client, "home"), 10, "the completed file indexed")
    assert sorted(sources(client, "home")) == sorted(path_to_uri(p) for p in (first[1], copied, half))

    # Idle, it records that everything up to a few seconds ago is indexed: a restart looks only at what is newer.
    last_change = max(p.stat().st_mtime for p in folder.rglob("*.*"))
    wait_for(lambda: client.library(library.name).status.caught_up_at > last_change + 2, 15, "caught up recorded")
    indexer.stop()
    # While nothing watches: a file added, one deleted; a restart catches up.
    shutil.copy(spare[0], folder / "while-down.png")
    copied.unlink()
    caplog.set_level(logging.INFO, "clipsearch.indexer")
    running()
    wait_for(
        lambda: sources(client, "home") == sorted(path_to_uri(p) for p in (first[1], half, folder / "while-down.png")),
        30,
        "the catch-up after a restart",
    )
    wait_for(lambda: "caught up with" in caplog.text, 10, "the catch-up's line")
    # Only the new file was read; only the folder that lost a file was listed (the root: it covers sub/).
    assert "(1 changed since the last pass, 1 folder listed, 3 files)" in caplog.text
    assert ": 1 indexed, 0 already indexed, 1 removed, 0 failed" in caplog.text
