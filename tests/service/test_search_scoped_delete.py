"""Search.Delete with sources scoped to a collection and/or ids, over real gRPC and a real Redis."""

from __future__ import annotations

import itertools

import grpc
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from clipsearch.v1 import search_pb2 as pb
from clipsearch.v1 import search_pb2_grpc
from tests.support.search import make_item, random_vectors

CAT = "file:///photos/cat.jpg"
DOG = "file:///photos/dog.jpg"
COPY = "file:///backup/cat.jpg"


def sources_by_id(stub: search_pb2_grpc.SearchStub) -> dict[str, list[str]]:
    """Every stored item's sources, by id."""
    return {i.id: list(i.metadata.sources) for i in stub.List(pb.ListRequest(page_size=1000)).items}


def listing(stub: search_pb2_grpc.SearchStub, f: pb.Filter) -> list[str]:
    return [i.id for i in stub.List(pb.ListRequest(filter=f, page_size=1000)).items]


@pytest.fixture
def library(search_stub: search_pb2_grpc.SearchStub) -> search_pb2_grpc.SearchStub:
    """The same files indexed into two collections ("home" and "work") and the default one."""
    v = random_vectors(6, seed=40)
    search_stub.Upsert(
        pb.UpsertRequest(
            items=[
                make_item("home-cat", v[0], sources=[CAT], collection="home"),
                make_item("home-cat-copy", v[1], sources=[CAT, COPY], collection="home"),
                make_item("home-dog", v[2], sources=[DOG], collection="home"),
                make_item("work-cat", v[3], sources=[CAT], collection="work"),
                make_item("work-cat-copy", v[4], sources=[CAT, COPY], collection="work"),
                make_item("default-cat", v[5], sources=[CAT]),
            ]
        )
    )
    return search_stub


def test_sources_scoped_to_a_collection_leave_other_collections_alone(library: search_pb2_grpc.SearchStub) -> None:
    reply = library.Delete(pb.DeleteRequest(sources=[CAT, DOG], collection="home"))

    assert (reply.deleted, reply.updated) == (2, 1)
    assert sources_by_id(library) == {
        "home-cat-copy": [COPY],
        "work-cat": [CAT],
        "work-cat-copy": [CAT, COPY],
        "default-cat": [CAT],
    }
    # The index follows: the file is no longer found in that collection, but still in the others.
    assert listing(library, pb.Filter(sources=[CAT], collections=["home"])) == []
    assert listing(library, pb.Filter(source_dir="file:///photos/", collections=["home"])) == []
    assert listing(library, pb.Filter(source_dir="file:///backup/", collections=["home"])) == ["home-cat-copy"]
    assert listing(library, pb.Filter(sources=[CAT])) == ["default-cat", "work-cat", "work-cat-copy"]


def test_the_default_collection_is_named_default(library: search_pb2_grpc.SearchStub) -> None:
    reply = library.Delete(pb.DeleteRequest(sources=[CAT], collection="default"))
    assert (reply.deleted, reply.updated) == (1, 0)
    assert "default-cat" not in sources_by_id(library)
    assert len(sources_by_id(library)) == 5


def test_sources_scoped_to_ids_change_only_those_items(library: search_pb2_grpc.SearchStub) -> None:
    # An id that does not exist, and one that does not list the source, are ignored.
    reply = library.Delete(pb.DeleteRequest(sources=[CAT], ids=["work-cat-copy", "home-dog", "never-existed"]))

    assert (reply.deleted, reply.updated) == (0, 1)
    stored = sources_by_id(library)
    assert stored["work-cat-copy"] == [COPY]
    assert stored["home-dog"] == [DOG]
    assert stored["work-cat"] == stored["home-cat"] == stored["default-cat"] == [CAT]
    assert listing(library, pb.Filter(sources=[CAT], collections=["work"])) == ["work-cat"]


