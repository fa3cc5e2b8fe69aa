"""Sharded ingest: the slice rules, their errors, and shards that together index and prune as one run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from client import Client, cli
from client.api import SearchFilter
from client.ingest.engine import IngestOptions
from client.ingest.media import Problem, discover
from client.ingest.reports import IndexReport
from client.ingest.shard import JOB_INDEX_VARIABLE, Shard, ShardError, parse_shard, select, shard_from_job, shard_of
from client.uris import path_to_uri
from tests.support.client import write_images, write_video

SHARDS = 3


def test_parse_shard_reads_index_and_count() -> None:
    assert parse_shard("0/1") == Shard(0, 1)
    assert parse_shard(" 2/3 ") == Shard(2, 3)
    assert str(parse_shard("11/12")) == "11/12"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0/0", "the number of shards must be from 1 to 1000000, not 0"),
        ("3/2", r"shard 3/2 does not exist: with 2 shards the index runs from 0 to 1"),
        ("2/2", r"shard 2/2 does not exist"),
        ("x/y", r"bad shard 'x/y': expected INDEX/COUNT, e.g. 0/4"),
        ("1", r"bad shard '1': expected INDEX/COUNT"),
        ("-1/3", r"bad shard '-1/3'"),
        ("1/3/4", r"bad shard '1/3/4'"),
        ("", r"bad shard ''"),
        ("1/2000000", r"from 1 to 1000000, not 2000000"),
    ],
)
def test_parse_shard_refuses_what_cannot_be_a_shard(text: str, message: str) -> None:
    with pytest.raises(ShardError, match=message):
        parse_shard(text)


def test_shard_from_job_takes_the_index_kubernetes_sets() -> None:
    assert shard_from_job(4, {JOB_INDEX_VARIABLE: "3"}) == Shard(3, 4)
    with pytest.raises(ShardError, match="--shards needs JOB_COMPLETION_INDEX.*--shard INDEX/COUNT"):
        shard_from_job(4, {})
    with pytest.raises(ShardError, match=r"JOB_COMPLETION_INDEX='one' is not a shard index"):
        shard_from_job(4, {JOB_INDEX_VARIABLE: "one"})
    with pytest.raises(ShardError, match=r"JOB_COMPLETION_INDEX=4: shard 4/4 does not exist.*completions"):
        shard_from_job(4, {JOB_INDEX_VARIABLE: "4"})


def test_shard_of_a_path_is_fixed_by_sha256_of_the_path() -> None:
    # Pinned: a change here would move files between the shards of a job that is already running.
    cases = {
        "/no-such-root/photos/cat.jpg": [1, 1, 4, 995],
        "/no-such-root/a.png": [1, 0, 4, 387],
        "/no-such-root/海滩 sunset.jpg": [1, 2, 6, 947],
    }
    for path, expected in cases.items():
        assert [shard_of(path, count) for count in (2, 3, 7, 1000)] == expected, path
    # Python's own hash() of a string changes with every process; this must not.
    program = "from client.ingest.shard import shard_of; print(shard_of('/no-such-root/photos/cat.jpg', 1000))"
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        result = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True, check=True)
        assert result.stdout.strip() == "995"


def test_every_path_falls_in_exactly_one_shard_and_the_shards_are_even() -> None:
    paths = [f"/no-such-root/library/{n:05d}.jpg" for n in range(3000)]
    shards = [Shard(index, SHARDS) for index in range(SHARDS)]
    owners = [[shard.index for shard in shards if shard.holds(path)] for path in paths]
    assert all(len(owner) == 1 for owner in owners)
    sizes = Counter(owner[0] for owner in owners)
    assert all(900 <= sizes[index] <= 1100 for index in range(SHARDS)), sizes


def test_a_stored_source_belongs_to_the_shard_of_its_file(tmp_path: Path) -> None:
    names = [b"plain.jpg", "海滩 sunset.jpg".encode(), b"latin1-\xe9t\xe9.png"]
    for name in names:
        (tmp_path / os.fsdecode(name)).write_bytes(b"x")
    (tmp_path / "link.jpg").symlink_to(tmp_path / "plain.jpg")
    for count in (2, 3, 5):
        for entry in [*(tmp_path / os.fsdecode(n) for n in names), tmp_path / "link.jpg"]:
            owners = [i for i in range(count) if Shard(i, count).holds_source(path_to_uri(entry))]
            assert owners == [shard_of(entry, count)], entry
    # A link is the file it points to: the same shard takes both, so they become one item, as in one run.
    assert shard_of(tmp_path / "link.jpg", 1000) == shard_of(tmp_path / "plain.jpg", 1000)
    assert not Shard(0, 1).holds_source("https://example.com/a.jpg")


def test_select_keeps_the_shards_files_and_problems(tmp_path: Path) -> None:
    write_images(tmp_path / "lib", 20)
    (tmp_path / "lib" / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    found = list(discover([tmp_path / "lib"]))
    assert sum(isinstance(item, Problem) for item in found) == 1
    slices = [list(select(found, Shard(index, SHARDS))) for index in range(SHARDS)]
    assert sorted(str(i.path) for s in slices for i in s) == sorted(str(i.path) for i in found)
    assert list(select(found, None)) == found
    # Each slice keeps discover's order.
    for part in slices:
        assert part == [item for item in found if item in part]


def _library(root: Path) -> Path:
    """Images, a copy of one under another name, a video and a dangling link."""
    library = root / "library"
    photos = write_images(library / "photos", 14)
    (library / "copies").mkdir()
    shutil.copy(photos[3], library / "copies" / "same-as-three.png")
    write_video(library / "clip.mp4", seconds=3, fps=5)
    (library / "broken.jpg").symlink_to(root / "nowhere.jpg")
    return library


def _stored(client: Client, collection: str) -> Counter[tuple[str, str, float | None, frozenset[str]]]:
    items = client.list_items(SearchFilter(collections=(collection,)))
    return Counter((i.media, i.content_hash, i.timestamp_seconds, frozenset(i.sources)) for i in items)


def test_shards_index_what_one_run_indexes_and_prune_only_their_own(client: Client, tmp_path: Path) -> None:
    library = _library(tmp_path)
    whole = client.index([library], collection="whole")
    assert (whole.images, whole.frames, len(whole.failed)) == (14, 3, 1)

    reports: list[IndexReport] = [
        # The same files in a second collection, to compare (one_item_per_file=False allows it).
        client.index(
            [library], collection="sharded", options=IngestOptions(shard=Shard(index, SHARDS)), one_item_per_file=False
        )
        for index in range(SHARDS)
    ]
    assert _stored(client, "sharded") == _stored(client, "whole")
    assert sum(r.indexed for r in reports) == whole.indexed  # nothing embedded twice
    assert sum(len(r.failed) for r in reports) == 1  # the dangling link, reported by its shard only
    assert sum(r.known + r.sources_added for r in reports) == whole.known + whole.sources_added

    # A file removed: only its own shard prunes it, however the shards take turns.
    victim = library / "photos" / "img05.jpg"
    owner = shard_of(victim, SHARDS)
    victim.unlink()
    for index in [i for i in range(SHARDS) if i != owner]:
        report = client.index(
            [library],
            collection="sharded",
            prune=True,
            options=IngestOptions(shard=Shard(index, SHARDS)),
            one_item_per_file=False,
        )
        assert (report.indexed, report.pruned_sources) == (0, 0)
    assert any(path_to_uri(victim) in item[3] for item in _stored(client, "sharded"))
    report = client.index(
        [library],
        collection="sharded",
        prune=True,
        options=IngestOptions(shard=Shard(owner, SHARDS)),
        one_item_per_file=False,
    )
    # A gone file leaves every collection: its item in "sharded" and its item in "whole".
    assert (report.indexed, report.pruned_sources, report.pruned_items) == (0, 1, 2)
    assert client.index([library], collection="whole", prune=True, one_item_per_file=False).pruned_sources == 0
    assert _stored(client, "sharded") == _stored(client, "whole")


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--shard", "3/2"], {}, "argument --shard: shard 3/2 does not exist"),
        (["--shard", "0/0"], {}, "argument --shard: the number of shards must be from 1"),
        (["--shard", "x/y"], {}, "argument --shard: bad shard 'x/y': expected INDEX/COUNT"),
        (["--shards", "0"], {}, "argument --shards: expected a number of shards from 1"),
        (["--shards", "three"], {}, "argument --shards: expected a number of shards from 1"),
        (["--shard", "1/3", "--shards", "3"], {}, "argument --shards: not allowed with argument --shard"),
        (["--shards", "3"], {}, "--shards needs JOB_COMPLETION_INDEX"),
        (["--shards", "3"], {JOB_INDEX_VARIABLE: "3"}, "JOB_COMPLETION_INDEX=3: shard 3/3 does not exist"),
    ],
)
def test_cli_refuses_bad_shards_with_a_message(
    args: list[str],
    env: dict[str, str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv(JOB_INDEX_VARIABLE, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # Nothing listens on port 1: a bad shard is refused before anything connects.
    code = cli.main(["index", str(tmp_path), *args, "--embedder", "127.0.0.1:1", "--search", "127.0.0.1:1"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err and "Traceback" not in err, err


def test_cli_shards_from_the_job_index(
    cli_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = write_images(tmp_path / "lib", 9)
    counts = []
    for index in range(SHARDS):
        monkeypatch.setenv(JOB_INDEX_VARIABLE, str(index))
        code = cli.main(["index", str(tmp_path / "lib"), "--shards", str(SHARDS), "--collection", "job", "--json"])
        out = capsys.readouterr().out
        assert code == 0, out
        counts.append(json.loads(out)["indexed"])
    assert counts == [sum(shard_of(p, SHARDS) == index for p in paths) for index in range(SHARDS)]
    assert sum(counts) == 9
