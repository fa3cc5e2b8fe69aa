"""The Client against in-process services: index, search, classify, skip, dedupe, prune, videos, bad files."""

from __future__ import annotations

import io
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from client import Client, ClientError, ImageBytes, InvalidInput, NotFound, SearchFilter
from client.ingest.engine import IngestOptions
from client.uris import path_to_uri
from clipsearch.v1 import embedder_pb2, embedder_pb2_grpc
from tests.support.client import write_images, write_video
from tests.support.search import SearchServerFactory


@pytest.fixture
def photos(tmp_path: Path) -> list[Path]:
    return write_images(tmp_path / "photos", 10)


def test_every_image_finds_itself_first(client: Client, photos: list[Path]) -> None:
    report = client.index([photos[0].parent])
    assert (report.images, report.known, report.failed) == (10, 0, [])
    for path in photos:
        hits = client.search_image(path, top=3)
        assert hits[0].source == str(path.resolve())
        assert hits[0].score == pytest.approx(1.0, abs=1e-4)
        assert [h.rank for h in hits] == [1, 2, 3]
        assert hits[0].media == "image" and hits[0].timestamp_seconds is None
        assert (hits[0].width, hits[0].height) == (96, 72)


def test_text_search_returns_k_results_and_pages(client: Client, photos: list[Path]) -> None:
    client.index(photos)
    hits = client.search_text("a red square", top=6)
    assert len(hits) == 6
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    page = client.search_text("a red square", top=3, offset=3)
    assert [h.id for h in page] == [h.id for h in hits[3:]]
    assert [h.rank for h in page] == [4, 5, 6]
    assert client.search_text("a red square", top=5, min_score=2.0) == []
    with pytest.raises(InvalidInput):
        client.search_text("   ")


def test_more_like_this_excludes_the_item(client: Client, photos: list[Path]) -> None:
    client.index(photos)
    target = client.search_image(photos[3], top=1)[0]
    like = client.search_like(target.id, top=4)
    assert len(like) == 4 and target.id not in [h.id for h in like]
    by_vector = [h.id for h in client.search_image(photos[3], top=5)]
    assert [h.id for h in like] == [i for i in by_vector if i != target.id][:4]
    second_page = client.search_like(target.id, top=2, offset=2)
    assert [h.id for h in second_page] == [h.id for h in like[2:4]]
    with pytest.raises(NotFound):
        client.search_like("img-does-not-exist")


def test_classification_sums_to_one_and_matches_the_embedder(
    client: Client, photos: list[Path], embedder_stub: embedder_pb2_grpc.EmbedderStub
) -> None:
    labels = ["a cat", "a dog", "a car", "a tree"]
    scores = client.classify(photos[0], labels, template="a photo of {}")
    assert sorted(s.label for s in scores) == sorted(labels)
    assert math.fsum(s.probability for s in scores) == pytest.approx(1.0, abs=1e-5)
    assert [s.probability for s in scores] == sorted((s.probability for s in scores), reverse=True)
    direct = embedder_stub.Classify(
        embedder_pb2.ClassifyRequest(
            image=embedder_pb2.Image(encoded=photos[0].read_bytes()), labels=labels, prompt_template="a photo of {}"
        ),
        timeout=30,
    )
    expected = {s.label: s.probability for s in direct.scores}
    for score in scores:
        assert score.probability == pytest.approx(expected[score.label], abs=1e-6)

    client.index([photos[0]])
    item_id = client.search_image(photos[0], top=1)[0].id
    stored = client.classify_item(item_id, labels, template="a photo of {}")
    for score in stored:
        assert score.probability == pytest.approx(expected[score.label], abs=1e-4)
    with pytest.raises(InvalidInput, match="labels|label"):
        client.classify(photos[0], ["same", "same"])


def test_the_same_photo_at_two_paths_is_one_item_with_two_sources(
    client: Client, tmp_path: Path, photos: list[Path]
) -> None:
    copy_dir = tmp_path / "copies"
    copy_dir.mkdir()
    copy = copy_dir / "same.png"
    shutil.copy(photos[0], copy)
    report = client.index([photos[0].parent, copy_dir])
    assert (report.images, report.sources_added) == (10, 1)
    item = client.search_image(copy, top=1)[0]
    assert set(item.sources) == {path_to_uri(photos[0]), path_to_uri(copy)}
    assert client.stats().items == 10

    # Found again later at a third path: the stored vector is reused, nothing is embedded.
    third = tmp_path / "third.png"
    shutil.copy(photos[0], third)
    again = client.index([photos[0].parent, copy_dir, third])
    assert (again.images, again.known, again.sources_added) == (0, 11, 1)
    assert len(client.get([item.id])[0].sources) == 3


