"""What is said, over real gRPC and a real Redis: CueWrite/CueList, said queries (words, phrases, prefixes,
Chinese), fusion with what is seen, and cues going with their video's last frame."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from clipsearch.v1 import search_pb2 as pb
from clipsearch.v1 import search_pb2_grpc
from tests.support.search import TEST_DIMENSION, SearchServerFactory, make_item


@pytest.fixture
def stub(search_server_factory: SearchServerFactory):
    with grpc.insecure_channel(search_server_factory(algorithm="flat").address) as channel:
        yield search_pb2_grpc.SearchStub(channel)


def frames(stub, video: str, seconds: int, base: np.ndarray, collection: str = "") -> None:
    rng = np.random.default_rng(len(video))
    items = [
        make_item(
            f"{video}-{t}",
            (base + 0.05 * rng.standard_normal(TEST_DIMENSION)).astype(np.float32).tolist(),
            sources=[f"file:///videos/{video}.mp4"],
            media_type=pb.MEDIA_TYPE_VIDEO_FRAME,
            content_hash=video.encode().hex(),
            timestamp_seconds=float(t),
            frame_interval_seconds=1.0,
            collection=collection,
        )
        for t in range(seconds)
    ]
    stub.Upsert(pb.UpsertRequest(items=items))


def cues(stub, video: str, lines: list[tuple[float, float, str]], language: str = "en", collection: str = "") -> None:
    track = pb.CueTrack(
        name=f"{video}.{language}.srt",
        language=language,
        cues=[pb.Cue(start_seconds=a, end_seconds=b, text=t) for a, b, t in lines],
    )
    stub.CueWrite(
        pb.CueWriteRequest(collection=collection, content_hash=video.encode().hex(), signature="s1", tracks=[track])
    )


def said(stub, text: str, **kwargs) -> pb.QueryResponse:
    return stub.Query(pb.QueryRequest(said=text, **kwargs))


def test_words_phrases_prefixes_and_spans(stub) -> None:
    frames(stub, "harbour", 30, np.ones(TEST_DIMENSION))
    frames(stub, "desert", 30, -np.ones(TEST_DIMENSION))
    cues(stub, "harbour", [(3.0, 5.0, "Goodbye, my friend."), (10.0, 12.5, "See you tomorrow!"), (13, 14, "Tomorrow?")])
    cues(stub, "desert", [(4.0, 6.0, "You will see, tomorrow is another day")])

    phrase = said(stub, '"see you tomorrow"')
    assert len(phrase.matches) == 1
    m = phrase.matches[0]
    assert m.item.metadata.content_hash == b"harbour".hex()
    assert (m.start_seconds, m.end_seconds) == (10.0, 12.5)
    assert [line.text for line in m.said_lines] == ["See you tomorrow!"]
    assert m.item.metadata.timestamp_seconds == 10.0  # the frame showing the cue's start

    words = said(stub, "see tomorrow")  # both words, anywhere in the cue
    assert {x.item.metadata.content_hash for x in words.matches} == {b"harbour".hex(), b"desert".hex()}
    prefix = said(stub, "goodb*")
    assert [x.said_lines[0].text for x in prefix.matches] == ["Goodbye, my friend."]
    assert prefix.said_words == ["goodb"]
    stemmed = said(stub, "goodbyes")
    assert len(stemmed.matches) == 1


def test_consecutive_cues_are_one_moment(stub) -> None:
    frames(stub, "talk", 60, np.ones(TEST_DIMENSION))
    cues(stub, "talk", [(1, 2, "tomorrow then"), (2.5, 4, "yes, tomorrow"), (40, 41, "not tomorrow")])
    result = said(stub, "tomorrow")
    spans = sorted((m.start_seconds, m.end_seconds, len(m.said_lines)) for m in result.matches)
    assert spans == [(1.0, 4.0, 2), (40.0, 41.0, 1)]


def test_chinese_word_inside_a_line(stub) -> None:
    frames(stub, "zh", 20, np.ones(TEST_DIMENSION))
    cues(stub, "zh", [(2, 4, "我们明天见"), (6, 8, "今天天气很好"), (9, 10, "明白了")], language="zh")
    result = said(stub, "明天")
    assert [m.said_lines[0].text for m in result.matches] == ["我们明天见"]
    assert result.said_words == ["明天"]
    assert [m.said_lines[0].text for m in said(stub, "我们 明天见").matches] == ["我们明天见"]
    assert said(stub, "天明").matches == []
    # Languages restrict the cues searched.
    assert said(stub, "明天", said_options=pb.SaidOptions(languages=["en"])).matches == []
    assert len(said(stub, "明天", said_options=pb.SaidOptions(languages=["zh"])).matches) == 1


def test_seen_and_said_together_rank_first(stub) -> None:
    boat = np.zeros(TEST_DIMENSION, dtype=np.float32)
    boat[0] = 1.0
    other = np.zeros(TEST_DIMENSION, dtype=np.float32)
    other[1] = 1.0
    # Video A: the boat for 10 s, "goodbye" said at 40 s (after its last frame). Video B: the boat for 10 s
    # and "goodbye" at 5 s: the only moment matching both. Video C: "goodbye" only, nothing like a boat.
    for video, direction in (("a", boat), ("b", boat * 0.9 + other * 0.1), ("c", other)):
        rng = np.random.default_rng(7)
        items = [
            make_item(
                f"{video}-{t}",
                (direction + 0.01 * rng.standard_normal(TEST_DIMENSION)).tolist(),
                sources=[f"file:///videos/{video}.mp4"],
                media_type=pb.MEDIA_TYPE_VIDEO_FRAME,
                content_hash=video.encode().hex(),
                timestamp_seconds=float(t),
                frame_interval_seconds=1.0,
            )
            for t in range(60 if video == "c" else 10)
        ]
        stub.Upsert(pb.UpsertRequest(items=items))
    cues(stub, "a", [(40, 42, "Goodbye, goodbye, goodbye!")])
    cues(stub, "b", [(5, 7, "goodbye then")])
    cues(stub, "c", [(20, 22, "goodbye goodbye")])
    response = stub.Query(pb.QueryRequest(vector=boat.tolist(), said="goodbye", k=10, moments=pb.MomentOptions()))
    first = response.matches[0]
    assert first.item.metadata.content_hash == b"b".hex()
    assert first.seen_rank > 1 and first.said_rank > 1  # neither list alone ranked it first
    assert [line.text for line in first.said_lines] == ["goodbye then"]
    assert first.start_seconds <= 5 and first.end_seconds >= 7
    alone = [m for m in response.matches[1:] if not (m.seen_rank and m.said_rank)]
    assert alone and all(m.score < first.score for m in alone)


def test_cue_list_and_rewrite(stub) -> None:
    frames(stub, "list", 10, np.ones(TEST_DIMENSION))
    cues(stub, "list", [(5, 6, "second"), (1, 2, "first")])
    listed = stub.CueList(pb.CueListRequest(content_hash=b"list".hex()))
    assert listed.found and listed.signature == "s1"
    assert [c.text for c in listed.tracks[0].cues] == ["first", "second"]
    cues(stub, "list", [(1, 2, "replaced")])
    assert [c.text for t in stub.CueList(pb.CueListRequest(content_hash=b"list".hex())).tracks for c in t.cues] == [
        "replaced"
    ]
    assert said(stub, "second").matches == []
    assert not stub.CueList(pb.CueListRequest(content_hash=b"none".hex())).found


def test_cues_go_with_the_last_frame(stub) -> None:
    frames(stub, "gone", 5, np.ones(TEST_DIMENSION))
    frames(stub, "kept", 5, np.ones(TEST_DIMENSION), collection="other")
    cues(stub, "gone", [(1, 2, "farewell")])
    cues(stub, "kept", [(1, 2, "farewell")], collection="other")
    stub.Delete(pb.DeleteRequest(ids=["gone-0", "gone-1"]))
    assert len(said(stub, "farewell").matches) == 2  # frames of it are left
    stub.Delete(pb.DeleteRequest(sources=["file:///videos/gone.mp4"]))
    assert not stub.CueList(pb.CueListRequest(content_hash=b"gone".hex())).found
    assert [m.item.metadata.collection for m in said(stub, "farewell").matches] == ["other"]
    stub.Delete(pb.DeleteRequest(collection="other"))
    assert not stub.CueList(pb.CueListRequest(collection="other", content_hash=b"kept".hex())).found


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (pb.QueryRequest(said="!!! ..."), "no words"),
        (pb.QueryRequest(said="x" * 1001), "at most 1000"),
        (pb.QueryRequest(said="hi", said_options=pb.SaidOptions(window_seconds=-1)), "window_seconds"),
    ],
)
def test_bad_said_queries(stub, request_: pb.QueryRequest, message: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.Query(request_)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert message in (caught.value.details() or "")


def test_bad_cues_are_refused(stub) -> None:
    for cue in (pb.Cue(start_seconds=-1, end_seconds=2, text="x"), pb.Cue(start_seconds=3, end_seconds=2, text="x")):
        with pytest.raises(grpc.RpcError) as caught:
            stub.CueWrite(pb.CueWriteRequest(content_hash="ab", tracks=[pb.CueTrack(name="t", cues=[cue])]))
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
