"""clipsearch.v1.Embedder over gRPC: validates requests, maps them to the model, errors to status codes."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
import numpy as np

from clipsearch.rpc_status import ErrorStatuses, StatusRule
from clipsearch.v1 import embedder_pb2 as pb
from clipsearch.v1 import embedder_pb2_grpc
from embedder_service.batching import BatcherClosed, BatchingEmbedder
from embedder_service.config import Limits
from embedder_service.families import SIGMOID, SOFTMAX
from embedder_service.model import ClipEmbedder
from embedder_service.preprocess import DecodedImage, ImageTooLarge, InvalidImage, Preprocessor, decode_image, raw_image

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Embedder"].full_name
_SCORING = {SOFTMAX: pb.SCORING_SOFTMAX, SIGMOID: pb.SCORING_SIGMOID}


class BadRequest(Exception):
    """A malformed request: missing, empty, repeated or out-of-range values."""


class OverLimit(Exception):
    """A request over one of the limits ModelInfo reports: split it."""


_STATUSES = ErrorStatuses(
    [
        StatusRule(BadRequest, grpc.StatusCode.INVALID_ARGUMENT),
        StatusRule(OverLimit, grpc.StatusCode.RESOURCE_EXHAUSTED),
        StatusRule(ImageTooLarge, grpc.StatusCode.RESOURCE_EXHAUSTED),
        StatusRule(InvalidImage, grpc.StatusCode.INVALID_ARGUMENT),
        StatusRule(
            BatcherClosed,
            grpc.StatusCode.UNAVAILABLE,
            lambda method, error: f"{method}: {error}; retry on another replica",
        ),
    ]
)


def _located(error: InvalidImage, where: str) -> InvalidImage:
    """The same kind of image error, its message led by the request field it is about."""
    return type(error)(f"{where}: {error}")


class EmbedderServicer(embedder_pb2_grpc.EmbedderServicer):
    """Implements every RPC of clipsearch.v1.Embedder as embedder.proto documents it."""

    def __init__(self, embedder: ClipEmbedder | BatchingEmbedder, limits: Limits, *, fast_resize: bool = False) -> None:
        self._embedder = embedder
        self._limits = limits
        self._preprocess = Preprocessor(embedder.preprocess_spec, fast=fast_resize)

    # --- RPCs -------------------------------------------------------------------------------------

    @_STATUSES.rpc
    def EmbedImages(self, request: pb.EmbedImagesRequest, context: grpc.ServicerContext) -> pb.EmbedImagesResponse:
        count = len(request.images)
        if count == 0:
            raise BadRequest("images: at least one image is required")
        if count > self._limits.max_batch_images:
            raise OverLimit(
                f"images: {count} images exceed the limit of {self._limits.max_batch_images} per call "
                "(ModelInfo.max_batch_images); split the batch",
            )
        results = [pb.ImageResult() for _ in range(count)]
        pixels: list[np.ndarray] = []
        embedded: list[int] = []
        for index, image in enumerate(request.images):
            try:
                decoded = self._decode(image)
                pixels.append(self._preprocess(decoded.image, decoded.box))
            except InvalidImage as error:
                if not request.allow_partial:
                    raise _located(error, f"images[{index}]") from None
                results[index].error.code = _STATUSES.code(error).value[0]
                results[index].error.message = str(error)
                continue
            results[index].width = decoded.width
            results[index].height = decoded.height
            embedded.append(index)
        if pixels:
            vectors = self._embedder.embed_images(np.stack(pixels))
            for index, vector in zip(embedded, vectors, strict=False):
                results[index].embedding.values.extend(vector.tolist())
        return pb.EmbedImagesResponse(results=results)

    @_STATUSES.rpc
    def EmbedTexts(self, request: pb.EmbedTextsRequest, context: grpc.ServicerContext) -> pb.EmbedTextsResponse:
        count = len(request.texts)
        if count == 0:
            raise BadRequest("texts: at least one text is required")
        if count > self._limits.max_batch_texts:
            raise OverLimit(
                f"texts: {count} texts exceed the limit of {self._limits.max_batch_texts} per call "
                "(ModelInfo.max_batch_texts); split the batch",
            )
        for index, text in enumerate(request.texts):
            self._check_text(f"texts[{index}]", text, "text")
        vectors = self._embedder.embed_texts(list(request.texts))
        return pb.EmbedTextsResponse(embeddings=[pb.Embedding(values=vector.tolist()) for vector in vectors])

    @_STATUSES.rpc
    def Classify(self, request: pb.ClassifyRequest, context: grpc.ServicerContext) -> pb.ClassifyResponse:
        labels = list(request.labels)
        self._check_labels(labels)
        template = request.prompt_template
        if template and template.count("{}") != 1:
            raise BadRequest(
                f'prompt_template: {template!r} must contain "{{}}" exactly once (where the label '
                'goes), e.g. "a photo of {}"; leave it empty to use labels as they are',
            )
        if template:
            self._check_text("prompt_template", template, "prompt template")
        which = request.WhichOneof("input")
        if which == "image":
            try:
                decoded = self._decode(request.image)
                pixels = self._preprocess(decoded.image, decoded.box)
            except InvalidImage as error:
                raise _located(error, "image") from None
            vector = self._embedder.embed_images(pixels[None])[0]
        elif which == "embedding":
            vector = self._check_embedding(request.embedding)
        else:
            raise BadRequest("input: set either image or embedding")
        result = self._embedder.classify(vector, labels, template)
        return pb.ClassifyResponse(
            scores=[
                pb.LabelScore(label=label, probability=float(p), logit=float(logit), cosine=float(cosine))
                for label, p, logit, cosine in zip(
                    labels, result.probabilities, result.logits, result.cosines, strict=False
                )
            ]
        )

    @_STATUSES.rpc
    def GetModelInfo(self, request: pb.GetModelInfoRequest, context: grpc.ServicerContext) -> pb.ModelInfo:
        info = self._embedder.info
        limits = self._limits
        return pb.ModelInfo(
            model_id=info.model_id,
            dimension=info.dimension,
            normalized=True,
            max_text_tokens=info.max_text_tokens,
            image_size=info.image_size,
            dtype=info.dtype,
            device=info.device,
            logit_scale=info.logit_scale,
            max_batch_images=limits.max_batch_images,
            max_batch_texts=limits.max_batch_texts,
            max_labels=limits.max_labels,
            max_text_bytes=limits.max_text_bytes,
            max_image_pixels=limits.max_image_pixels,
            max_message_bytes=limits.max_message_bytes,
            family=info.family,
            scoring=_SCORING[info.scoring],
            logit_bias=info.logit_bias,
            runtime=info.runtime,
            fingerprint=info.fingerprint,
        )

    # --- validation -------------------------------------------------------------------------------

    def _decode(self, image: pb.Image) -> DecodedImage:
        which = image.WhichOneof("source")
        max_pixels = self._limits.max_image_pixels
        if which == "encoded":
            return decode_image(image.encoded, max_pixels, draft_size=self._preprocess.draft_size)
        if which == "raw":
            raw = image.raw
            return raw_image(raw.rgb, raw.width, raw.height, max_pixels)
        raise InvalidImage("no image: set either encoded or raw")

    def _check_text(self, name: str, text: str, what: str) -> None:
        if not text.strip():
            raise BadRequest(f"{name}: empty {what}")
        size = len(text.encode("utf-8"))
        if size > self._limits.max_text_bytes:
            raise BadRequest(
                f"{name}: {size} bytes exceed the limit of {self._limits.max_text_bytes} UTF-8 bytes "
                "per text (ModelInfo.max_text_bytes)",
            )

    def _check_labels(self, labels: Sequence[str]) -> None:
        if not labels:
            raise BadRequest("labels: at least one label is required")
        if len(labels) > self._limits.max_labels:
            raise OverLimit(
                f"labels: {len(labels)} labels exceed the limit of {self._limits.max_labels} per call "
                "(ModelInfo.max_labels)",
            )
        seen: dict[str, int] = {}
        for index, label in enumerate(labels):
            self._check_text(f"labels[{index}]", label, "label")
            if label in seen:
                raise BadRequest(f"labels[{index}]: {label!r} repeats labels[{seen[label]}]")
            seen[label] = index

    def _check_embedding(self, embedding: pb.Embedding) -> np.ndarray:
        dimension = self._embedder.info.dimension
        values = np.asarray(embedding.values, dtype=np.float32)
        if values.shape[0] != dimension:
            raise BadRequest(
                f"embedding: has {values.shape[0]} values, the model's vectors have {dimension}",
            )
        if not np.all(np.isfinite(values)):
            raise BadRequest("embedding: contains NaN or infinite values")
        if not np.any(values):
            raise BadRequest("embedding: is all zeros, so it has no direction")
        return values
