"""Property-based fuzz of both services' request messages: every call ends in OK or a deliberate client-error
status, never INTERNAL or UNKNOWN; what succeeds is consistent; what is refused writes nothing."""

from __future__ import annotations

import functools
import io
import math
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, cast

import grpc
import numpy as np
import pytest
from google.protobuf.descriptor import EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from clipsearch.limits import MAX_DIMENSION
from clipsearch.serving import GrpcServer
from clipsearch.v1 import embedder_pb2 as epb
from clipsearch.v1 import embedder_pb2_grpc, search_pb2_grpc
from clipsearch.v1 import search_pb2 as spb
from tests.support.search import TEST_DIMENSION, SearchServerFactory

# What a server may answer to a request it refuses: each says the request, not the server, is at fault.
CLIENT_ERRORS = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)
DIMENSION = TEST_DIMENSION  # the tiny CLIP's vectors are 32-d, like the test search indexes
CALL_TIMEOUT = 60.0

# Pillow warns about the corrupt EXIF blocks that flipped bytes make; the server's answer is what is tested.
pytestmark = pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")

FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)

# --- strategies for any message, from its descriptor ---------------------------------------------------

Overrides = Mapping[str, st.SearchStrategy[Any]]  # full field name -> strategy for its (whole) value

_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def _ints(low: int, high: int) -> st.SearchStrategy[int]:
    edges = [v for v in (low, high, -1, 0, 1, 10, 100, 1000, 1001, 10_000) if low <= v <= high]
    return st.one_of(st.sampled_from(edges), st.integers(low, high))


# Any Unicode (no lone surrogates, which protobuf strings cannot carry), short, or one character repeated
# up to past the services' byte limits.
ANY_TEXT = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=40),
    st.builds(lambda c, n: c * n, st.characters(exclude_categories=["Cs"]), st.integers(0, 70_000)),
)
ANY_BYTES = st.one_of(
    st.binary(max_size=64), st.builds(lambda b, n: b * n, st.binary(min_size=1, max_size=4), st.integers(0, 300_000))
)


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return ANY_TEXT
    if kind == FieldDescriptor.TYPE_BYTES:
        return ANY_BYTES
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_FLOAT:
        return st.floats(width=32)  # NaN, infinities, subnormals and extremes included
    if kind == FieldDescriptor.TYPE_DOUBLE:
        return st.floats()
    if kind == FieldDescriptor.TYPE_ENUM:  # proto3 enums are open: any int32 can arrive
        return st.one_of(
            st.sampled_from([v.number for v in cast(EnumDescriptor, field.enum_type).values]),
            st.integers(-(2**31), 2**31 - 1),
        )
    if kind in _INT_RANGES:
        return _ints(*_INT_RANGES[kind])
    raise AssertionError(f"no strategy for {field.full_name} (type {kind})")


def _size(value: Any) -> int:
    return value.ByteSize() if isinstance(value, Message) else len(value) if isinstance(value, (str, bytes)) else 8


