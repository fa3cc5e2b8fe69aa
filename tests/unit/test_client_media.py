"""Local media without servers: file discovery, safe reads, image shrinking, video frame sampling."""

from __future__ import annotations

import io
import os
import wave
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from client.ingest.media import (
    Found,
    FrameSampler,
    ImageLimits,
    MediaError,
    MediaKind,
    Problem,
    discover,
    iter_video_frames,
    prepare_image,
    read_file,
    shrunk_size,
)
from client.web.thumbs import frame_thumbnail
from clipsearch.v1 import embedder_pb2
from clipsearch.v1.embedder_pb2_grpc import EmbedderStub
from tests.support.client import write_images, write_video
from tests.support.embedder import cosine, encode_image, sample_photo

LIMITS = ImageLimits(image_size=64, max_image_pixels=10_000_000, encoded_max_bytes=50_000)


def _names(results: list[Found | Problem], root: Path) -> tuple[list[str], dict[str, str]]:
    found = [str(r.path.relative_to(root)) for r in results if isinstance(r, Found)]
    problems = {str(r.path.relative_to(root)): r.reason for r in results if isinstance(r, Problem)}
    return found, problems


def test_discovery_walks_folders_and_reports_unusable_entries(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_images(root, 2)
    write_images(root / "sub" / "deeper", 1, prefix="deep")
    write_images(root / "album.jpg", 1, prefix="inside")  # a directory with an image's name
    (root / "notes.txt").write_text("not media")
    (root / ".hidden.jpg").write_bytes(b"x")
    (root / "clip.MP4").write_bytes(b"not really a video")
    os.symlink(root / "missing.jpg", root / "broken.jpg")
    os.mkfifo(root / "pipe.jpg")
    os.symlink(root, root / "sub" / "loop")  # a cycle must not be walked forever

    found, problems = _names(list(discover([root])), root)

    assert found == ["album.jpg/inside00.png", "clip.MP4", "img00.png", "img01.jpg", "sub/deeper/deep00.png"]
    assert problems == {"broken.jpg": "dangling symbolic link", "pipe.jpg": "not a regular file"}
    kinds = {r.path.name: r.kind for r in discover([root]) if isinstance(r, Found)}
    assert kinds["clip.MP4"] is MediaKind.VIDEO and kinds["img00.png"] is MediaKind.IMAGE


def test_discovery_without_recursion_and_of_named_files(tmp_path: Path) -> None:
    write_images(tmp_path / "top", 1)
    write_images(tmp_path / "top" / "sub", 1, prefix="nested")
    (tmp_path / "readme.txt").write_text("x")
    found, _ = _names(list(discover([tmp_path / "top"], recursive=False)), tmp_path)
    assert found == ["top/img00.png"]
    found, problems = _names(
        list(discover([tmp_path / "readme.txt", tmp_path / "nope.jpg", tmp_path / "top" / "img00.png"])), tmp_path
    )
    assert found == ["top/img00.png"]
    assert problems == {
        "readme.txt": "not an image or video (unknown file extension)",
        "nope.jpg": "no such file or directory",
    }


def test_reading_a_fifo_or_empty_file_fails_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    with pytest.raises(MediaError, match="not a regular file"):
        read_file(fifo, 1 << 20)
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(MediaError, match="empty"):
        read_file(tmp_path / "empty.jpg", 1 << 20)
    (tmp_path / "big.jpg").write_bytes(b"x" * 101)
    with pytest.raises(MediaError, match="limit"):
        read_file(tmp_path / "big.jpg", 100)


def _png(width: int, height: int, seed: int = 0) -> bytes:
    noise = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "PNG")
    return buffer.getvalue()


def test_small_images_are_sent_encoded() -> None:
    data = _png(20, 10)
    prepared = prepare_image(data, LIMITS)
    assert prepared.image.WhichOneof("source") == "encoded" and prepared.image.encoded == data


def test_large_images_are_decoded_and_shrunk_to_the_model_size() -> None:
    data = _png(400, 200)
    assert len(data) > LIMITS.encoded_max_bytes
    prepared = prepare_image(data, LIMITS)
    raw = prepared.image.raw
    assert (raw.width, raw.height) == (128, 64)
    assert len(raw.rgb) == 128 * 64 * 3
    assert (prepared.width, prepared.height) == (400, 200)


