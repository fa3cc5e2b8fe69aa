"""Perceptual hashes: stable across resizing and re-encoding, apart for other photos; collapsing by distance."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from client.ingest.phash import FLAT_LEVELS, HASH_SIDE, distance, hash_of_gray, image_hash
from search_service.duplicates import DEFAULT_MAX_DISTANCE, MAX_DISTANCE, check_max_distance, collapse_photos
from search_service.errors import InvalidArgument
from search_service.grouping import Candidate
from search_service.items import MediaType
from tests.support.photos import copies, encode, reframed, scene


def test_copies_resized_or_re_encoded_stay_within_the_default_distance() -> None:
    for seed in range(12):
        files = copies(scene(seed))
        hashes = [image_hash(data) for data in files.values()]
        assert all(h is not None for h in hashes)
        for a, b in itertools.combinations(hashes, 2):
            assert a is not None and b is not None
            assert distance(a, b) <= DEFAULT_MAX_DISTANCE, files.keys()


def test_other_photos_and_reframed_scenes_are_further_than_the_default_distance() -> None:
    hashes = [image_hash(encode(scene(seed), "PNG")) for seed in range(12)]
    for a, b in itertools.combinations(hashes, 2):
        assert a is not None and b is not None
        assert distance(a, b) > MAX_DISTANCE
    for seed in range(6):
        original = image_hash(encode(scene(seed), "PNG"))
        moved = image_hash(encode(reframed(scene(seed), 0.25), "PNG"))
        assert original is not None and moved is not None
        assert distance(original, moved) > DEFAULT_MAX_DISTANCE


def test_a_flat_picture_or_an_undecodable_file_has_no_hash() -> None:
    from PIL import Image

    assert image_hash(encode(Image.new("RGB", (64, 48), (200, 30, 30)), "PNG")) is None
    assert image_hash(b"not an image") is None
    almost_flat = np.full((HASH_SIDE, HASH_SIDE), 100.0, dtype=np.float32)
    almost_flat[0, 0] += FLAT_LEVELS / 2
    assert hash_of_gray(almost_flat) is None
    with pytest.raises(ValueError, match="32x32"):
        hash_of_gray(np.zeros((8, 8), dtype=np.float32))


def test_the_hash_is_64_bits_and_leaves_the_mean_brightness_out() -> None:
    gray = np.asarray(scene(3).convert("L").resize((HASH_SIDE, HASH_SIDE)), dtype=np.float32)
    h = hash_of_gray(gray)
    assert h is not None and 0 <= h < 1 << 64
    assert h >> 63 == 0  # the DC bit
    assert hash_of_gray(gray + 40.0) == h


def photo(item_id: str, score: float, phash: int, collection: str = "c") -> Candidate:
    return Candidate(item_id, score, MediaType.IMAGE, collection, "", phash=phash)


def test_each_photo_joins_the_best_leader_within_the_distance_never_a_copy() -> None:
    a = photo("a", 0.9, 0b0000)
    b = photo("b", 0.8, 0b0011)  # 2 bits from a
    c = photo("c", 0.7, 0b1111)  # 4 bits from a, 2 from b: b is no leader, so c leads
    d = photo("d", 0.6, 0b0001, collection="other")  # 1 bit from a, another collection
    groups = collapse_photos([a, b, c, d], 2)
    assert [(g.id, [x.id for x in copies]) for g, copies in groups] == [("a", ["b"]), ("c", []), ("d", [])]
    assert [(g.id, [x.id for x in copies]) for g, copies in collapse_photos([a, b, c, d], 0)] == [
        ("a", []),
        ("b", []),
        ("c", []),
        ("d", []),
    ]


@pytest.mark.parametrize("max_distance", [0, 1, 2, 5, MAX_DISTANCE])
def test_bucketed_search_finds_what_comparing_every_pair_finds(max_distance: int) -> None:
    rng = random.Random(max_distance)
    bases = [rng.getrandbits(64) for _ in range(40)]
    photos = []
    for n in range(300):
        h = rng.choice(bases)
        for bit in rng.sample(range(64), rng.randint(0, max_distance + 2)):
            h ^= 1 << bit
        photos.append(photo(f"p{n:03}", 1.0 - n / 1000, h))
    leaders: list[tuple[Candidate, list[Candidate]]] = []
    for p in photos:  # the definition, pair by pair
        home = next((g for g in leaders if distance(g[0].phash or 0, p.phash or 0) <= max_distance), None)
        if home is None:
            leaders.append((p, []))
        else:
            home[1].append(p)
    expected = [(g.id, [c.id for c in cs]) for g, cs in leaders]
    assert [(g.id, [c.id for c in cs]) for g, cs in collapse_photos(photos, max_distance)] == expected


def test_the_distance_asked_for_is_checked() -> None:
    assert check_max_distance(None) == DEFAULT_MAX_DISTANCE
    assert check_max_distance(0) == 0
    for bad in (-1, MAX_DISTANCE + 1):
        with pytest.raises(InvalidArgument, match="max_distance"):
            check_max_distance(bad)


def test_the_hash_of_a_photo_shrunk_for_the_embedder_matches_its_files() -> None:
    from client.ingest.phash import prepared_hash
    from clipsearch.v1 import embedder_pb2

    image = scene(7, size=(640, 480))
    small = image.resize((224, 168))
    raw = embedder_pb2.Image(raw=embedder_pb2.RawImage(rgb=small.tobytes(), width=224, height=168))
    from_pixels = prepared_hash(raw, b"")
    from_file = prepared_hash(embedder_pb2.Image(encoded=b""), encode(image, "PNG"))
    assert from_pixels is not None and from_file is not None
    assert distance(from_pixels, from_file) <= DEFAULT_MAX_DISTANCE