def _repeat(element: Any, count: int) -> list[Any]:
    # At most about 1 MB in all, unless one element is larger: small elements still pass every count limit,
    # and the embedder, which tokenizes a text in full before truncating it, is not kept busy for minutes.
    return [element] * min(count, max(1, 1_000_000 // max(1, _size(element))))


def _repeated(element: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    # Short lists of varied elements, or one element repeated up to past the services' count limits.
    return st.one_of(st.lists(element, max_size=6), st.builds(_repeat, element, st.integers(0, 1100)))


def _named(name: str, value: Any) -> dict[str, Any]:
    return {name: value}


def field_strategy(field: FieldDescriptor, overrides: Overrides, depth: int) -> st.SearchStrategy[Any]:
    if field.full_name in overrides:
        return overrides[field.full_name]
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        element = message_strategy(field.message_type, overrides, depth + 1)
    else:
        element = _scalar(field)
    return _repeated(element) if field.is_repeated else element


def message_strategy(descriptor: Any, overrides: Overrides | None = None, depth: int = 0) -> st.SearchStrategy[Message]:
    """Messages of `descriptor` with any subset of fields set (one field at most of each oneof) to any value;
    `overrides` replace the strategy of a field, or of a message type, by full name."""
    overrides = overrides or {}
    if descriptor.full_name in overrides:
        return overrides[descriptor.full_name]
    cls = GetMessageClass(descriptor)
    if depth > 4:
        return st.just(cls())
    real_oneofs = [o for o in descriptor.oneofs if len(o.fields) > 1]
    in_oneof = {f.name for o in real_oneofs for f in o.fields}
    plain = {f.name: field_strategy(f, overrides, depth) for f in descriptor.fields if f.name not in in_oneof}
    choices = [
        st.one_of(
            st.just({}), *[field_strategy(f, overrides, depth).map(functools.partial(_named, f.name)) for f in o.fields]
        )
        for o in real_oneofs
    ]

    def build(values: dict[str, Any], chosen: list[dict[str, Any]]) -> Message:
        return cls(**values, **{name: value for choice in chosen for name, value in choice.items()})

    return st.builds(build, st.fixed_dictionaries({}, optional=plain), st.tuples(*choices).map(list))


# --- domain-aware values, so that many requests get past the first check ----------------------------


def _encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


@st.composite
def image_files(draw: st.DrawFn) -> bytes:
    """A small image file in a common format, sometimes cut short or with a byte flipped."""
    width, height = draw(st.integers(1, 80)), draw(st.integers(1, 80))
    mode = draw(st.sampled_from(["RGB", "L", "RGBA", "P", "1", "I;16"]))
    fmt = draw(st.sampled_from(["PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF"]))
    if fmt == "JPEG" and mode not in ("RGB", "L"):
        mode = "RGB"
    if fmt in ("GIF", "WEBP", "BMP") and mode == "I;16":
        mode = "L"
    seed = draw(st.integers(0, 2**32 - 1))
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    data = _encode(image, fmt)
    damage = draw(st.sampled_from(["none", "none", "truncate", "flip"]))
    if damage == "truncate":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif damage == "flip":
        position = draw(st.integers(0, len(data) - 1))
        data = data[:position] + bytes([data[position] ^ draw(st.integers(1, 255))]) + data[position + 1 :]
    return data


@st.composite
def raw_images(draw: st.DrawFn) -> epb.RawImage:
    """Raw RGB pixels whose length matches the declared size, or is off by a little."""
    width, height = draw(st.integers(0, 70)), draw(st.integers(0, 70))
    off_by = draw(st.sampled_from([0, 0, 0, -1, 1, -3]))
    return epb.RawImage(rgb=bytes(max(0, width * height * 3 + off_by)), width=width, height=height)


FINITE = st.floats(-10, 10, allow_nan=False, width=32)
ANY_FLOAT32 = st.floats(width=32)
VECTORS = st.one_of(
    st.lists(FINITE, min_size=DIMENSION, max_size=DIMENSION),  # mostly valid
    st.lists(FINITE, min_size=DIMENSION, max_size=DIMENSION),
    st.lists(ANY_FLOAT32, min_size=DIMENSION, max_size=DIMENSION),  # NaN, infinities, 3e38
    st.lists(FINITE, max_size=DIMENSION + 3),  # wrong lengths
    st.builds(lambda n: [0.0] * n, st.sampled_from([0, DIMENSION])),
    st.builds(lambda v, n: [v] * n, ANY_FLOAT32, st.integers(0, 20_000)),
)


def _nonzero(vector: list[float]) -> list[float]:
    return vector if any(vector) else [1.0, *vector[1:]]


GOOD_VECTORS = st.lists(FINITE, min_size=DIMENSION, max_size=DIMENSION).map(_nonzero)
MOSTLY_GOOD_VECTORS = st.one_of(GOOD_VECTORS, GOOD_VECTORS, GOOD_VECTORS, VECTORS)
PRINTABLE = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=20)
QUERY_SYNTAX = st.text(
    st.sampled_from([*list("@{}|*()-~\"'\\$:;,.%[]<>=!&^ "), "a", "b", "ü", "🐈"]), min_size=1, max_size=12
)
IDS = st.one_of(PRINTABLE, PRINTABLE, QUERY_SYNTAX, ANY_TEXT)
NAMES = st.one_of(QUERY_SYNTAX, st.sampled_from(["", "default", "photos"]), ANY_TEXT)
SOURCES = st.one_of(PRINTABLE.map(lambda s: "file:///" + s), PRINTABLE, st.sampled_from(["file:///", ""]), ANY_TEXT)
HASHES = st.one_of(st.text("0123456789abcdef", min_size=1, max_size=64), ANY_TEXT)

EMBEDDER_OVERRIDES: Overrides = {
    "clipsearch.v1.Image.encoded": st.one_of(image_files(), image_files(), ANY_BYTES),
    "clipsearch.v1.RawImage": st.one_of(raw_images(), raw_images(), message_strategy(epb.RawImage.DESCRIPTOR)),
    "clipsearch.v1.Embedding.values": VECTORS,
    "clipsearch.v1.EmbedImagesRequest.images": st.one_of(
        st.lists(
            message_strategy(
                epb.Image.DESCRIPTOR,
                {
                    "clipsearch.v1.Image.encoded": st.one_of(image_files(), ANY_BYTES),
                    "clipsearch.v1.RawImage": raw_images(),
                },
            ),
            max_size=5,
        ),
        st.builds(lambda n: [epb.Image(raw=epb.RawImage(rgb=bytes(3), width=1, height=1))] * n, st.integers(60, 70)),
    ),  # around the batch limit
    "clipsearch.v1.ClassifyRequest.labels": st.one_of(
        st.lists(st.one_of(QUERY_SYNTAX, st.text(min_size=1, max_size=60)), min_size=1, max_size=6, unique=True),
        st.lists(st.one_of(QUERY_SYNTAX, ANY_TEXT), max_size=6),
        _repeated(ANY_TEXT),
    ),
    "clipsearch.v1.ClassifyRequest.prompt_template": st.one_of(
        st.just(""), st.just("a photo of {}"), ANY_TEXT, ANY_TEXT.map(lambda t: t + "{}")
    ),
}
SEARCH_FIELDS: Overrides = {
    "clipsearch.v1.Item.vector": VECTORS,
    "clipsearch.v1.QueryRequest.vector": VECTORS,
    "clipsearch.v1.Item.id": IDS,
    "clipsearch.v1.GetRequest.ids": st.one_of(st.lists(IDS, max_size=6), _repeated(IDS)),
    "clipsearch.v1.DeleteRequest.ids": st.one_of(st.lists(IDS, max_size=6), _repeated(IDS)),
    "clipsearch.v1.Metadata.sources": st.lists(SOURCES, max_size=4),
    "clipsearch.v1.Metadata.tags": st.lists(NAMES, max_size=4),
    "clipsearch.v1.Metadata.collection": NAMES,
    "clipsearch.v1.Metadata.content_hash": HASHES,
    "clipsearch.v1.Filter.collections": st.lists(NAMES, max_size=3),
    "clipsearch.v1.Filter.tags": st.lists(NAMES, max_size=3),
    "clipsearch.v1.Filter.sources": st.lists(SOURCES, max_size=3),
    "clipsearch.v1.Filter.source_dir": SOURCES,
    "clipsearch.v1.Filter.content_hashes": st.lists(HASHES, max_size=3),
    "clipsearch.v1.DeleteRequest.sources": st.lists(SOURCES, max_size=3),
    "clipsearch.v1.DeleteRequest.collection": NAMES,
}
TAG_TEXT = st.text(st.characters(exclude_categories=["Cc", "Cs"]), min_size=1, max_size=30)
VALID_SOURCES = st.lists(
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="/"), min_size=1, max_size=12),
    min_size=1,
    max_size=4,
).map(lambda parts: "file:///" + "/".join(parts))


