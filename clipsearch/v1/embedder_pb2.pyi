from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Scoring(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCORING_UNSPECIFIED: _ClassVar[Scoring]
    SCORING_SOFTMAX: _ClassVar[Scoring]
    SCORING_SIGMOID: _ClassVar[Scoring]
SCORING_UNSPECIFIED: Scoring
SCORING_SOFTMAX: Scoring
SCORING_SIGMOID: Scoring

class Image(_message.Message):
    __slots__ = ("encoded", "raw")
    ENCODED_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    encoded: bytes
    raw: RawImage
    def __init__(self, encoded: _Optional[bytes] = ..., raw: _Optional[_Union[RawImage, _Mapping]] = ...) -> None: ...

class RawImage(_message.Message):
    __slots__ = ("rgb", "width", "height")
    RGB_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    rgb: bytes
    width: int
    height: int
    def __init__(self, rgb: _Optional[bytes] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class Embedding(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class ItemError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class EmbedImagesRequest(_message.Message):
    __slots__ = ("images", "allow_partial")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    ALLOW_PARTIAL_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[Image]
    allow_partial: bool
    def __init__(self, images: _Optional[_Iterable[_Union[Image, _Mapping]]] = ..., allow_partial: _Optional[bool] = ...) -> None: ...

class ImageResult(_message.Message):
    __slots__ = ("embedding", "error", "width", "height")
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    embedding: Embedding
    error: ItemError
    width: int
    height: int
    def __init__(self, embedding: _Optional[_Union[Embedding, _Mapping]] = ..., error: _Optional[_Union[ItemError, _Mapping]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class EmbedImagesResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ImageResult]
    def __init__(self, results: _Optional[_Iterable[_Union[ImageResult, _Mapping]]] = ...) -> None: ...

class EmbedTextsRequest(_message.Message):
    __slots__ = ("texts",)
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, texts: _Optional[_Iterable[str]] = ...) -> None: ...

class EmbedTextsResponse(_message.Message):
    __slots__ = ("embeddings",)
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    embeddings: _containers.RepeatedCompositeFieldContainer[Embedding]
    def __init__(self, embeddings: _Optional[_Iterable[_Union[Embedding, _Mapping]]] = ...) -> None: ...

class ClassifyRequest(_message.Message):
    __slots__ = ("image", "embedding", "labels", "prompt_template")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    image: Image
    embedding: Embedding
    labels: _containers.RepeatedScalarFieldContainer[str]
    prompt_template: str
    def __init__(self, image: _Optional[_Union[Image, _Mapping]] = ..., embedding: _Optional[_Union[Embedding, _Mapping]] = ..., labels: _Optional[_Iterable[str]] = ..., prompt_template: _Optional[str] = ...) -> None: ...

class LabelScore(_message.Message):
    __slots__ = ("label", "probability", "logit", "cosine")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    LOGIT_FIELD_NUMBER: _ClassVar[int]
    COSINE_FIELD_NUMBER: _ClassVar[int]
    label: str
    probability: float
    logit: float
    cosine: float
    def __init__(self, label: _Optional[str] = ..., probability: _Optional[float] = ..., logit: _Optional[float] = ..., cosine: _Optional[float] = ...) -> None: ...

class ClassifyResponse(_message.Message):
    __slots__ = ("scores",)
    SCORES_FIELD_NUMBER: _ClassVar[int]
    scores: _containers.RepeatedCompositeFieldContainer[LabelScore]
    def __init__(self, scores: _Optional[_Iterable[_Union[LabelScore, _Mapping]]] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("model_id", "dimension", "normalized", "max_text_tokens", "image_size", "dtype", "device", "logit_scale", "max_batch_images", "max_batch_texts", "max_labels", "max_text_bytes", "max_image_pixels", "max_message_bytes", "family", "scoring", "logit_bias", "runtime", "fingerprint")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    NORMALIZED_FIELD_NUMBER: _ClassVar[int]
    MAX_TEXT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    LOGIT_SCALE_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_IMAGES_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_TEXTS_FIELD_NUMBER: _ClassVar[int]
    MAX_LABELS_FIELD_NUMBER: _ClassVar[int]
    MAX_TEXT_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_IMAGE_PIXELS_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    SCORING_FIELD_NUMBER: _ClassVar[int]
    LOGIT_BIAS_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    dimension: int
    normalized: bool
    max_text_tokens: int
    image_size: int
    dtype: str
    device: str
    logit_scale: float
    max_batch_images: int
    max_batch_texts: int
    max_labels: int
    max_text_bytes: int
    max_image_pixels: int
    max_message_bytes: int
    family: str
    scoring: Scoring
    logit_bias: float
    runtime: str
    fingerprint: str
    def __init__(self, model_id: _Optional[str] = ..., dimension: _Optional[int] = ..., normalized: _Optional[bool] = ..., max_text_tokens: _Optional[int] = ..., image_size: _Optional[int] = ..., dtype: _Optional[str] = ..., device: _Optional[str] = ..., logit_scale: _Optional[float] = ..., max_batch_images: _Optional[int] = ..., max_batch_texts: _Optional[int] = ..., max_labels: _Optional[int] = ..., max_text_bytes: _Optional[int] = ..., max_image_pixels: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., family: _Optional[str] = ..., scoring: _Optional[_Union[Scoring, str]] = ..., logit_bias: _Optional[float] = ..., runtime: _Optional[str] = ..., fingerprint: _Optional[str] = ...) -> None: ...
