"""`clipsearch reindex` from one model to another, and Chinese queries, file and collection names end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from client.api import Client
from client.cli import main
from client.errors import ModelMismatch
from clipsearch.v1 import search_pb2, search_pb2_grpc
from tests.support.client import write_images, write_video
from tests.support.embedder import embedder_test_config, running_embedder
from tests.support.photos import encode, scene


def run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def other_embedder_address(tmp_path_factory: pytest.TempPathFactory) -> object:
    """An embedder serving another random-weight checkpoint (another seed and directory: another model)."""
    from embedder_service.checkpoint import write_checkpoint
    from embedder_service.model import ClipEmbedder

    model_dir = write_checkpoint(tmp_path_factory.mktemp("other-clip"), arch="tiny", seed=1)
    embedder = ClipEmbedder(str(model_dir), dtype="fp32", device="cpu")
    embedder.load()
    with running_embedder(embedder_test_config(model_dir), embedder) as server:
        yield f"127.0.0.1:{server.port}"


def test_reindex_switches_from_model_a_to_model_b_with_chinese_names(
    cli_env: dict[str, str], other_embedder_address: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    library = tmp_path / "照片"
    write_images(library, 4)
    smiling = write_images(library, 1, seed=3, prefix="微笑的男人")[0]
    write_video(library / "clips" / "视频.mp4", seconds=3, fps=5)
    gone = write_images(tmp_path / "gone", 1, seed=9, prefix="lost")[0]

    code, out, err = run(capsys, "index", library, gone, "--collection", "家庭", "--json")
    report = json.loads(out)
    assert code == 0, err
    assert report["images"] == 6 and report["frames"] == 3

    code, out, err = run(capsys, "search", "--text", "微笑的男人", "--json", "--top", "10", "--frames")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["query"]["text"] == "微笑的男人"
    paths = [p for r in doc["results"] for p in r["paths"]]
    assert str(smiling.resolve()) in paths and any("视频.mp4" in p for p in paths)
    assert "微笑的男人" in out  # UTF-8 as is in the JSON, not \u escapes or mojibake
    code, out, err = run(capsys, "search", "--text", "微笑的男人", "--collection", "家庭", "--top", "10")
    assert code == 0 and smiling.name in out.replace("\n", "")
    code, out, _ = run(capsys, "collections", "--json")
    assert json.loads(out)["collections"][0]["name"] == "家庭"

    # Model B against the index of model A: one clear line, no traceback.
    gone.unlink()
    other = ["--embedder", other_embedder_address]
    code, out, err = run(capsys, "search", "--text", "a cat", *other)
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "clipsearch reindex" in err and "other-clip" in err
    code, _, err = run(capsys, "index", library, *other)
    assert code == 1 and "clipsearch reindex" in err

    code, out, err = run(capsys, "reindex", *other, "--json")
    assert code == 0, err
    done = json.loads(out)
    assert done["finished"] and done["embedded"] == 8 and done["items"] == 8
    assert done["missing_sources"] == [str(gone)] and len(done["dropped_items"]) == 1

    code, out, err = run(capsys, "search", "--text", "微笑的男人", "--json", "--top", "10", "--frames", *other)
    assert code == 0, err
    results = json.loads(out)["results"]
    assert len(results) == 8 and str(smiling.resolve()) in [p for r in results for p in r["paths"]]
    frames = sorted(r["timestamp_seconds"] for r in results if r["media"] != "image")
    assert frames == [0.0, 1.0, 2.0]
    # And now model A is the one refused.
    code, _, err = run(capsys, "search", "--text", "a cat")
    assert code == 1 and "clipsearch reindex" in err


def test_reindex_gives_photos_indexed_before_hashes_one_so_their_copies_collapse(
    cli_env: dict[str, str],
    other_embedder_address: str,
    search_stub: search_pb2_grpc.SearchStub,
    redis_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    picture = scene(5)
    (tmp_path / "original.png").write_bytes(encode(picture, "PNG"))
    (tmp_path / "smaller.jpg").write_bytes(encode(picture.resize((160, 120)), "JPEG", quality=60))
    code, _, err = run(capsys, "index", tmp_path, "--collection", "copies")
    assert code == 0, err
    # As an index written before perceptual hashes were stored: no item has one.
    prefix = search_stub.Stats(search_pb2.StatsRequest()).settings.key_prefix
    with redis.Redis.from_url(redis_url) as db:
        keys = list(db.scan_iter(match=f"{prefix}*"))
        assert len(keys) == 2 and all(db.hdel(key, "phash") == 1 for key in keys)
    search = ["search", "--text", "a photo", "--collapse-duplicates", "--json", "--collection", "copies"]
    code, out, err = run(capsys, *search)
    assert code == 0, err
    assert len(json.loads(out)["results"]) == 2

    other = ["--embedder", other_embedder_address]
    code, _, err = run(capsys, "reindex", *other, "--json")
    assert code == 0, err
    code, out, err = run(capsys, *search, *other)
    assert code == 0, err
    (hit,) = json.loads(out)["results"]
    assert len(hit["duplicates"]) == 1


def test_classifying_a_stored_item_with_another_model_is_refused(
    cli_env: dict[str, str], other_embedder_address: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_images(tmp_path, 1)
    code, _, err = run(capsys, "index", tmp_path)
    assert code == 0, err
    with Client(cli_env["EMBEDDER_ADDR"], cli_env["SEARCH_ADDR"]) as same:
        item_id = same.search_text("a photo")[0].id
        assert [s.label for s in same.classify_item(item_id, ["猫", "狗"])] != []
    with (
        Client(other_embedder_address, cli_env["SEARCH_ADDR"]) as other,
        pytest.raises(ModelMismatch, match="clipsearch reindex"),
    ):
        other.classify_item(item_id, ["猫", "狗"])
