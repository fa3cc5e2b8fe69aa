"""A corpus of hostile input sent to both real servers (tiny CLIP, real Redis): each gets a clear status, both
servers keep serving, and nothing of a refused request reaches the index."""

from __future__ import annotations

import io
import math
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import grpc
import numpy as np
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from clipsearch.v1 import embedder_pb2 as epb
from clipsearch.v1 import embedder_pb2_grpc, search_pb2_grpc
from clipsearch.v1 import search_pb2 as spb
from embedder_service.config import Limits
from search_service.server import build_server
from tests.support.embedder import embedder_test_config, encode_image, running_embedder, sample_photo
from tests.support.search import SearchServerFactory, drop_search_index, search_test_config, wait_for_health

if TYPE_CHECKING:
    from embedder_service.model import ClipEmbedder

OK = grpc.StatusCode.OK
INVALID = grpc.StatusCode.INVALID_ARGUMENT
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
SERVING = health_pb2.HealthCheckResponse.SERVING
SEED_IDS = ("keep0", "keep1", "keep2")
QUERY_SYNTAX = "@{}|*()-~\"'\\$:;,.%[]<>=!&^"

# --- the servers --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stack:
    """Both servers, with the seeded index's items as stored."""

    embedder: embedder_pb2_grpc.EmbedderStub
    search: search_pb2_grpc.SearchStub
    health: tuple[health_pb2_grpc.HealthStub, health_pb2_grpc.HealthStub]
    seed: spb.GetResponse


@pytest.fixture(scope="module")
def stack(embedder_stub: embedder_pb2_grpc.EmbedderStub, embedder_address: str, redis_url: str) -> Iterator[Stack]:
    """The tiny-CLIP embedder and a search server whose index holds three real photo vectors."""
    config = search_test_config(redis_url)
    server = build_server(config)
    server.start()
    address = f"127.0.0.1:{server.port}"
    try:
        wait_for_health(address, "SERVING")
        photos = [sample_photo(n).resize((96, 96)) for n in ("astronaut", "chelsea", "coffee")]
        embedded = embedder_stub.EmbedImages(
            epb.EmbedImagesRequest(images=[epb.Image(encoded=encode_image(p)) for p in photos])
        ).results
        with grpc.insecure_channel(address) as channel, grpc.insecure_channel(embedder_address) as embedder_channel:
            search = search_pb2_grpc.SearchStub(channel)
            search.Upsert(
                spb.UpsertRequest(
                    items=[
                        spb.Item(
                            id=item_id,
                            vector=result.embedding.values,
                            metadata=spb.Metadata(
                                sources=[f"file:///photos/{item_id}.png"], tags=["photo"], width=96, height=96
                            ),
                        )
                        for item_id, result in zip(SEED_IDS, embedded, strict=False)
                    ]
                )
            )
            seed = search.Get(spb.GetRequest(ids=list(SEED_IDS), with_vectors=True))
            yield Stack(
                embedder_stub,
                search,
                (health_pb2_grpc.HealthStub(embedder_channel), health_pb2_grpc.HealthStub(channel)),
                seed,
            )
    finally:
        server.stop(0)
        drop_search_index(redis_url, config.index_name)


def assert_serving(stack: Stack) -> None:
    """Both servers answer health checks and real calls."""
    for health in stack.health:
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == SERVING
    vector = stack.embedder.EmbedTexts(epb.EmbedTextsRequest(texts=["still here"]), timeout=30).embeddings[0].values
    assert len(stack.search.Query(spb.QueryRequest(vector=vector, k=3), timeout=30).matches) == 3


def assert_index_unchanged(stack: Stack) -> None:
    """The index holds exactly the three seeded items, as they were stored (counts once fully indexed)."""
    stats = stack.search.Stats(spb.StatsRequest(), timeout=30)
    assert (stats.indexing, stats.percent_indexed, stats.items) == (False, 100, 3)
    assert stack.search.List(spb.ListRequest(), timeout=30).total == 3
    assert stack.search.Get(spb.GetRequest(ids=list(SEED_IDS), with_vectors=True), timeout=30) == stack.seed


def call(method: Callable[..., object], request: object) -> tuple[grpc.StatusCode, object]:
    try:
        return OK, method(request, timeout=60)
    except grpc.RpcError as error:
        return error.code(), error.details()


# --- hostile files ------------------------------------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def photo_png() -> bytes:
    return encode_image(sample_photo("chelsea").resize((80, 64)))