@st.composite
def valid_items(draw: st.DrawFn, vectors: st.SearchStrategy[list[float]] = GOOD_VECTORS) -> spb.Item:
    """Items a correct server stores (given good `vectors`): any Unicode, query syntax included, in tags and
    collection."""
    return spb.Item(
        id=draw(st.one_of(PRINTABLE, st.sampled_from(["seed0", "seed1"]))),  # new, or replacing a stored one
        vector=draw(vectors),
        metadata=spb.Metadata(
            sources=draw(st.lists(VALID_SOURCES, max_size=3)),
            media_type=draw(st.sampled_from([v.number for v in spb.MediaType.DESCRIPTOR.values])),  # type: ignore[arg-type]
            collection=draw(st.one_of(st.just(""), st.text(max_size=30))),  # control characters allowed here
            timestamp_seconds=draw(st.floats(allow_nan=False, allow_infinity=False)),
            frame_index=draw(_ints(-(2**63), 2**63 - 1)),
            content_hash=draw(st.text("0123456789abcdef", max_size=64)),
            width=draw(_ints(0, 2**32 - 1)),
            height=draw(_ints(0, 2**32 - 1)),
            tags=draw(st.lists(TAG_TEXT, max_size=4)),
        ),
    )


ITEMS = st.one_of(
    valid_items(MOSTLY_GOOD_VECTORS),
    cast("st.SearchStrategy[spb.Item]", message_strategy(spb.Item.DESCRIPTOR, SEARCH_FIELDS)),
)
SEARCH_OVERRIDES: Overrides = {
    **SEARCH_FIELDS,
    "clipsearch.v1.UpsertRequest.items": st.one_of(
        st.lists(valid_items(), min_size=1, max_size=4, unique_by=lambda item: item.id),
        st.lists(ITEMS, min_size=1, max_size=4, unique_by=lambda item: item.id),
        st.lists(ITEMS, max_size=4),
        st.builds(lambda item, n: [item] * n, ITEMS, st.sampled_from([2, 1001])),  # a duplicate id; one too many
    ),
}


