"""The Embedder gRPC service on a real server and channel: every RPC, its limits and its errors."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from clipsearch.serving import GrpcServer
from clipsearch.v1 import embedder_pb2 as pb
from clipsearch.v1 import embedder_pb2_grpc
from embedder_service.config import Limits
from embedder_service.model import ClipEmbedder
from embedder_service.preprocess import resized_size
from tests.support.embedder import (
    ClipReference,
    cosine,
    embedder_test_config,
    encode_image,
    running_embedder,
    sample_photo,
)

INVALID = grpc.StatusCode.INVALID_ARGUMENT
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
SMALL_LIMITS = Limits(
    max_batch_images=4,
    max_batch_texts=4,
    max_labels=8,
    max_text_bytes=1000,
    max_image_pixels=10_000,
    max_message_bytes=1024 * 1024,
)


def vector(embedding: pb.Embedding) -> np.ndarray:
    return np.asarray(embedding.values, dtype=np.float32)


def encoded(data: bytes) -> pb.Image:
    return pb.Image(encoded=data)


def png(image: Image.Image) -> pb.Image:
    return encoded(encode_image(image, "PNG"))


def png_declaring(width: int, height: int) -> bytes:
    """A few-hundred-byte grayscale PNG whose header declares width x height pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\0" * (width + 1) * 8, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def assert_still_serving(stub: embedder_pb2_grpc.EmbedderStub) -> None:
    response = stub.EmbedTexts(pb.EmbedTextsRequest(texts=["still here"]))
    assert np.linalg.norm(vector(response.embeddings[0])) == pytest.approx(1.0, abs=1e-5)