def test_sources_scoped_to_ids_and_a_collection_need_both(library: search_pb2_grpc.SearchStub) -> None:
    # Only those of the ids whose item is in the collection: "work-cat" is in another one.
    reply = library.Delete(pb.DeleteRequest(sources=[CAT], ids=["home-cat", "work-cat"], collection="home"))

    assert (reply.deleted, reply.updated) == (1, 0)
    stored = sources_by_id(library)
    assert "home-cat" not in stored and stored["work-cat"] == [CAT]
    assert len(stored) == 5


def test_scoped_removal_spans_more_than_one_internal_round(search_stub: search_pb2_grpc.SearchStub) -> None:
    source = "file:///shared/clip.mp4"
    v = random_vectors(1300, seed=41)
    for start in range(0, 1300, 1000):
        search_stub.Upsert(
            pb.UpsertRequest(
                items=[
                    make_item(
                        f"f{n}",
                        v[n],
                        sources=[source] if n % 4 else [source, COPY],
                        collection="movies" if n % 13 else "other",
                    )
                    for n in range(start, min(start + 1000, 1300))
                ]
            )
        )
    in_movies = [n for n in range(1300) if n % 13]
    kept = sum(1 for n in in_movies if n % 4 == 0)

    reply = search_stub.Delete(pb.DeleteRequest(sources=[source], collection="movies"))

    assert (reply.deleted, reply.updated) == (len(in_movies) - kept, kept)
    assert search_stub.List(pb.ListRequest(filter=pb.Filter(sources=[source]))).total == 1300 - len(in_movies)
    assert search_stub.List(pb.ListRequest(filter=pb.Filter(collections=["movies"]))).total == kept


@pytest.mark.parametrize(
    ("request_", "fragment"),
    [
        (pb.DeleteRequest(), "nothing to delete"),
        (pb.DeleteRequest(ids=["home-cat"], collection="home"), "ids and collection are set without sources"),
        (pb.DeleteRequest(sources=[CAT], ids=["home-cat", "bad id"]), "ids[1]"),
        (pb.DeleteRequest(sources=[CAT], ids=[f"i{n}" for n in range(1001)]), "1001 ids"),
        (pb.DeleteRequest(sources=[CAT, "no scheme"], collection="home"), "sources[1]"),
        (pb.DeleteRequest(sources=[CAT], collection="x" * 129), "129 bytes"),
    ],
)
def test_bad_scoped_deletes_are_invalid_argument_and_change_nothing(
    library: search_pb2_grpc.SearchStub, request_: pb.DeleteRequest, fragment: str
) -> None:
    before = sources_by_id(library)
    with pytest.raises(grpc.RpcError) as error:
        library.Delete(request_)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in error.value.details()  # type: ignore[operator]
    assert sources_by_id(library) == before


_counter = itertools.count()
# Collection names with query-syntax characters must scope exactly, never widen to other collections.
_collections = st.one_of(
    st.sampled_from(["*", "a b", "a|b", "{x}", "@collection:{home}", "-neg", "back\\slash", "%2A", "日本語"]),
    st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=30).filter(
        lambda t: len(t.encode()) <= 128 and t != "default"
    ),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(collection=_collections, other=_collections)
def test_any_collection_name_scopes_exactly(
    search_stub: search_pb2_grpc.SearchStub, collection: str, other: str
) -> None:
    assume(other + "x" != collection)
    n = next(_counter)
    source = f"file:///p{n}.jpg"
    v = random_vectors(3, seed=n)
    search_stub.Upsert(
        pb.UpsertRequest(
            items=[
                make_item(f"in{n}", v[0], sources=[source], collection=collection),
                make_item(f"other{n}", v[1], sources=[source], collection=other + "x"),
                make_item(f"default{n}", v[2], sources=[source]),
            ]
        )
    )

    reply = search_stub.Delete(pb.DeleteRequest(sources=[source], collection=collection))

    assert (reply.deleted, reply.updated) == (1, 0)
    left = search_stub.Get(pb.GetRequest(ids=[f"in{n}", f"other{n}", f"default{n}"]))
    assert list(left.missing_ids) == [f"in{n}"]
    assert all(list(i.metadata.sources) == [source] for i in left.items)