def requests(
    message: type[Message], overrides: Overrides, plausible: st.SearchStrategy[Message] | None = None
) -> st.SearchStrategy[Message]:
    """Any request of `message`; with `plausible`, two thirds are drawn from it (requests that mostly get
    past validation, to reach the model or Redis)."""
    generic = message_strategy(message.DESCRIPTOR, overrides)
    return generic if plausible is None else st.one_of(plausible, plausible, generic)


def built(
    cls: type[Message], required: Mapping[str, st.SearchStrategy[Any]] | None = None, **optional: st.SearchStrategy[Any]
) -> st.SearchStrategy[Message]:
    """Messages of `cls` with the `required` fields set and any subset of the `optional` ones."""
    return st.fixed_dictionaries(dict(required or {}), optional=optional).map(lambda values: cls(**values))


HEX = st.text("0123456789abcdef", min_size=1, max_size=64)
LABELS = st.lists(st.one_of(QUERY_SYNTAX, st.text(min_size=1, max_size=60)), min_size=1, max_size=6, unique=True)
PLAUSIBLE_CLASSIFY = st.one_of(
    built(
        epb.ClassifyRequest,
        {
            "image": st.one_of(image_files(), image_files(), ANY_BYTES).map(lambda data: epb.Image(encoded=data)),
            "labels": LABELS,
        },
        prompt_template=st.sampled_from(["a photo of {}", "{}", "«{}» 🐈", "{0} {name} {}", "{}{}", "none"]),
    ),
    built(
        epb.ClassifyRequest,
        {"embedding": MOSTLY_GOOD_VECTORS.map(lambda v: epb.Embedding(values=v)), "labels": LABELS},
        prompt_template=st.sampled_from(["a photo of {}", "{}"]),
    ),
)
SEED_IDS = st.sampled_from([f"seed{n}" for n in range(5)])
SEED_SOURCES = st.sampled_from([f"file:///seed/{n}.jpg" for n in range(5)] + ["file:///seed/"])
PLAUSIBLE_FILTERS = built(
    spb.Filter,
    collections=st.lists(st.one_of(st.just("photos"), st.text(max_size=20)), max_size=2),
    tags=st.lists(st.one_of(st.just("@{}|*"), TAG_TEXT), max_size=2),
    sources=st.lists(st.one_of(SEED_SOURCES, VALID_SOURCES), max_size=2),
    source_dir=st.one_of(SEED_SOURCES, VALID_SOURCES),
    media_type=st.sampled_from([v.number for v in spb.MediaType.DESCRIPTOR.values]),
    min_timestamp_seconds=st.floats(-1e9, 1e9),
    max_timestamp_seconds=st.floats(-1e9, 1e9),
    content_hashes=st.lists(HEX, max_size=2),
)
PLAUSIBLE_QUERIES = built(
    spb.QueryRequest,
    {"vector": MOSTLY_GOOD_VECTORS},
    k=st.integers(0, 50),
    offset=st.integers(0, 20),
    filter=PLAUSIBLE_FILTERS,
    min_score=st.floats(-1.5, 1.5),
    ef_runtime=st.integers(0, 500),
    with_vectors=st.booleans(),
)
PLAUSIBLE_UPSERTS = built(
    spb.UpsertRequest, {"items": st.lists(valid_items(), min_size=1, max_size=4, unique_by=lambda item: item.id)}
)
PLAUSIBLE_LISTS = built(
    spb.ListRequest, filter=PLAUSIBLE_FILTERS, page_size=st.integers(0, 50), with_vectors=st.booleans()
)
PLAUSIBLE_DELETES = st.one_of(
    built(spb.DeleteRequest, {"ids": st.lists(st.one_of(SEED_IDS, PRINTABLE), min_size=1, max_size=3)}),
    built(spb.DeleteRequest, {"sources": st.lists(st.one_of(SEED_SOURCES, VALID_SOURCES), min_size=1, max_size=3)}),
    built(spb.DeleteRequest, {"collection": st.one_of(st.just("photos"), st.text(min_size=1, max_size=20))}),
)