def test_a_second_run_adds_nothing_and_new_files_are_added(client: Client, tmp_path: Path, photos: list[Path]) -> None:
    client.index([tmp_path / "photos"])
    again = client.index([tmp_path / "photos"])
    assert (again.images, again.known, again.failed) == (0, 10, [])
    write_images(tmp_path / "photos", 2, seed=7, prefix="new")
    third = client.index([tmp_path / "photos"])
    assert (third.images, third.known) == (2, 10)
    assert client.stats().items == 12


def test_prune_removes_sources_of_deleted_files_within_the_given_paths(client: Client, tmp_path: Path) -> None:
    kept = write_images(tmp_path / "photos", 4)
    other = write_images(tmp_path / "elsewhere", 2, seed=3, prefix="other")
    duplicate = tmp_path / "photos" / "dup.png"
    shutil.copy(kept[0], duplicate)
    client.index([tmp_path / "photos", tmp_path / "elsewhere"])
    assert client.stats().items == 6

    kept[1].unlink()  # its item has no other source: deleted
    duplicate.unlink()  # its item keeps kept[0]
    other[0].unlink()  # outside the pruned path: untouched
    report = client.index([tmp_path / "photos"], prune=True)
    assert (report.pruned_sources, report.pruned_items) == (2, 1)
    assert client.stats().items == 5
    remaining = {s for item in client.list_items() for s in item.sources}
    assert path_to_uri(kept[1]) not in remaining and path_to_uri(duplicate) not in remaining
    assert path_to_uri(kept[0]) in remaining and path_to_uri(other[0]) in remaining

    shutil.rmtree(tmp_path / "elsewhere")  # a folder that is gone altogether can still be pruned
    gone = client.index([tmp_path / "elsewhere"], prune=True)
    assert gone.pruned_items == 2 and client.stats().items == 3


def test_video_frames_carry_their_timestamps_and_are_skipped_when_complete(client: Client, tmp_path: Path) -> None:
    video = write_video(tmp_path / "clips" / "colours.mp4", seconds=10, fps=10)
    report = client.index([video])
    assert (report.frames, report.videos, report.failed) == (10, 1, [])
    frames = sorted(client.list_items(SearchFilter(media="video")), key=lambda i: i.timestamp_seconds or 0)
    assert [f.timestamp_seconds for f in frames] == [float(s) for s in range(10)]
    assert [f.frame_index for f in frames] == list(range(0, 100, 10))
    assert {f.source for f in frames} == {str(video.resolve())}
    assert {(f.width, f.height) for f in frames} == {(64, 48)}
    assert frames[3].time == "00:00:03"

    again = client.index([video])
    assert (again.frames, again.videos, again.known) == (0, 0, 10)  # complete: not even decoded

    # An interrupted run (some frames missing) resumes with just the missing frames.
    missing = [frames[2].id, frames[9].id]
    client.delete(ids=missing)
    resumed = client.index([video])
    assert (resumed.frames, resumed.videos, resumed.known) == (2, 1, 8)
    assert {i.id for i in client.list_items(SearchFilter(media="video"))} == {f.id for f in frames}
    assert client.index([video]).videos == 0

    # Another copy of the same video adds its path to every frame without embedding.
    copy = tmp_path / "copy.mp4"
    shutil.copy(video, copy)
    copied = client.index([copy])
    assert (copied.frames, copied.videos, copied.sources_added) == (0, 0, 10)
    assert all(len(f.sources) == 2 for f in client.list_items(SearchFilter(media="video")))

    # A second rate adds the frames between; it samples a superset of the first rate's frames.
    denser = client.index([video], fps=2)
    assert (denser.frames, denser.known) == (10, 10)


