"""`clipsearch index` over a folder of hostile files: each is reported, the run goes on, nothing else changes."""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from client.cli import EXIT_PARTIAL, main
from tests.support.client import write_images

GOOD_IMAGES = 3


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _bomb_png(side: int = 30_000) -> bytes:
    """A few-KB PNG declaring side x side pixels: its rows are zeros that deflate to almost nothing."""
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit grayscale
    row = b"\x00" * (1 + side // 8)
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(64)) + compressor.flush()
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")


def _png_with_huge_text(megabytes: int = 20) -> bytes:
    picture = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(picture, "PNG")
    raw = picture.getvalue()
    text = _png_chunk(b"zTXt", b"comment\x00\x00" + zlib.compress(b"A" * (megabytes << 20), 9))
    return raw[:33] + text + raw[33:]  # after the 8-byte signature and the 25-byte IHDR chunk


def _gif_with_many_frames(frames: int = 10_000) -> bytes:
    buffer = io.BytesIO()
    first = Image.new("P", (4, 4), 1)
    rest = [Image.new("P", (4, 4), i % 7) for i in range(1, frames)]
    first.save(buffer, "GIF", save_all=True, append_images=rest, duration=10, loop=0, optimize=False)
    return buffer.getvalue()


@pytest.fixture
def hostile_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "hostile"
    write_images(folder, GOOD_IMAGES)
    jpeg = (folder / "img01.jpg").read_bytes()
    png = (folder / "img00.png").read_bytes()
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (folder / "truncated.png").write_bytes(png[: len(png) // 2])
    (folder / "empty.png").write_bytes(b"")
    (folder / "bomb.png").write_bytes(_bomb_png())
    (folder / "huge-text.png").write_bytes(_png_with_huge_text())
    (folder / "text-pretending.jpg").write_bytes(b"plain text, not a picture\n" * 100)
    (folder / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4096))
    (folder / "album.jpg").mkdir()  # a directory with an image's name: walked, it holds nothing
    os.mkfifo(folder / "pipe.png")
    os.symlink(folder / "gone.png", folder / "dangling.png")
    os.symlink(folder, folder / "loop")
    (folder / "animated.gif").write_bytes(_gif_with_many_frames())
    non_utf8 = os.fsencode(folder) + b"/caf\xe9-\xff.png"
    with open(non_utf8, "wb") as handle:
        handle.write(png)  # the same content as img00.png: one item, two sources
    return folder


def test_hostile_files_are_reported_and_the_run_goes_on(
    cli_env: dict[str, str], hostile_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["index", str(hostile_folder), "--json"])
    out, err = capsys.readouterr()
    assert code == EXIT_PARTIAL, err
    assert "Traceback" not in err
    report = json.loads(out)
    failed = {Path(f["path"]).name: f["error"] for f in report["failed"]}
    expected_failures = {
        "truncated.jpg",
        "truncated.png",
        "empty.png",
        "bomb.png",
        "text-pretending.jpg",
        "corrupt.mp4",
        "pipe.png",
        "dangling.png",
    }
    assert expected_failures <= set(failed), failed
    assert all(reason.strip() for reason in failed.values())
    for name in expected_failures:
        assert name in err  # each reported on stderr, one line each
    # The good images, the 10k-frame GIF (its first frame) and the non-UTF-8 copy got through.
    assert "img00.png" not in failed and "animated.gif" not in failed
    assert not any(name.startswith("caf") for name in failed)

    code = main(["stats", "--json"])
    stats = json.loads(capsys.readouterr().out)
    assert code == 0
    items_after_first_run = stats["items"]
    # 3 good images + the GIF, the huge-text PNG if its pixels were accepted; the non-UTF-8 copy adds a source.
    assert GOOD_IMAGES + 1 <= items_after_first_run <= GOOD_IMAGES + 2

    code = main(["search", "--image", str(hostile_folder / "img00.png"), "--top", "1", "--json"])
    hit = json.loads(capsys.readouterr().out)
    assert code == 0
    sources = hit["results"][0]["sources"]
    assert any(source.endswith("/caf%E9-%FF.png") for source in sources), sources

    # A second run adds nothing, hostile files included, and reports them again.
    code = main(["index", str(hostile_folder), "--json"])
    out, err = capsys.readouterr()
    assert code == EXIT_PARTIAL
    assert json.loads(out)["failed"]
    main(["stats", "--json"])
    assert json.loads(capsys.readouterr().out)["items"] == items_after_first_run