# --- calling ----------------------------------------------------------------------------------------


def call(method: Callable[..., Any], request: Message) -> tuple[grpc.StatusCode, Any]:
    """(OK, response) or (code, details); fails the test on a status that blames the server."""
    try:
        response = method(request, timeout=CALL_TIMEOUT)
    except grpc.RpcError as error:
        code = error.code()
        event(code.name)  # --hypothesis-show-statistics tells how often each status came back
        assert code in CLIENT_ERRORS, (
            f"{code.name}: {error.details()!r} for a {type(request).__name__} of {request.ByteSize()} bytes"
        )
        assert error.details(), f"{code.name} without a message"
        return code, error.details()
    event("OK")
    return grpc.StatusCode.OK, response


def acceptable_vector(values: Any) -> bool:
    """What the contract lets a server accept as a vector: DIMENSION finite float32 values, not all zero."""
    vector = np.asarray(values, dtype=np.float32)
    return vector.shape == (DIMENSION,) and bool(np.all(np.isfinite(vector))) and bool(np.any(vector))


def assert_unit_vectors(values: Any, dimension: int = DIMENSION) -> None:
    vector = np.asarray(values, dtype=np.float64)
    assert vector.shape == (dimension,) and np.all(np.isfinite(vector))
    assert math.isclose(float(np.linalg.norm(vector)), 1.0, abs_tol=1e-4)


# --- the embedder -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedder(embedder_server: GrpcServer) -> Iterator[embedder_pb2_grpc.EmbedderStub]:
    with grpc.insecure_channel(f"127.0.0.1:{embedder_server.port}") as channel:
        stub = embedder_pb2_grpc.EmbedderStub(channel)
        yield stub
        # Still serving after everything the fuzz sent.
        assert_unit_vectors(stub.EmbedTexts(epb.EmbedTextsRequest(texts=["still here"])).embeddings[0].values)


@FUZZ
@given(request=requests(epb.EmbedImagesRequest, EMBEDDER_OVERRIDES))
def test_embed_images(embedder: embedder_pb2_grpc.EmbedderStub, request: epb.EmbedImagesRequest) -> None:
    code, response = call(embedder.EmbedImages, request)
    if code != grpc.StatusCode.OK:
        return
    assert len(response.results) == len(request.images) > 0
    for result in response.results:
        if result.WhichOneof("result") == "embedding":
            assert_unit_vectors(result.embedding.values)
            assert result.width >= 1 and result.height >= 1
        else:
            assert request.allow_partial, "an item error without allow_partial"
            assert result.error.code in (
                grpc.StatusCode.INVALID_ARGUMENT.value[0],
                grpc.StatusCode.RESOURCE_EXHAUSTED.value[0],
            )
            assert result.error.message


@FUZZ
@given(request=requests(epb.EmbedTextsRequest, EMBEDDER_OVERRIDES))
def test_embed_texts(embedder: embedder_pb2_grpc.EmbedderStub, request: epb.EmbedTextsRequest) -> None:
    code, response = call(embedder.EmbedTexts, request)
    if code == grpc.StatusCode.OK:
        assert all(text.strip() for text in request.texts) and len(request.texts) <= 256
        assert len(response.embeddings) == len(request.texts) > 0
        for embedding in response.embeddings:
            assert_unit_vectors(embedding.values)