def with_chunks_after_header(png: bytes, *chunks: bytes) -> bytes:
    """`png` with extra chunks right after IHDR (8-byte signature + 25-byte IHDR chunk)."""
    return png[:33] + b"".join(chunks) + png[33:]


def png_declaring(width: int, height: int) -> bytes:
    """A few-hundred-byte grayscale PNG whose header declares width x height pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\0" * (width + 1) * 8, 9)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", rows) + _chunk(b"IEND", b"")


def ztxt_bomb() -> bytes:
    """A PNG whose zTXt chunk is about 20 KB compressed and inflates to 20 MB."""
    return with_chunks_after_header(photo_png(), _chunk(b"zTXt", b"Comment\0\0" + zlib.compress(b"\0" * 20_000_000, 9)))


def many_text_chunks() -> bytes:
    """A PNG carrying 5000 tEXt chunks of 1 KB each (5 MB of text around 10 KB of pixels)."""
    return with_chunks_after_header(photo_png(), *(_chunk(b"tEXt", b"k%d\0" % i + b"x" * 1000) for i in range(5000)))


def _gif_parts(color: int) -> tuple[bytes, bytes]:
    """(header with the global colour table, image blocks) of a one-frame 64x64 GIF of palette entry `color`."""
    frame = Image.new("P", (64, 64), color)
    frame.putpalette([255, 0, 0, 0, 0, 255, 0, 255, 0] + [0] * 759)
    data = encode_image(frame, "GIF", optimize=False)  # keep the whole palette, the same in every frame
    flags = data[10]
    end_of_header = 13 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)
    return data[:end_of_header], data[end_of_header:-1]  # the last byte is the trailer, 0x3B


def gif_frames(count: int) -> bytes:
    """A 64x64 animated GIF of `count` frames: red first, then blue and green in turn (frames joined by hand:
    Pillow takes seconds to write 10,000)."""
    header, red = _gif_parts(0)
    later = [_gif_parts(1), _gif_parts(2)]
    assert all(other_header == header for other_header, _ in later)
    frames = [red] + [later[i % 2][1] for i in range(count - 1)]
    return header + b"".join(frames) + b"\x3b"


def truncated_jpeg() -> bytes:
    data = encode_image(noise(320, 240), "JPEG", quality=90)
    return data[: len(data) // 2]


def truncated_png() -> bytes:
    data = encode_image(noise(96, 96))
    return data[: len(data) // 2]


# name -> (bytes, status, what the message says); the bytes are built when the case runs.
REFUSED_FILES: dict[str, tuple[Callable[[], bytes], grpc.StatusCode, str]] = {
    "zero-byte file": (lambda: b"", INVALID, "empty image (0 bytes)"),
    "truncated JPEG": (truncated_jpeg, INVALID, "image file is truncated"),
    "JPEG cut after its header": (lambda: truncated_jpeg()[:300], INVALID, "cannot decode image"),
    "truncated PNG": (truncated_png, INVALID, "image file is truncated"),
    "PNG signature only": (lambda: b"\x89PNG\r\n\x1a\n", INVALID, "cannot identify image file"),
    "decompression bomb: PNG declaring 30000x30000": (
        lambda: png_declaring(30000, 30000),
        EXHAUSTED,
        "900000000 pixels",
    ),
    "PNG declaring 0x0": (lambda: png_declaring(0, 0), INVALID, "cannot"),
    "PNG with a zTXt chunk inflating to 20 MB": (ztxt_bomb, INVALID, "Decompressed data too large"),
    "a path instead of the file's bytes": (lambda: b"/etc/passwd", INVALID, "cannot identify image file"),
    "a file URI instead of the file's bytes": (lambda: b"file:///etc/passwd", INVALID, "cannot identify image file"),
    "1 MB of text": (lambda: b"lorem ipsum dolor sit amet " * 40_000, INVALID, "cannot identify image file"),
    "an MP4 header": (
        lambda: b"\0\0\0\x20ftypisom\0\0\x02\0isomiso2avc1mp41" + bytes(1000),
        INVALID,
        "cannot identify image file",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED_FILES))
def test_a_hostile_file_gets_a_clear_status_everywhere(stack: Stack, case: str) -> None:
    build, code, fragment = REFUSED_FILES[case]
    data = build()
    good = epb.Image(encoded=photo_png())

    status, details = call(stack.embedder.EmbedImages, epb.EmbedImagesRequest(images=[good, epb.Image(encoded=data)]))
    assert status == code, details
    assert str(details).startswith("images[1]: ") and fragment in str(details), details

    status, details = call(
        stack.embedder.Classify, epb.ClassifyRequest(image=epb.Image(encoded=data), labels=["a cat", "a dog"])
    )
    assert status == code and str(details).startswith("image: ") and fragment in str(details), details

    # As a bulk ingest sends it: the bad file comes back as an item error and costs nothing else.
    status, response = call(
        stack.embedder.EmbedImages,
        epb.EmbedImagesRequest(images=[good, epb.Image(encoded=data), good], allow_partial=True),
    )
    assert status == OK
    results = cast(epb.EmbedImagesResponse, response).results
    assert [r.WhichOneof("result") for r in results] == ["embedding", "error", "embedding"]
    assert results[1].error.code == code.value[0] and fragment in results[1].error.message
    assert (results[1].width, results[1].height) == (0, 0)
    assert_serving(stack)
    assert_index_unchanged(stack)


def embed_one(stack: Stack, data: bytes) -> np.ndarray:
    result = stack.embedder.EmbedImages(epb.EmbedImagesRequest(images=[epb.Image(encoded=data)]), timeout=60)
    return np.asarray(result.results[0].embedding.values, dtype=np.float32)


def test_an_animated_gif_of_10000_frames_is_embedded_from_its_first_frame(stack: Stack) -> None:
    animation = gif_frames(10_000)
    first_frame_only = gif_frames(1)
    assert len(animation) > 1000 * len(first_frame_only)
    with Image.open(io.BytesIO(animation)) as image:
        assert image.n_frames == 10_000  # type: ignore[attr-defined]
    vector = embed_one(stack, animation)
    np.testing.assert_array_equal(vector, embed_one(stack, first_frame_only))
    blue = encode_image(Image.new("RGB", (64, 64), (0, 0, 255)), "GIF")
    assert float(vector @ embed_one(stack, blue)) < 0.9999  # not a later frame's vector
    assert_serving(stack)


def test_a_png_with_5000_text_chunks_is_embedded_like_the_plain_png(stack: Stack) -> None:
    bloated = many_text_chunks()
    assert len(bloated) > 5_000_000
    np.testing.assert_array_equal(embed_one(stack, bloated), embed_one(stack, photo_png()))
    assert_serving(stack)


def test_requests_carry_bytes_never_paths() -> None:
    """No request field names a file for a server to open: images travel as bytes, and the source URIs
    the search service stores are compared as strings (test_hostile_rpc's path cases show a path's bytes
    are refused as an image). A new string or bytes field fails this test until it is reviewed here."""

    def text_fields(descriptor: Descriptor, seen: set[str]) -> set[str]:
        found: set[str] = set()
        if descriptor.full_name in seen:
            return found
        seen.add(descriptor.full_name)
        for field in descriptor.fields:
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                found |= text_fields(cast(Descriptor, field.message_type), seen)
            elif field.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES):
                found.add(field.full_name.removeprefix("clipsearch.v1."))
        return found

    requests: set[str] = set()
    for module in (epb, spb):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                requests |= text_fields(method.input_type, set())
    assert requests == {
        "Image.encoded",
        "RawImage.rgb",  # image bytes
        "EmbedTextsRequest.texts",
        "ClassifyRequest.labels",
        "ClassifyRequest.prompt_template",  # model input
        "Item.id",
        "GetRequest.ids",
        "DeleteRequest.ids",
        "ListRequest.page_token",
        "StagedIdsRequest.ids",  # opaque keys
        "Metadata.sources",
        "Filter.sources",
        "Filter.source_dir",
        "DeleteRequest.sources",  # stored URIs
        "Metadata.collection",
        "Metadata.content_hash",
        "Metadata.tags",
        "Filter.collections",
        "Filter.tags",
        "Filter.content_hashes",
        "DeleteRequest.collection",  # labels
        "EmbeddingModel.model_id",
        "EmbeddingModel.family",
        "EmbeddingModel.fingerprint",  # compared with the index's record as strings; nothing is loaded by them
        "QueryRequest.said",
        "SaidOptions.languages",
        "Cue.text",
        "CueTrack.name",
        "CueTrack.language",  # full-text query and subtitle text, indexed and matched as words
        "CueWriteRequest.content_hash",
        "CueWriteRequest.collection",
        "CueWriteRequest.signature",
        "CueListRequest.content_hash",
        "CueListRequest.collection",  # a video's cues are keyed by its content hash and collection, as strings
        "AddLibraryRequest.path",
        "LibraryFailure.path",  # normalized as text and stored; the indexer, on its own machine, opens them
        "AddLibraryRequest.name",
        "AddLibraryRequest.collection",
        "RemoveLibraryRequest.name",
        "RequestLibraryRescanRequest.name",
        "ReportLibraryStatusRequest.name",
        "LibraryStatus.indexer",
        "LibraryStatus.message",
        "LibraryFailure.reason",  # labels and messages
    }


def test_a_source_uri_is_stored_as_given_never_opened(stack: Stack) -> None:
    vector = stack.seed.items[0].vector
    sources = ["file:///etc/passwd", "file:///no/such/dir/cat.jpg", "file:///dev/zero", "file:///proc/self/environ"]
    stack.search.Upsert(
        spb.UpsertRequest(items=[spb.Item(id="paths", vector=vector, metadata=spb.Metadata(sources=sources))])
    )
    stored = stack.search.Get(spb.GetRequest(ids=["paths"])).items[0]
    assert sorted(stored.metadata.sources) == sorted(sources)
    assert stack.search.Delete(spb.DeleteRequest(ids=["paths"])).deleted == 1
    assert_index_unchanged(stack)


# --- hostile vectors and names ------------------------------------------------------------------------


def real_vector(stack: Stack, text: str = "a photo of a cat") -> list[float]:
    return list(stack.embedder.EmbedTexts(epb.EmbedTextsRequest(texts=[text]), timeout=30).embeddings[0].values)


def spoiled(vector: list[float], position: int, value: float) -> list[float]:
    changed = list(vector)
    changed[position] = value
    return changed


# name -> (a real CLIP vector -> the hostile one, what the message says for search and for the embedder)
VECTORS: dict[str, tuple[Callable[[list[float]], list[float]], str, str]] = {
    "NaN": (lambda v: spoiled(v, 3, math.nan), "[3] is nan", "NaN or infinite"),
    "+inf": (lambda v: spoiled(v, 0, math.inf), "[0] is inf", "NaN or infinite"),
    "-inf": (lambda v: spoiled(v, 31, -math.inf), "[31] is -inf", "NaN or infinite"),
    "beyond float32 (1e39)": (lambda v: spoiled(v, 7, 1e39), "[7] is inf", "NaN or infinite"),
    "all NaN": (lambda v: [math.nan] * len(v), "[0] is nan", "NaN or infinite"),
    "one value short": (lambda v: v[:-1], "has 31 values", "has 31 values"),
    "one value too many": (lambda v: [*v, 0.5], "has 33 values", "has 33 values"),
    "ViT-B/16 size (512)": (lambda v: (v * 16)[:512], "has 512 values", "has 512 values"),
    "empty": (lambda v: [], "has 0 values", "has 0 values"),
    "all zeros": (lambda v: [0.0] * len(v), "all zeros", "all zeros"),
}


@pytest.mark.parametrize("case", list(VECTORS))
def test_a_hostile_vector_is_refused_by_every_rpc_that_takes_one(stack: Stack, case: str) -> None:
    spoil, search_fragment, embedder_fragment = VECTORS[case]
    vector = spoil(real_vector(stack))
    item = spb.Item(id="hostile", vector=vector, metadata=spb.Metadata(sources=["file:///photos/hostile.png"]))
    calls = {
        "Upsert": (stack.search.Upsert, spb.UpsertRequest(items=[item]), search_fragment),
        "Upsert, in a batch with a good item": (
            stack.search.Upsert,
            spb.UpsertRequest(items=[spb.Item(id="good", vector=stack.seed.items[0].vector), item]),
            search_fragment,
        ),
        "Query": (stack.search.Query, spb.QueryRequest(vector=vector, k=3), search_fragment),
        "Classify": (
            stack.embedder.Classify,
            epb.ClassifyRequest(embedding=epb.Embedding(values=vector), labels=["a cat", "a dog"]),
            embedder_fragment,
        ),
    }
    for name, (method, request, fragment) in calls.items():
        status, details = call(method, request)
        assert status == INVALID and fragment in str(details), (name, status, details)
    assert_serving(stack)
    assert_index_unchanged(stack)


# RediSearch query syntax, in every field a filter or a delete matches on. Each must match nothing: the
# seeded items are in collection "default", tagged "photo", under file:///photos/.
SYNTAX_FILTERS = {
    "collection *": spb.Filter(collections=["*"]),
    "collection default|photo": spb.Filter(collections=["default|photo"]),
    "collection with braces": spb.Filter(collections=["default} | @tags:{photo"]),
    "collection of every syntax character": spb.Filter(collections=[QUERY_SYNTAX]),
    "tag *": spb.Filter(tags=["*"]),
    "tag photo*": spb.Filter(tags=["photo*"]),
    "tag injecting a clause": spb.Filter(tags=["x} | @collection:{default"]),
    "tag -photo": spb.Filter(tags=["-photo"]),
    "tag of every syntax character": spb.Filter(tags=[QUERY_SYNTAX]),
    "source wildcard": spb.Filter(sources=["file:///photos/*"]),
    "source directory wildcard": spb.Filter(source_dir="file:///*"),
    "source directory with syntax": spb.Filter(source_dir="file:///photos}|@id:{*"),
}


@pytest.mark.parametrize("case", list(SYNTAX_FILTERS))
def test_query_syntax_in_a_filter_is_data_and_matches_nothing(stack: Stack, case: str) -> None:
    hostile = SYNTAX_FILTERS[case]
    vector = real_vector(stack)
    assert list(stack.search.Query(spb.QueryRequest(vector=vector, k=10, filter=hostile)).matches) == []
    listed = stack.search.List(spb.ListRequest(filter=hostile))
    assert (list(listed.items), listed.total) == ([], 0)
    assert_index_unchanged(stack)


@pytest.mark.parametrize(
    ("request_", "code", "fragment"),
    [
        (spb.DeleteRequest(collection="*"), OK, ""),
        (spb.DeleteRequest(collection="default|*"), OK, ""),
        (spb.DeleteRequest(collection=QUERY_SYNTAX), OK, ""),
        (spb.DeleteRequest(sources=["file:///photos/*"]), OK, ""),
        (spb.DeleteRequest(ids=["keep*"]), OK, ""),
        (spb.DeleteRequest(ids=["*"]), OK, ""),
        (spb.DeleteRequest(ids=["keep0 keep1"]), INVALID, "printable ASCII"),
        (spb.DeleteRequest(sources=["file:///photos/keep0.png | *"]), INVALID, "absolute URI"),
        (spb.DeleteRequest(collection="c" * 129), INVALID, "129 bytes"),
        (spb.DeleteRequest(), INVALID, ""),
    ],
    ids=[
        "collection *",
        "collection default|*",
        "collection of syntax",
        "source wildcard",
        "id prefix*",
        "id *",
        "id with a space",
        "source with spaces",
        "collection too long",
        "no selector",
    ],
)
def test_a_hostile_delete_deletes_nothing(
    stack: Stack, request_: spb.DeleteRequest, code: grpc.StatusCode, fragment: str
) -> None:
    status, response = call(stack.search.Delete, request_)
    assert status == code, response
    if code == OK:
        assert (cast(spb.DeleteResponse, response).deleted, cast(spb.DeleteResponse, response).updated) == (0, 0)
    else:
        assert fragment in str(response)
    assert_index_unchanged(stack)


@pytest.mark.parametrize("token", ["' @id_hex:*", "*", "6B656570", "6b6", "a" * 5000, "\u202e", "%00"])
def test_a_forged_page_token_is_refused(stack: Stack, token: str) -> None:
    status, details = call(stack.search.List, spb.ListRequest(page_token=token))
    assert status == INVALID and "page_token" in str(details)
    assert_index_unchanged(stack)


def test_query_syntax_in_stored_names_round_trips_and_matches_only_itself(stack: Stack) -> None:
    tags = [QUERY_SYNTAX, "*", "photo*", "x} | @collection:{default", "日本語 ✓", "emoji 🐈"]
    collection = "default|*"
    source = "file:///photos/%40%7B%7D%7C%2A/cat%20%27quoted%27.png"  # percent-encoded syntax characters
    item = spb.Item(
        id="syntax",
        vector=real_vector(stack, "a cat"),
        metadata=spb.Metadata(tags=tags, collection=collection, sources=[source]),
    )
    stack.search.Upsert(spb.UpsertRequest(items=[item]))
    try:
        assert stack.search.Get(spb.GetRequest(ids=["syntax"])).items[0].metadata == item.metadata
        for matching in [spb.Filter(tags=[t]) for t in tags] + [
            spb.Filter(collections=[collection]),
            spb.Filter(sources=[source]),
            spb.Filter(source_dir="file:///photos/%40%7B%7D%7C%2A"),
        ]:
            assert [i.id for i in stack.search.List(spb.ListRequest(filter=matching)).items] == ["syntax"], matching
        for other in (spb.Filter(collections=["default"]), spb.Filter(tags=["photo"])):
            assert "syntax" not in [i.id for i in stack.search.List(spb.ListRequest(filter=other)).items]
        assert stack.search.Delete(spb.DeleteRequest(collection="*")).deleted == 0
    finally:
        assert stack.search.Delete(spb.DeleteRequest(collection=collection)).deleted == 1
    assert_index_unchanged(stack)


# --- text -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("texts", "code", "fragment"),
    [
        (["a" * 1_000_000], INVALID, "1000000 bytes exceed the limit of 65536"),
        (["ok", "é" * 40_000], INVALID, "texts[1]: 80000 bytes"),
        (["\u200b\u2060\ufeff" * 1000], OK, ""),  # zero-width characters only: not empty, and tokenized fine
        (["\x00" * 1000], OK, ""),
        (["🐈" * 16_000], OK, ""),  # 64,000 bytes, far past 77 tokens: truncated
        ([QUERY_SYNTAX * 100], OK, ""),
        ([" \t\n\r\x0b\x0c"], INVALID, "empty text"),
    ],
    ids=["1 MB", "80 KB of é", "zero-width only", "NUL bytes", "64 KB of emoji", "query syntax", "whitespace"],
)
def test_hostile_text_gets_a_clear_status(stack: Stack, texts: list[str], code: grpc.StatusCode, fragment: str) -> None:
    status, response = call(stack.embedder.EmbedTexts, epb.EmbedTextsRequest(texts=texts))
    assert status == code, response
    if code == OK:
        vector = np.asarray(cast(epb.EmbedTextsResponse, response).embeddings[0].values, dtype=np.float64)
        assert np.all(np.isfinite(vector)) and math.isclose(float(np.linalg.norm(vector)), 1.0, abs_tol=1e-4)
    else:
        assert fragment in str(response)
    status, response = call(
        stack.embedder.Classify,
        epb.ClassifyRequest(embedding=epb.Embedding(values=stack.seed.items[0].vector), labels=[*texts, "a cat"]),
    )
    assert status == code, response
    assert_serving(stack)


# --- message size limits -------------------------------------------------------------------------------


def test_every_server_refuses_a_message_over_its_limit(
    stack: Stack, tiny_clip_dir: object, tiny_embedder: ClipEmbedder, search_server_factory: SearchServerFactory
) -> None:
    limit = 1024 * 1024
    searcher = search_server_factory(max_message_bytes=limit)
    config = embedder_test_config(cast(Path, tiny_clip_dir), limits=Limits(max_message_bytes=limit))
    with (
        running_embedder(config, tiny_embedder) as embedder_server,
        grpc.insecure_channel(f"127.0.0.1:{embedder_server.port}") as embedder_channel,
        grpc.insecure_channel(searcher.address) as search_channel,
    ):
        embedder = embedder_pb2_grpc.EmbedderStub(embedder_channel)
        search = search_pb2_grpc.SearchStub(search_channel)
        vector = stack.seed.items[0].vector
        oversized = {
            "EmbedImages": (
                embedder.EmbedImages,
                epb.EmbedImagesRequest(images=[epb.Image(encoded=encode_image(noise(700, 700)))]),
            ),
            "EmbedTexts": (embedder.EmbedTexts, epb.EmbedTextsRequest(texts=["a cat " * 2000] * 100)),
            "Classify": (
                embedder.Classify,
                epb.ClassifyRequest(
                    embedding=epb.Embedding(values=vector), labels=[f"label {i} " * 200 for i in range(1000)]
                ),
            ),
            "Upsert": (
                search.Upsert,
                spb.UpsertRequest(
                    items=[
                        spb.Item(id=f"i{n}", vector=vector, metadata=spb.Metadata(tags=["x" * 250] * 50))
                        for n in range(100)
                    ]
                ),
            ),
            "Get": (search.Get, spb.GetRequest(ids=["x" * 256] * 5000)),
        }
        for name, (method, request) in oversized.items():
            assert request.ByteSize() > limit, name
            status, details = call(method, request)
            assert status == EXHAUSTED and str(limit) in str(details), (name, status, details)
        assert len(embedder.EmbedTexts(epb.EmbedTextsRequest(texts=["still here"])).embeddings) == 1
        stats = search.Stats(spb.StatsRequest())
        assert (stats.percent_indexed, stats.items) == (100, 0)