def test_exif_orientation_is_applied_before_shrinking() -> None:
    noise = np.random.default_rng(1).integers(0, 256, (200, 400, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise for display
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "JPEG", quality=100, exif=exif.tobytes())
    prepared = prepare_image(buffer.getvalue(), ImageLimits(64, 10_000_000, encoded_max_bytes=1000))
    assert (prepared.image.raw.width, prepared.image.raw.height) == (64, 128)
    assert (prepared.width, prepared.height) == (200, 400)


def test_shrinking_here_keeps_the_vector_within_tolerance(embedder_stub: EmbedderStub) -> None:
    """The cheap paths (JPEG draft, box reduce before bicubic) land within a cosine of 0.999 of the vector of the
    whole image sent to the embedder, which then does the exact resize itself."""
    info = embedder_stub.GetModelInfo(embedder_pb2.GetModelInfoRequest())
    limits = ImageLimits(info.image_size, info.max_image_pixels, encoded_max_bytes=0)
    frame = sample_photo("astronaut").resize((1920, 1080), Image.Resampling.BICUBIC)
    photo = encode_image(sample_photo("coffee").resize((4032, 3024), Image.Resampling.BICUBIC), "JPEG", quality=92)
    shrunk_frame = prepare_image(encode_image(frame, "PNG"), limits)
    shrunk_photo = prepare_image(photo, limits)
    assert shrunk_frame.image.raw.height == shrunk_photo.image.raw.height == info.image_size
    whole_frame = embedder_pb2.Image(raw=embedder_pb2.RawImage(rgb=frame.tobytes(), width=1920, height=1080))
    request = embedder_pb2.EmbedImagesRequest(
        images=[whole_frame, shrunk_frame.image, embedder_pb2.Image(encoded=photo), shrunk_photo.image]
    )
    vectors = [np.asarray(r.embedding.values) for r in embedder_stub.EmbedImages(request).results]
    assert cosine(vectors[0], vectors[1]) >= 0.999
    assert cosine(vectors[2], vectors[3]) >= 0.999


def test_hostile_images_are_refused_with_a_reason() -> None:
    with pytest.raises(MediaError, match="cannot decode"):
        prepare_image(b"\x89PNG" + b"\0" * 60_000, LIMITS)
    truncated = _png(400, 200)[:-5000]
    with pytest.raises(MediaError):
        prepare_image(truncated, LIMITS)
    with pytest.raises(MediaError, match="more than the embedder's limit"):
        prepare_image(_png(400, 200), ImageLimits(64, max_image_pixels=1000, encoded_max_bytes=10))


def test_shrunk_size_keeps_the_aspect_and_never_enlarges() -> None:
    assert shrunk_size(1920, 1080, 224) == (398, 224)
    assert shrunk_size(1080, 1920, 224) == (224, 398)
    assert shrunk_size(100, 50, 224) == (100, 50)


def test_sampler_takes_the_first_frame_at_or_after_each_multiple() -> None:
    sampler = FrameSampler(1.0)
    times = [Fraction(n, 3) for n in range(-1, 10)]  # 3 fps, starting before zero
    assert [t for t in times if sampler.take(t)] == [0, 1, 2, 3]
    gappy = FrameSampler(2)
    assert [t for t in (Fraction(0), Fraction(1, 5), Fraction(3, 2), Fraction(8, 5), Fraction(2)) if gappy.take(t)] == [
        0,
        Fraction(3, 2),
        2,
    ]
    with pytest.raises(ValueError):
        FrameSampler(0)


@pytest.fixture(scope="module")
def ten_second_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "colours.mp4", seconds=10, fps=10, size=(64, 48))


def test_video_frames_are_sampled_at_one_per_second(ten_second_video: Path) -> None:
    frames = list(iter_video_frames(ten_second_video, 1.0, short_side=64, max_pixels=10**6))
    assert [f.timestamp_seconds for f in frames] == [float(s) for s in range(10)]
    assert [f.frame_index for f in frames] == list(range(0, 100, 10))
    assert {(f.width, f.height, f.source_width, f.source_height) for f in frames} == {(64, 48, 64, 48)}
    assert all(len(f.rgb) == 64 * 48 * 3 for f in frames)
    means = {tuple(np.frombuffer(f.rgb, np.uint8).reshape(48, 64, 3).mean(axis=(0, 1)).round()) for f in frames}
    assert len(means) == 10  # every sampled frame is a different picture


def test_video_sampling_rate_and_size_follow_the_arguments(ten_second_video: Path) -> None:
    with open(ten_second_video, "rb") as stream:
        frames = list(iter_video_frames(stream, 2.5, short_side=24, max_pixels=10**6))
    assert [f.timestamp_seconds for f in frames] == [float(Fraction(2 * n, 5)) for n in range(25)]
    assert {(f.width, f.height) for f in frames} == {(32, 24)}
    slow = list(iter_video_frames(ten_second_video, 0.25, short_side=64, max_pixels=10**6))
    assert [f.frame_index for f in slow] == [0, 40, 80]


def test_broken_videos_raise_media_errors(tmp_path: Path, ten_second_video: Path) -> None:
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(MediaError):
        list(iter_video_frames(garbage, 1.0, 64, 10**6))
    with pytest.raises(MediaError, match="more than the limit"):
        list(iter_video_frames(ten_second_video, 1.0, 64, max_pixels=100))


def test_indexing_and_thumbnails_refuse_a_file_without_video_alike(tmp_path: Path) -> None:
    sound = tmp_path / "sound.mp4"  # a WAV under a video's name: PyAV opens it, and finds no video stream
    with wave.open(str(sound), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\0\0" * 800)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(bytes(range(256)) * 16)
    for path, reason in ((sound, "no video stream"), (garbage, "cannot open video")):
        with pytest.raises(MediaError, match=reason):
            list(iter_video_frames(path, 1.0, 64, 10**6))
        with path.open("rb") as stream, pytest.raises(MediaError, match=reason):
            frame_thumbnail(stream, 0.0, 64)