@FUZZ
@given(request=requests(epb.ClassifyRequest, EMBEDDER_OVERRIDES, PLAUSIBLE_CLASSIFY))
def test_classify(embedder: embedder_pb2_grpc.EmbedderStub, request: epb.ClassifyRequest) -> None:
    code, response = call(embedder.Classify, request)
    if code == grpc.StatusCode.OK:
        labels = list(request.labels)
        assert 0 < len(set(labels)) == len(labels) <= 1000 and all(label.strip() for label in labels)
        assert request.WhichOneof("input") == "image" or acceptable_vector(request.embedding.values)
        assert [s.label for s in response.scores] == list(request.labels)
        assert math.isclose(sum(s.probability for s in response.scores), 1.0, abs_tol=1e-4)
        assert all(math.isfinite(s.logit) and -1.0001 <= s.cosine <= 1.0001 for s in response.scores)


# --- the search service -----------------------------------------------------------------------------


class SearchFuzz:
    """A search server with its own index, and the calls the properties need."""

    def __init__(self, stub: search_pb2_grpc.SearchStub) -> None:
        self.stub = stub

    def count(self) -> int:
        stats = self.stub.Stats(spb.StatsRequest(), timeout=CALL_TIMEOUT)
        assert not stats.indexing and stats.percent_indexed == 100
        return stats.items


@pytest.fixture
def search(search_server_factory: SearchServerFactory) -> Iterator[SearchFuzz]:
    running = search_server_factory()
    with grpc.insecure_channel(running.address) as channel:
        fuzz = SearchFuzz(search_pb2_grpc.SearchStub(channel))
        # A few real items, so that queries, lists and deletes have something to find.
        fuzz.stub.Upsert(
            spb.UpsertRequest(
                items=[
                    spb.Item(
                        id=f"seed{n}",
                        vector=np.random.default_rng(n).standard_normal(DIMENSION).tolist(),
                        metadata=spb.Metadata(sources=[f"file:///seed/{n}.jpg"], tags=["@{}|*"], collection="photos"),
                    )
                    for n in range(5)
                ]
            )
        )
        yield fuzz
        fuzz.count()  # still answering
        fuzz.stub.ListCollections(spb.ListCollectionsRequest(), timeout=CALL_TIMEOUT)


@FUZZ
@given(request=requests(spb.UpsertRequest, SEARCH_OVERRIDES, PLAUSIBLE_UPSERTS))
def test_upsert(search: SearchFuzz, request: spb.UpsertRequest) -> None:
    before = search.count()
    code, response = call(search.stub.Upsert, request)
    if code != grpc.StatusCode.OK:
        assert search.count() == before, "a refused upsert changed the index"
        return
    assert response.upserted == len(request.items) > 0
    assert len({item.id for item in request.items}) == len(request.items) <= 1000
    assert all(acceptable_vector(item.vector) for item in request.items)
    assert search.count() == before + response.created
    got = search.stub.Get(spb.GetRequest(ids=[item.id for item in request.items]), timeout=CALL_TIMEOUT)
    assert list(got.missing_ids) == []
    for item, stored in zip(request.items, got.items, strict=False):
        assert stored.id == item.id
        assert set(item.metadata.sources) <= set(stored.metadata.sources)
        expected = spb.Metadata()
        expected.CopyFrom(item.metadata)
        expected.collection = item.metadata.collection or "default"
        expected.ClearField("tags")
        expected.tags.extend(dict.fromkeys(item.metadata.tags))  # each stored once
        expected.ClearField("sources")
        expected.sources.extend(stored.metadata.sources)
        assert stored.metadata == expected


@FUZZ
@given(request=requests(spb.QueryRequest, SEARCH_OVERRIDES, PLAUSIBLE_QUERIES))
def test_query(search: SearchFuzz, request: spb.QueryRequest) -> None:
    code, response = call(search.stub.Query, request)
    if code == grpc.StatusCode.OK:
        said_alone = bool(request.said.strip()) and not request.vector
        assert (said_alone or acceptable_vector(request.vector)) and 0 <= request.k <= 1000 and request.offset >= 0
        scores = [m.score for m in response.matches]
        assert len(scores) <= (request.k or 10)
        assert scores == sorted(scores, reverse=True)
        if not request.said.strip():  # cosine; a said score is BM25 relevance or a fused rank
            assert all(-1.0001 <= s <= 1.0001 for s in scores)


