"""Chinese-CLIP and SigLIP served over gRPC: ModelInfo, vectors equal to transformers', Chinese end to end."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image

from client import Client
from clipsearch.v1 import embedder_pb2 as pb
from clipsearch.v1 import embedder_pb2_grpc
from embedder_service.model import ClipEmbedder
from tests.support.embedder import (
    cosine,
    embedder_test_config,
    encode_image,
    family_reference_outputs,
    running_embedder,
    sample_photo,
)

CHINESE = ["微笑的男人", "一只猫"]


@pytest.fixture(scope="module")
def family_stubs(
    tiny_family_dirs: dict[str, Path], tiny_family_embedders: dict[str, ClipEmbedder]
) -> Iterator[dict[str, embedder_pb2_grpc.EmbedderStub]]:
    """An in-process embedder server per family, on its tiny checkpoint."""
    from contextlib import ExitStack

    with ExitStack() as stack:
        stubs = {}
        for family, directory in tiny_family_dirs.items():
            server = stack.enter_context(
                running_embedder(embedder_test_config(directory), tiny_family_embedders[family])
            )
            channel = stack.enter_context(grpc.insecure_channel(f"127.0.0.1:{server.port}"))
            stubs[family] = embedder_pb2_grpc.EmbedderStub(channel)
        yield stubs


@pytest.mark.parametrize(
    ("family", "scoring", "tokens"),
    [("clip", pb.SCORING_SOFTMAX, 77), ("chinese_clip", pb.SCORING_SOFTMAX, 52), ("siglip", pb.SCORING_SIGMOID, 64)],
)
def test_model_info_reports_the_family(
    family: str,
    scoring: int,
    tokens: int,
    family_stubs: dict[str, embedder_pb2_grpc.EmbedderStub],
    tiny_family_embedders: dict[str, ClipEmbedder],
) -> None:
    info = family_stubs[family].GetModelInfo(pb.GetModelInfoRequest())
    assert info.family == family
    assert info.scoring == scoring
    assert info.runtime == "torch"
    assert info.max_text_tokens == tokens
    assert info.image_size == 64 and info.dimension == 32
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", info.fingerprint)
    assert info.fingerprint == tiny_family_embedders[family].info.fingerprint
    assert info.logit_bias == pytest.approx(-10.0 if family == "siglip" else 0.0)


@pytest.mark.parametrize("family", ["clip", "chinese_clip", "siglip"])
def test_served_vectors_equal_the_family_model(
    family: str, family_stubs: dict[str, embedder_pb2_grpc.EmbedderStub], tiny_family_dirs: dict[str, Path]
) -> None:
    stub = family_stubs[family]
    photo = sample_photo("astronaut")
    reference = family_reference_outputs(family, tiny_family_dirs[family], [photo], CHINESE)
    texts = stub.EmbedTexts(pb.EmbedTextsRequest(texts=CHINESE)).embeddings
    for got, want in zip(texts, reference.text_embeds.numpy(), strict=True):
        assert cosine(np.array(got.values), want) >= 0.9999
    images = stub.EmbedImages(pb.EmbedImagesRequest(images=[pb.Image(encoded=encode_image(photo))])).results
    assert cosine(np.array(images[0].embedding.values), reference.image_embeds.numpy()[0]) >= 0.9999


def test_siglip_classify_scores_each_label_by_its_sigmoid(
    family_stubs: dict[str, embedder_pb2_grpc.EmbedderStub],
) -> None:
    labels = ["猫", "狗", "微笑的男人"]
    request = pb.ClassifyRequest(image=pb.Image(encoded=encode_image(sample_photo("chelsea"))), labels=labels)
    scores = family_stubs["siglip"].Classify(request).scores
    assert [score.label for score in scores] == labels
    for score in scores:
        assert score.probability == pytest.approx(1 / (1 + np.exp(-score.logit)), abs=1e-6)


def test_chinese_end_to_end_on_chinese_clip(
    tiny_chinese_clip_dir: Path,
    tiny_family_embedders: dict[str, ClipEmbedder],
    search_address: str,
    tmp_path: Path,
) -> None:
    names = ["微笑的男人.png", "一只猫.jpg", "城市街道的照片.png"]
    folder = tmp_path / "照片"
    folder.mkdir()
    rng = np.random.default_rng(5)
    for name in names:
        pixels = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        Image.fromarray(pixels).resize((96, 72), Image.Resampling.NEAREST).save(folder / name, quality=95)
    config = embedder_test_config(tiny_chinese_clip_dir)
    with (
        running_embedder(config, tiny_family_embedders["chinese_clip"]) as server,
        Client(f"127.0.0.1:{server.port}", search_address, connect_timeout=30) as client,
    ):
        assert client.model_info().family == "chinese_clip"
        report = client.index([folder], collection="相册", tags=["中文"])
        assert report.indexed == len(names), report
        hits = client.search_text("微笑的男人", top=10)
        assert sorted(Path(hit.source).name for hit in hits) == sorted(names)
        assert {Path(hit.source).parent.name for hit in hits} == {"照片"}
        assert {hit.collection for hit in hits} == {"相册"} and all(hit.tags == ("中文",) for hit in hits)
        # The best hit for a text is the image whose vector is nearest the text's, as the embedder computes it.
        text_vector = tiny_family_embedders["chinese_clip"].embed_texts(["微笑的男人"])[0]
        assert hits[0].score == pytest.approx(max(hit.score for hit in hits))
        assert abs(hits[0].score - float(client.embed_image(folder / Path(hits[0].source).name) @ text_vector)) < 1e-3
        labels = ["猫", "狗", "微笑的男人"]
        scores = client.classify(folder / names[1], labels)
        assert sorted(score.label for score in scores) == sorted(labels)
        assert [score.probability for score in scores] == sorted((s.probability for s in scores), reverse=True)
        assert sum(score.probability for score in scores) == pytest.approx(1.0, abs=1e-5)