@pytest.fixture(scope="module")
def limited_stub(tiny_clip_dir: Path, tiny_embedder: ClipEmbedder) -> Iterator[embedder_pb2_grpc.EmbedderStub]:
    """A server with small limits (4 images, 8 labels, 10,000 pixels, 1 MiB messages)."""
    config = embedder_test_config(tiny_clip_dir, limits=SMALL_LIMITS)
    with (
        running_embedder(config, tiny_embedder) as server,
        grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        yield embedder_pb2_grpc.EmbedderStub(channel)


# --- what a client sees when all is well ------------------------------------------------------------


def test_model_info_reports_the_model_and_limits(
    embedder_stub: embedder_pb2_grpc.EmbedderStub,
    tiny_clip_dir: Path,
    limited_stub: embedder_pb2_grpc.EmbedderStub,
    tiny_embedder: ClipEmbedder,
) -> None:
    info = embedder_stub.GetModelInfo(pb.GetModelInfoRequest())
    assert info.model_id == str(tiny_clip_dir)
    assert (info.dimension, info.image_size, info.max_text_tokens) == (32, 64, 77)
    assert info.normalized is True
    assert (info.dtype, info.device) == ("float32", "cpu")
    assert info.logit_scale == pytest.approx(tiny_embedder.info.logit_scale, rel=1e-6)
    defaults = Limits()
    assert (
        info.max_batch_images,
        info.max_batch_texts,
        info.max_labels,
        info.max_text_bytes,
        info.max_image_pixels,
        info.max_message_bytes,
    ) == (
        defaults.max_batch_images,
        defaults.max_batch_texts,
        defaults.max_labels,
        defaults.max_text_bytes,
        defaults.max_image_pixels,
        defaults.max_message_bytes,
    )
    limited = limited_stub.GetModelInfo(pb.GetModelInfoRequest())
    assert (limited.max_batch_images, limited.max_labels, limited.max_image_pixels, limited.max_message_bytes) == (
        4,
        8,
        10_000,
        1024 * 1024,
    )


def test_health_reports_serving(embedder_channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(embedder_channel)
    for service in ("", "clipsearch.v1.Embedder"):
        response = health.Check(health_pb2.HealthCheckRequest(service=service))
        assert response.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize(
    ("fmt", "params"),
    [("PNG", {}), ("JPEG", {"quality": 90}), ("WEBP", {"quality": 90}), ("BMP", {}), ("GIF", {}), ("TIFF", {})],
)
def test_image_vectors_equal_transformers(
    embedder_stub: embedder_pb2_grpc.EmbedderStub, tiny_reference: ClipReference, fmt: str, params: dict
) -> None:
    photos = [sample_photo("astronaut"), sample_photo("chelsea").convert("L").convert("RGB"), sample_photo("coffee")]
    files = [encode_image(photo, fmt, **params) for photo in photos]
    response = embedder_stub.EmbedImages(pb.EmbedImagesRequest(images=[encoded(data) for data in files]))
    import io

    expected = tiny_reference.outputs([Image.open(io.BytesIO(data)) for data in files], ["x"]).image_embeds
    assert len(response.results) == len(photos)
    for photo, result, reference in zip(photos, response.results, expected.numpy(), strict=False):
        assert result.WhichOneof("result") == "embedding"
        assert (result.width, result.height) == photo.size
        got = vector(result.embedding)
        assert got.shape == (32,)
        assert np.linalg.norm(got) == pytest.approx(1.0, abs=1e-5)
        assert cosine(got, reference) >= 0.9999


def test_raw_pixels_give_the_vector_of_the_png(embedder_stub: embedder_pb2_grpc.EmbedderStub) -> None:
    photo = sample_photo("rocket")
    raw = pb.Image(raw=pb.RawImage(rgb=photo.tobytes(), width=photo.width, height=photo.height))
    results = embedder_stub.EmbedImages(pb.EmbedImagesRequest(images=[raw, png(photo)])).results
    assert (results[0].width, results[0].height) == photo.size
    np.testing.assert_allclose(vector(results[0].embedding), vector(results[1].embedding), atol=1e-6)


def test_exif_rotated_jpeg_gets_the_upright_vector(embedder_stub: embedder_pb2_grpc.EmbedderStub) -> None:
    upright = sample_photo("chelsea").resize((448, 304))
    exif = Image.Exif()
    exif[0x0112] = 6
    turned = upright.transpose(Image.Transpose.ROTATE_90)
    images = [
        encode_image(turned, "JPEG", quality=100, subsampling=0, exif=exif),
        encode_image(upright, "JPEG", quality=100, subsampling=0),
        encode_image(turned, "JPEG", quality=100, subsampling=0),
    ]
    results = embedder_stub.EmbedImages(pb.EmbedImagesRequest(images=[encoded(data) for data in images])).results
    assert (results[0].width, results[0].height) == (448, 304)
    with_exif, upright_vector, ignoring_exif = (vector(result.embedding) for result in results)
    assert cosine(with_exif, upright_vector) >= 0.9999
    assert cosine(with_exif, upright_vector) > cosine(ignoring_exif, upright_vector)


def test_shrinking_a_frame_before_sending_gives_the_same_vector(embedder_stub: embedder_pb2_grpc.EmbedderStub) -> None:
    """Tolerance: cosine >= 0.9999 when shrunk to exactly resized_size (in fact the very same pixels reach the
    model), >= 0.999 when shrunk only to twice the input size (the server then resamples a second time)."""
    image_size = embedder_stub.GetModelInfo(pb.GetModelInfoRequest()).image_size
    frame = sample_photo("astronaut").resize((1920, 1080), Image.Resampling.BICUBIC)

    def raw(image: Image.Image) -> pb.Image:
        return pb.Image(raw=pb.RawImage(rgb=image.tobytes(), width=image.width, height=image.height))

    exact = frame.resize(resized_size(*frame.size, image_size), Image.Resampling.BICUBIC)
    double = frame.resize(resized_size(*frame.size, 2 * image_size), Image.Resampling.BICUBIC)
    results = embedder_stub.EmbedImages(pb.EmbedImagesRequest(images=[raw(frame), raw(exact), raw(double)])).results
    full, shrunk, shrunk_twice = (vector(result.embedding) for result in results)
    assert exact.height == image_size
    assert cosine(full, shrunk) >= 0.9999
    assert cosine(full, shrunk_twice) >= 0.999


def test_text_vectors_equal_transformers(
    embedder_stub: embedder_pb2_grpc.EmbedderStub, tiny_reference: ClipReference
) -> None:
    texts = ["a photo of a cat", "一张猫的照片", "🐈🐈‍⬛ 😺", "صورة قطة", "Ünïcödé\u200b text", "cat " * 500]
    response = embedder_stub.EmbedTexts(pb.EmbedTextsRequest(texts=texts))
    expected = tiny_reference.outputs([sample_photo()], texts).text_embeds.numpy()
    assert len(response.embeddings) == len(texts)
    for got, reference in zip(response.embeddings, expected, strict=False):
        assert np.linalg.norm(vector(got)) == pytest.approx(1.0, abs=1e-5)
        assert cosine(vector(got), reference) >= 0.9999


def test_classify_equals_logits_per_image_softmax(
    embedder_stub: embedder_pb2_grpc.EmbedderStub, tiny_reference: ClipReference
) -> None:
    photo = sample_photo("coffee")
    labels = ["coffee", "cat", "rocket", "astronaut"]
    template = "a photo of {}"
    expected = tiny_reference.outputs([photo], [template.format(label) for label in labels])
    by_image = embedder_stub.Classify(pb.ClassifyRequest(image=png(photo), labels=labels, prompt_template=template))
    image_vector = vector(embedder_stub.EmbedImages(pb.EmbedImagesRequest(images=[png(photo)])).results[0].embedding)
    by_vector = embedder_stub.Classify(
        pb.ClassifyRequest(
            embedding=pb.Embedding(values=(image_vector * 3).tolist()), labels=labels, prompt_template=template
        )
    )
    probabilities = expected.logits_per_image.softmax(-1)[0].numpy()
    logits = expected.logits_per_image[0].numpy()
    for response in (by_image, by_vector):
        assert [score.label for score in response.scores] == labels
        np.testing.assert_allclose([s.probability for s in response.scores], probabilities, atol=1e-5)
        np.testing.assert_allclose([s.logit for s in response.scores], logits, atol=1e-4)
        scale = embedder_stub.GetModelInfo(pb.GetModelInfoRequest()).logit_scale
        np.testing.assert_allclose([s.cosine for s in response.scores], logits / scale, atol=1e-5)
        assert sum(s.probability for s in response.scores) == pytest.approx(1.0, abs=1e-5)


def test_allow_partial_returns_per_image_errors(embedder_stub: embedder_pb2_grpc.EmbedderStub) -> None:
    good = [png(sample_photo("astronaut")), encoded(encode_image(sample_photo("rocket"), "JPEG"))]
    batch = [
        good[0],
        encoded(b"not an image"),
        encoded(png_declaring(30000, 30000)),
        pb.Image(raw=pb.RawImage(rgb=b"\0" * 10, width=2, height=2)),
        good[1],
    ]
    response = embedder_stub.EmbedImages(pb.EmbedImagesRequest(images=batch, allow_partial=True))
    kinds = [result.WhichOneof("result") for result in response.results]
    assert kinds == ["embedding", "error", "error", "error", "embedding"]
    codes = [response.results[i].error.code for i in (1, 2, 3)]
    assert codes == [INVALID.value[0], EXHAUSTED.value[0], INVALID.value[0]]
    assert "30000x30000" in response.results[2].error.message or "900000000" in response.results[2].error.message
    assert all((response.results[i].width, response.results[i].height) == (0, 0) for i in (1, 2, 3))
    alone = embedder_stub.EmbedImages(pb.EmbedImagesRequest(images=good)).results
    np.testing.assert_allclose(vector(response.results[0].embedding), vector(alone[0].embedding), atol=1e-5)
    np.testing.assert_allclose(vector(response.results[4].embedding), vector(alone[1].embedding), atol=1e-5)


# --- hostile input: a clear status, and the server keeps serving --------------------------------------


def _truncated_png() -> bytes:
    data = encode_image(Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)))
    return data[: len(data) // 2]


HOSTILE = {
    "empty image request": ("EmbedImages", pb.EmbedImagesRequest(), INVALID, "at least one image"),
    "empty text request": ("EmbedTexts", pb.EmbedTextsRequest(), INVALID, "at least one text"),
    "undecodable bytes": (
        "EmbedImages",
        pb.EmbedImagesRequest(images=[encoded(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)]),
        INVALID,
        "images[0]",
    ),
    "truncated png": ("EmbedImages", pb.EmbedImagesRequest(images=[encoded(_truncated_png())]), INVALID, "truncated"),
    "zero-byte image": ("EmbedImages", pb.EmbedImagesRequest(images=[encoded(b"")]), INVALID, "images[0]: empty image"),
    "decompression bomb": (
        "EmbedImages",
        pb.EmbedImagesRequest(images=[encoded(png_declaring(30000, 30000))]),
        EXHAUSTED,
        "900000000 pixels",
    ),
    "non-image file": (
        "EmbedImages",
        pb.EmbedImagesRequest(images=[encoded(b"%PDF-1.7\n1 0 obj\n<< >>\nendobj\n")]),
        INVALID,
        "cannot identify image file",
    ),
    "raw length mismatch": (
        "EmbedImages",
        pb.EmbedImagesRequest(images=[pb.Image(raw=pb.RawImage(rgb=b"\0" * 100, width=10, height=10))]),
        INVALID,
        "needs 300 bytes",
    ),
    "raw without size": (
        "EmbedImages",
        pb.EmbedImagesRequest(images=[pb.Image(raw=pb.RawImage(rgb=b""))]),
        INVALID,
        "at least 1",
    ),
    "image without source": (
        "EmbedImages",
        pb.EmbedImagesRequest(images=[pb.Image()]),
        INVALID,
        "set either encoded or raw",
    ),
    "more images than the max batch": (
        "EmbedImages",
        pb.EmbedImagesRequest(images=[pb.Image(raw=pb.RawImage(rgb=b"\0\0\0", width=1, height=1))] * 65),
        EXHAUSTED,
        "limit of 64",
    ),
    "empty text": ("EmbedTexts", pb.EmbedTextsRequest(texts=["fine", "  \n"]), INVALID, "texts[1]: empty"),
    "1 MB of text": ("EmbedTexts", pb.EmbedTextsRequest(texts=["a" * 1_000_000]), INVALID, "limit of 65536"),
    "more texts than the max batch": ("EmbedTexts", pb.EmbedTextsRequest(texts=["t"] * 257), EXHAUSTED, "limit of 256"),
    "no labels": (
        "Classify",
        pb.ClassifyRequest(embedding=pb.Embedding(values=[1.0] * 32)),
        INVALID,
        "at least one label",
    ),
    "thousands of labels": (
        "Classify",
        pb.ClassifyRequest(embedding=pb.Embedding(values=[1.0] * 32), labels=[f"label {i}" for i in range(5000)]),
        EXHAUSTED,
        "limit of 1000",
    ),
    "empty label": (
        "Classify",
        pb.ClassifyRequest(embedding=pb.Embedding(values=[1.0] * 32), labels=["cat", ""]),
        INVALID,
        "labels[1]: empty",
    ),
    "duplicate labels": (
        "Classify",
        pb.ClassifyRequest(embedding=pb.Embedding(values=[1.0] * 32), labels=["cat", "dog", "cat"]),
        INVALID,
        "labels[2]: 'cat' repeats labels[0]",
    ),
    "template without {}": (
        "Classify",
        pb.ClassifyRequest(embedding=pb.Embedding(values=[1.0] * 32), labels=["cat"], prompt_template="a photo"),
        INVALID,
        "exactly once",
    ),
    "template with two {}": (
        "Classify",
        pb.ClassifyRequest(embedding=pb.Embedding(values=[1.0] * 32), labels=["cat"], prompt_template="{} or {}"),
        INVALID,
        "exactly once",
    ),
    "classify without input": ("Classify", pb.ClassifyRequest(labels=["cat"]), INVALID, "set either image"),
    "embedding of the wrong dimension": (
        "Classify",
        pb.ClassifyRequest(embedding=pb.Embedding(values=[1.0] * 512), labels=["cat"]),
        INVALID,
        "has 512 values",
    ),
    "embedding with NaN": (
        "Classify",
        pb.ClassifyRequest(embedding=pb.Embedding(values=[float("nan")] * 32), labels=["cat"]),
        INVALID,
        "NaN",
    ),
    "zero embedding": (
        "Classify",
        pb.ClassifyRequest(embedding=pb.Embedding(values=[0.0] * 32), labels=["cat"]),
        INVALID,
        "all zeros",
    ),
    "classify an undecodable image": (
        "Classify",
        pb.ClassifyRequest(image=encoded(b"garbage"), labels=["cat"]),
        INVALID,
        "image: cannot identify",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_input_gets_a_clear_status(embedder_stub: embedder_pb2_grpc.EmbedderStub, case: str) -> None:
    rpc, request, code, fragment = HOSTILE[case]
    with pytest.raises(grpc.RpcError) as error:
        getattr(embedder_stub, rpc)(request)
    assert error.value.code() == code, error.value.details()
    assert fragment in error.value.details()  # type: ignore[operator]
    assert_still_serving(embedder_stub)


def test_an_image_over_the_pixel_limit_is_refused_before_decoding(limited_stub: embedder_pb2_grpc.EmbedderStub) -> None:
    photo = sample_photo("chelsea").resize((200, 200))
    for image in (png(photo), pb.Image(raw=pb.RawImage(rgb=photo.tobytes(), width=200, height=200))):
        with pytest.raises(grpc.RpcError) as error:
            limited_stub.EmbedImages(pb.EmbedImagesRequest(images=[image]))
        assert error.value.code() == EXHAUSTED
        assert "200x200 = 40000 pixels exceeds the limit of 10000 pixels" in error.value.details()  # type: ignore[operator]
    assert_still_serving(limited_stub)


def test_a_message_over_the_size_limit_is_refused(limited_stub: embedder_pb2_grpc.EmbedderStub) -> None:
    with pytest.raises(grpc.RpcError) as error:
        limited_stub.EmbedImages(pb.EmbedImagesRequest(images=[encoded(b"\0" * (2 * 1024 * 1024))]))
    assert error.value.code() == EXHAUSTED
    assert "1048576" in error.value.details()  # type: ignore[operator]
    assert_still_serving(limited_stub)


class _FailingEmbedder(ClipEmbedder):
    """The tiny model, except that embedding the text "fail" raises, as a bug would."""

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        if "fail" in texts:
            raise RuntimeError("simulated bug")
        return super().tokenize(texts)


@pytest.fixture(scope="module")
def failing_server(tiny_clip_dir: Path) -> Iterator[GrpcServer]:
    embedder = _FailingEmbedder(str(tiny_clip_dir), dtype="fp32", device="cpu")
    with running_embedder(embedder_test_config(tiny_clip_dir), embedder) as server:
        yield server


def test_an_unexpected_error_is_internal_and_the_server_lives_on(
    failing_server: GrpcServer, caplog: pytest.LogCaptureFixture
) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{failing_server.port}") as channel:
        stub = embedder_pb2_grpc.EmbedderStub(channel)
        with pytest.raises(grpc.RpcError) as error:
            stub.EmbedTexts(pb.EmbedTextsRequest(texts=["fail"]))
        assert error.value.code() == grpc.StatusCode.INTERNAL
        assert "RuntimeError: simulated bug" in error.value.details()  # type: ignore[operator]
        assert any("EmbedTexts failed" in record.message for record in caplog.records)
        assert_still_serving(stub)


# --- discovery ---------------------------------------------------------------------------------------


def test_a_reflection_only_client_can_list_and_call(
    embedder_channel: grpc.Channel, embedder_stub: embedder_pb2_grpc.EmbedderStub
) -> None:
    from google.protobuf import descriptor_pool, message_factory
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    database = ProtoReflectionDescriptorDatabase(embedder_channel)
    services = set(database.get_services())
    assert {"clipsearch.v1.Embedder", "grpc.health.v1.Health"} <= services
    pool = descriptor_pool.DescriptorPool(database)
    method = pool.FindServiceByName("clipsearch.v1.Embedder").FindMethodByName("EmbedTexts")
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    call = embedder_channel.unary_unary(
        f"/clipsearch.v1.Embedder/{method.name}",
        request_serializer=request_class.SerializeToString,
        response_deserializer=response_class.FromString,
    )
    response = call(request_class(texts=["a photo of a cat"]))
    expected = embedder_stub.EmbedTexts(pb.EmbedTextsRequest(texts=["a photo of a cat"])).embeddings[0]
    np.testing.assert_allclose(list(response.embeddings[0].values), list(expected.values), atol=1e-6)