@FUZZ
@given(request=requests(spb.GetRequest, SEARCH_OVERRIDES))
def test_get(search: SearchFuzz, request: spb.GetRequest) -> None:
    code, response = call(search.stub.Get, request)
    if code == grpc.StatusCode.OK:
        assert {i.id for i in response.items} | set(response.missing_ids) <= set(request.ids)


@FUZZ
@given(request=requests(spb.ListRequest, SEARCH_OVERRIDES, PLAUSIBLE_LISTS))
def test_list(search: SearchFuzz, request: spb.ListRequest) -> None:
    code, response = call(search.stub.List, request)
    if code == grpc.StatusCode.OK:
        ids = [i.id for i in response.items]
        assert ids == sorted(ids) and len(ids) <= (request.page_size or 100) and response.total >= len(ids)


@FUZZ
@given(request=requests(spb.DeleteRequest, SEARCH_OVERRIDES, PLAUSIBLE_DELETES))
def test_delete(search: SearchFuzz, request: spb.DeleteRequest) -> None:
    before = search.count()
    code, response = call(search.stub.Delete, request)
    if code == grpc.StatusCode.OK:
        assert search.count() == before - response.deleted
    else:
        assert search.count() == before, "a refused delete changed the index"


# Reindex calls in any order, with plausible and arbitrary models: each gets OK or a status that blames the
# request (no reindex in progress, another model's), never one that blames the server.
MODELS = st.one_of(
    st.sampled_from(
        [
            spb.EmbeddingModel(model_id="models/a", family="clip", dimension=DIMENSION, fingerprint="sha256:a"),
            spb.EmbeddingModel(model_id="models/b", family="clip", dimension=16),
        ]
    ),
    message_strategy(spb.EmbeddingModel.DESCRIPTOR, {"clipsearch.v1.EmbeddingModel.model_id": NAMES}),
)
REINDEX_CALLS = st.lists(
    st.one_of(
        built(spb.BeginReindexRequest, model=MODELS),
        built(spb.StagedIdsRequest, ids=st.one_of(st.lists(st.one_of(SEED_IDS, IDS), max_size=4), _repeated(IDS))),
        built(spb.FinishReindexRequest, model=MODELS),
        built(spb.AbortReindexRequest),
        built(
            spb.UpsertRequest,
            {"items": st.lists(valid_items(), min_size=1, max_size=3, unique_by=lambda item: item.id)},
            model=MODELS,
            staging=st.booleans(),
        ),
        built(spb.QueryRequest, {"vector": MOSTLY_GOOD_VECTORS}, model=MODELS),
    ),
    min_size=1,
    max_size=6,
)


@FUZZ
@given(calls=REINDEX_CALLS)
def test_reindex_calls_in_any_order(search: SearchFuzz, calls: list[Message]) -> None:
    methods: dict[type[Message], Callable[..., Any]] = {
        spb.BeginReindexRequest: search.stub.BeginReindex,
        spb.StagedIdsRequest: search.stub.StagedIds,
        spb.FinishReindexRequest: search.stub.FinishReindex,
        spb.AbortReindexRequest: search.stub.AbortReindex,
        spb.UpsertRequest: search.stub.Upsert,
        spb.QueryRequest: search.stub.Query,
    }
    try:
        for request in calls:
            code, response = call(methods[type(request)], request)
            if code == grpc.StatusCode.OK and isinstance(request, spb.BeginReindexRequest):
                assert request.model.model_id and 1 <= request.model.dimension <= MAX_DIMENSION
                assert response.model.model_id == request.model.model_id and response.staging_index
    finally:
        call(search.stub.AbortReindex, spb.AbortReindexRequest())
    # Still answering; an index a finish switched to may still be scanning its keys for a moment.
    deadline = time.monotonic() + 30
    while (stats := search.stub.Stats(spb.StatsRequest(), timeout=CALL_TIMEOUT)).indexing:
        assert time.monotonic() < deadline, "the index never finished indexing"
        time.sleep(0.01)
    assert stats.percent_indexed == 100