def test_bad_files_are_reported_and_the_run_goes_on(client: Client, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    good = write_images(folder, 3)
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg" * 10)
    (folder / "empty.png").write_bytes(b"")
    png = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 300, 3), np.uint8)).save(png, "PNG")
    (folder / "truncated.png").write_bytes(png.getvalue()[: len(png.getvalue()) // 2])
    (folder / "garbage.mp4").write_bytes(os.urandom(2048))
    os.mkfifo(folder / "pipe.jpg")
    os.symlink(folder / "nowhere.jpg", folder / "dangling.jpg")

    report = client.index([folder, tmp_path / "missing-folder"])
    failed = {Path(f.path).name: f.reason for f in report.failed}
    assert {
        "corrupt.jpg",
        "empty.png",
        "truncated.png",
        "garbage.mp4",
        "pipe.jpg",
        "dangling.jpg",
        "missing-folder",
    } <= set(failed)
    assert all(reason for reason in failed.values())
    assert report.images == len(good)
    assert client.stats().items == 3


def test_large_images_are_shrunk_here_and_still_match(client: Client, tmp_path: Path) -> None:
    noise = np.random.default_rng(5).integers(0, 256, (720, 1280, 3), np.uint8)
    path = tmp_path / "big.png"
    Image.fromarray(noise).save(path)
    assert path.stat().st_size > IngestOptions().encoded_max_bytes
    report = client.index([path])
    assert report.images == 1
    hit = client.search_image(path, top=1)[0]
    assert hit.source == str(path.resolve()) and (hit.width, hit.height) == (1280, 720)
    # The same picture sent whole to the embedder lands on (nearly) the same vector.
    direct = client.index_images([ImageBytes(path.read_bytes(), label="whole")], collection="whole")
    assert direct.images == 1
    whole = client.list_items(SearchFilter(collections=("whole",)))
    vector = client.embed_image(path)
    assert hit.score == pytest.approx(1.0, abs=1e-4) and len(vector) == 32 and next(whole).id


def test_collections_tags_and_deletes(client: Client, tmp_path: Path) -> None:
    cats = write_images(tmp_path / "cats", 3, prefix="cat")
    dogs = write_images(tmp_path / "dogs", 2, seed=2, prefix="dog")
    client.index([tmp_path / "cats"], collection="cats", tags=["pets", "cats"])
    client.index([tmp_path / "dogs"], collection="dogs", tags=["pets"])
    assert client.collections() == {"cats": 3, "dogs": 2}
    only_cats = client.search_text("animal", top=10, filter=SearchFilter(tags=("cats",)))
    assert len(only_cats) == 3 and {h.collection for h in only_cats} == {"cats"}
    in_dogs = client.search_image(cats[0], top=10, filter=SearchFilter(collections=("dogs",)))
    assert {h.collection for h in in_dogs} == {"dogs"}
    assert client.search_text("animal", filter=SearchFilter(media="video")) == []

    removed = client.delete(sources=[dogs[0]])
    assert (removed.deleted, removed.updated) == (1, 0)
    folder = client.delete(sources=[tmp_path / "cats"])
    assert folder.deleted == 3
    dropped = client.delete(collection="dogs")
    assert dropped.deleted == 1 and client.stats().items == 0
    with pytest.raises(InvalidInput):
        client.delete()
    for bad in ("", "tab\there", "x" * 257):
        with pytest.raises(InvalidInput, match="bad tag"):
            client.index([cats[0]], tags=[bad])


def test_images_given_as_bytes(client: Client, photos: list[Path]) -> None:
    report = client.index_images(
        [photos[0].read_bytes(), ImageBytes(photos[1].read_bytes(), source=path_to_uri(photos[1]))]
    )
    assert report.images == 2
    assert client.search_image(photos[1].read_bytes(), top=1)[0].source == str(photos[1].resolve())
    with pytest.raises(InvalidInput, match="cannot identify|decode|image"):
        client.search_image(b"not an image")


def test_a_model_and_index_of_different_dimensions_are_refused(
    embedder_address: str, search_server_factory: SearchServerFactory, photos: list[Path]
) -> None:
    other = search_server_factory(dimension=64)
    with Client(embedder_address, other.address) as client, pytest.raises(ClientError, match="32.*64"):
        client.index(photos)


def test_prune_handles_changed_files_in_every_collection(client: Client, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    first, second, third = write_images(folder, 3)
    client.index([folder])
    # The same files in a second collection, as runs from before one file was one item could leave them.
    client.index([folder], collection="archive", one_item_per_file=False)
    old_id = client.search_image(first, top=1, filter=SearchFilter(collections=("default",)))[0].id

    write_images(tmp_path / "new", 1, seed=42)[0].replace(first)  # same path, new content
    second.unlink()
    report = client.index([folder], collection="default", prune=True, one_item_per_file=False)
    assert report.images == 1
    assert (report.pruned_sources, report.pruned_items) == (2, 4)  # the old items had no other path
    default = {i.id: i for i in client.list_items(SearchFilter(collections=("default",)))}
    assert old_id not in default and len(default) == 2
    new_item = client.search_image(first, top=1, filter=SearchFilter(collections=("default",)))[0]
    assert new_item.score == pytest.approx(1.0, abs=1e-4) and new_item.sources == (path_to_uri(first),)
    # The archive was pruned too: a gone file, and the old content of a changed one, leave every collection.
    archive = client.list_items(SearchFilter(collections=("archive",)))
    assert sorted(s for i in archive for s in i.sources) == [path_to_uri(third)]
