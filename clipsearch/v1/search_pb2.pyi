from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MediaType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MEDIA_TYPE_UNSPECIFIED: _ClassVar[MediaType]
    MEDIA_TYPE_IMAGE: _ClassVar[MediaType]
    MEDIA_TYPE_VIDEO_FRAME: _ClassVar[MediaType]

class Algorithm(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALGORITHM_UNSPECIFIED: _ClassVar[Algorithm]
    ALGORITHM_FLAT: _ClassVar[Algorithm]
    ALGORITHM_HNSW: _ClassVar[Algorithm]

class VectorType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VECTOR_TYPE_UNSPECIFIED: _ClassVar[VectorType]
    VECTOR_TYPE_FLOAT32: _ClassVar[VectorType]
    VECTOR_TYPE_FLOAT16: _ClassVar[VectorType]

class LibraryState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LIBRARY_STATE_UNSPECIFIED: _ClassVar[LibraryState]
    LIBRARY_STATE_IDLE: _ClassVar[LibraryState]
    LIBRARY_STATE_SCANNING: _ClassVar[LibraryState]
    LIBRARY_STATE_INDEXING: _ClassVar[LibraryState]
    LIBRARY_STATE_WATCHING: _ClassVar[LibraryState]
    LIBRARY_STATE_ERROR: _ClassVar[LibraryState]
MEDIA_TYPE_UNSPECIFIED: MediaType
MEDIA_TYPE_IMAGE: MediaType
MEDIA_TYPE_VIDEO_FRAME: MediaType
ALGORITHM_UNSPECIFIED: Algorithm
ALGORITHM_FLAT: Algorithm
ALGORITHM_HNSW: Algorithm
VECTOR_TYPE_UNSPECIFIED: VectorType
VECTOR_TYPE_FLOAT32: VectorType
VECTOR_TYPE_FLOAT16: VectorType
LIBRARY_STATE_UNSPECIFIED: LibraryState
LIBRARY_STATE_IDLE: LibraryState
LIBRARY_STATE_SCANNING: LibraryState
LIBRARY_STATE_INDEXING: LibraryState
LIBRARY_STATE_WATCHING: LibraryState
LIBRARY_STATE_ERROR: LibraryState

class Metadata(_message.Message):
    __slots__ = ("sources", "media_type", "collection", "timestamp_seconds", "frame_index", "content_hash", "width", "height", "tags", "frame_interval_seconds", "span_end_seconds", "perceptual_hash")
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FRAME_INDEX_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    FRAME_INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SPAN_END_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PERCEPTUAL_HASH_FIELD_NUMBER: _ClassVar[int]
    sources: _containers.RepeatedScalarFieldContainer[str]
    media_type: MediaType
    collection: str
    timestamp_seconds: float
    frame_index: int
    content_hash: str
    width: int
    height: int
    tags: _containers.RepeatedScalarFieldContainer[str]
    frame_interval_seconds: float
    span_end_seconds: float
    perceptual_hash: int
    def __init__(self, sources: _Optional[_Iterable[str]] = ..., media_type: _Optional[_Union[MediaType, str]] = ..., collection: _Optional[str] = ..., timestamp_seconds: _Optional[float] = ..., frame_index: _Optional[int] = ..., content_hash: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., tags: _Optional[_Iterable[str]] = ..., frame_interval_seconds: _Optional[float] = ..., span_end_seconds: _Optional[float] = ..., perceptual_hash: _Optional[int] = ...) -> None: ...

class Item(_message.Message):
    __slots__ = ("id", "vector", "metadata")
    ID_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    id: str
    vector: _containers.RepeatedScalarFieldContainer[float]
    metadata: Metadata
    def __init__(self, id: _Optional[str] = ..., vector: _Optional[_Iterable[float]] = ..., metadata: _Optional[_Union[Metadata, _Mapping]] = ...) -> None: ...

class Filter(_message.Message):
    __slots__ = ("collections", "sources", "source_dir", "tags", "media_type", "min_timestamp_seconds", "max_timestamp_seconds", "content_hashes")
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    SOURCE_DIR_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    MIN_TIMESTAMP_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_TIMESTAMP_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASHES_FIELD_NUMBER: _ClassVar[int]
    collections: _containers.RepeatedScalarFieldContainer[str]
    sources: _containers.RepeatedScalarFieldContainer[str]
    source_dir: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    media_type: MediaType
    min_timestamp_seconds: float
    max_timestamp_seconds: float
    content_hashes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, collections: _Optional[_Iterable[str]] = ..., sources: _Optional[_Iterable[str]] = ..., source_dir: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., media_type: _Optional[_Union[MediaType, str]] = ..., min_timestamp_seconds: _Optional[float] = ..., max_timestamp_seconds: _Optional[float] = ..., content_hashes: _Optional[_Iterable[str]] = ...) -> None: ...

class UpsertRequest(_message.Message):
    __slots__ = ("items", "model", "staging")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    STAGING_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Item]
    model: EmbeddingModel
    staging: bool
    def __init__(self, items: _Optional[_Iterable[_Union[Item, _Mapping]]] = ..., model: _Optional[_Union[EmbeddingModel, _Mapping]] = ..., staging: _Optional[bool] = ...) -> None: ...

class UpsertResponse(_message.Message):
    __slots__ = ("upserted", "created")
    UPSERTED_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    upserted: int
    created: int
    def __init__(self, upserted: _Optional[int] = ..., created: _Optional[int] = ...) -> None: ...

class QueryRequest(_message.Message):
    __slots__ = ("vector", "k", "offset", "filter", "min_score", "ef_runtime", "with_vectors", "moments", "duplicates", "model", "said", "said_options")
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    EF_RUNTIME_FIELD_NUMBER: _ClassVar[int]
    WITH_VECTORS_FIELD_NUMBER: _ClassVar[int]
    MOMENTS_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SAID_FIELD_NUMBER: _ClassVar[int]
    SAID_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    vector: _containers.RepeatedScalarFieldContainer[float]
    k: int
    offset: int
    filter: Filter
    min_score: float
    ef_runtime: int
    with_vectors: bool
    moments: MomentOptions
    duplicates: DuplicateOptions
    model: EmbeddingModel
    said: str
    said_options: SaidOptions
    def __init__(self, vector: _Optional[_Iterable[float]] = ..., k: _Optional[int] = ..., offset: _Optional[int] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ..., min_score: _Optional[float] = ..., ef_runtime: _Optional[int] = ..., with_vectors: _Optional[bool] = ..., moments: _Optional[_Union[MomentOptions, _Mapping]] = ..., duplicates: _Optional[_Union[DuplicateOptions, _Mapping]] = ..., model: _Optional[_Union[EmbeddingModel, _Mapping]] = ..., said: _Optional[str] = ..., said_options: _Optional[_Union[SaidOptions, _Mapping]] = ...) -> None: ...

class SaidOptions(_message.Message):
    __slots__ = ("window_seconds", "languages")
    WINDOW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LANGUAGES_FIELD_NUMBER: _ClassVar[int]
    window_seconds: float
    languages: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, window_seconds: _Optional[float] = ..., languages: _Optional[_Iterable[str]] = ...) -> None: ...

class Cue(_message.Message):
    __slots__ = ("start_seconds", "end_seconds", "text")
    START_SECONDS_FIELD_NUMBER: _ClassVar[int]
    END_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    start_seconds: float
    end_seconds: float
    text: str
    def __init__(self, start_seconds: _Optional[float] = ..., end_seconds: _Optional[float] = ..., text: _Optional[str] = ...) -> None: ...

class CueTrack(_message.Message):
    __slots__ = ("name", "language", "cues")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    CUES_FIELD_NUMBER: _ClassVar[int]
    name: str
    language: str
    cues: _containers.RepeatedCompositeFieldContainer[Cue]
    def __init__(self, name: _Optional[str] = ..., language: _Optional[str] = ..., cues: _Optional[_Iterable[_Union[Cue, _Mapping]]] = ...) -> None: ...

class CueWriteRequest(_message.Message):
    __slots__ = ("collection", "content_hash", "signature", "tracks")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    TRACKS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    content_hash: str
    signature: str
    tracks: _containers.RepeatedCompositeFieldContainer[CueTrack]
    def __init__(self, collection: _Optional[str] = ..., content_hash: _Optional[str] = ..., signature: _Optional[str] = ..., tracks: _Optional[_Iterable[_Union[CueTrack, _Mapping]]] = ...) -> None: ...

class CueWriteResponse(_message.Message):
    __slots__ = ("cues",)
    CUES_FIELD_NUMBER: _ClassVar[int]
    cues: int
    def __init__(self, cues: _Optional[int] = ...) -> None: ...

class CueListRequest(_message.Message):
    __slots__ = ("collection", "content_hash", "signature_only")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_ONLY_FIELD_NUMBER: _ClassVar[int]
    collection: str
    content_hash: str
    signature_only: bool
    def __init__(self, collection: _Optional[str] = ..., content_hash: _Optional[str] = ..., signature_only: _Optional[bool] = ...) -> None: ...

class CueListResponse(_message.Message):
    __slots__ = ("found", "signature", "tracks")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    TRACKS_FIELD_NUMBER: _ClassVar[int]
    found: bool
    signature: str
    tracks: _containers.RepeatedCompositeFieldContainer[CueTrack]
    def __init__(self, found: _Optional[bool] = ..., signature: _Optional[str] = ..., tracks: _Optional[_Iterable[_Union[CueTrack, _Mapping]]] = ...) -> None: ...

class SaidLine(_message.Message):
    __slots__ = ("start_seconds", "end_seconds", "text", "language", "track")
    START_SECONDS_FIELD_NUMBER: _ClassVar[int]
    END_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    TRACK_FIELD_NUMBER: _ClassVar[int]
    start_seconds: float
    end_seconds: float
    text: str
    language: str
    track: str
    def __init__(self, start_seconds: _Optional[float] = ..., end_seconds: _Optional[float] = ..., text: _Optional[str] = ..., language: _Optional[str] = ..., track: _Optional[str] = ...) -> None: ...

class MomentOptions(_message.Message):
    __slots__ = ("gap_seconds",)
    GAP_SECONDS_FIELD_NUMBER: _ClassVar[int]
    gap_seconds: float
    def __init__(self, gap_seconds: _Optional[float] = ...) -> None: ...

class DuplicateOptions(_message.Message):
    __slots__ = ("max_distance",)
    MAX_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    max_distance: int
    def __init__(self, max_distance: _Optional[int] = ...) -> None: ...

class Match(_message.Message):
    __slots__ = ("item", "score", "start_seconds", "end_seconds", "frames", "duplicates", "said_lines", "seen_rank", "said_rank")
    ITEM_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    START_SECONDS_FIELD_NUMBER: _ClassVar[int]
    END_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    SAID_LINES_FIELD_NUMBER: _ClassVar[int]
    SEEN_RANK_FIELD_NUMBER: _ClassVar[int]
    SAID_RANK_FIELD_NUMBER: _ClassVar[int]
    item: Item
    score: float
    start_seconds: float
    end_seconds: float
    frames: int
    duplicates: _containers.RepeatedCompositeFieldContainer[Match]
    said_lines: _containers.RepeatedCompositeFieldContainer[SaidLine]
    seen_rank: int
    said_rank: int
    def __init__(self, item: _Optional[_Union[Item, _Mapping]] = ..., score: _Optional[float] = ..., start_seconds: _Optional[float] = ..., end_seconds: _Optional[float] = ..., frames: _Optional[int] = ..., duplicates: _Optional[_Iterable[_Union[Match, _Mapping]]] = ..., said_lines: _Optional[_Iterable[_Union[SaidLine, _Mapping]]] = ..., seen_rank: _Optional[int] = ..., said_rank: _Optional[int] = ...) -> None: ...

class QueryResponse(_message.Message):
    __slots__ = ("matches", "partial", "percent_indexed", "said_query", "said_words")
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    PERCENT_INDEXED_FIELD_NUMBER: _ClassVar[int]
    SAID_QUERY_FIELD_NUMBER: _ClassVar[int]
    SAID_WORDS_FIELD_NUMBER: _ClassVar[int]
    matches: _containers.RepeatedCompositeFieldContainer[Match]
    partial: bool
    percent_indexed: float
    said_query: str
    said_words: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, matches: _Optional[_Iterable[_Union[Match, _Mapping]]] = ..., partial: _Optional[bool] = ..., percent_indexed: _Optional[float] = ..., said_query: _Optional[str] = ..., said_words: _Optional[_Iterable[str]] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("ids", "with_vectors")
    IDS_FIELD_NUMBER: _ClassVar[int]
    WITH_VECTORS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[str]
    with_vectors: bool
    def __init__(self, ids: _Optional[_Iterable[str]] = ..., with_vectors: _Optional[bool] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("items", "missing_ids")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    MISSING_IDS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Item]
    missing_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, items: _Optional[_Iterable[_Union[Item, _Mapping]]] = ..., missing_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("filter", "page_size", "page_token", "with_vectors")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    WITH_VECTORS_FIELD_NUMBER: _ClassVar[int]
    filter: Filter
    page_size: int
    page_token: str
    with_vectors: bool
    def __init__(self, filter: _Optional[_Union[Filter, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., with_vectors: _Optional[bool] = ...) -> None: ...

class ListResponse(_message.Message):
    __slots__ = ("items", "next_page_token", "total")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Item]
    next_page_token: str
    total: int
    def __init__(self, items: _Optional[_Iterable[_Union[Item, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total: _Optional[int] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("ids", "sources", "collection")
    IDS_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[str]
    sources: _containers.RepeatedScalarFieldContainer[str]
    collection: str
    def __init__(self, ids: _Optional[_Iterable[str]] = ..., sources: _Optional[_Iterable[str]] = ..., collection: _Optional[str] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("deleted", "updated")
    DELETED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    updated: int
    def __init__(self, deleted: _Optional[int] = ..., updated: _Optional[int] = ...) -> None: ...

class IndexSettings(_message.Message):
    __slots__ = ("index_name", "key_prefix", "algorithm", "dimension", "distance_metric", "m", "ef_construction", "ef_runtime", "model", "vector_type")
    INDEX_NAME_FIELD_NUMBER: _ClassVar[int]
    KEY_PREFIX_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_METRIC_FIELD_NUMBER: _ClassVar[int]
    M_FIELD_NUMBER: _ClassVar[int]
    EF_CONSTRUCTION_FIELD_NUMBER: _ClassVar[int]
    EF_RUNTIME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VECTOR_TYPE_FIELD_NUMBER: _ClassVar[int]
    index_name: str
    key_prefix: str
    algorithm: Algorithm
    dimension: int
    distance_metric: str
    m: int
    ef_construction: int
    ef_runtime: int
    model: EmbeddingModel
    vector_type: VectorType
    def __init__(self, index_name: _Optional[str] = ..., key_prefix: _Optional[str] = ..., algorithm: _Optional[_Union[Algorithm, str]] = ..., dimension: _Optional[int] = ..., distance_metric: _Optional[str] = ..., m: _Optional[int] = ..., ef_construction: _Optional[int] = ..., ef_runtime: _Optional[int] = ..., model: _Optional[_Union[EmbeddingModel, _Mapping]] = ..., vector_type: _Optional[_Union[VectorType, str]] = ...) -> None: ...

class EmbeddingModel(_message.Message):
    __slots__ = ("model_id", "family", "dimension", "fingerprint")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    family: str
    dimension: int
    fingerprint: str
    def __init__(self, model_id: _Optional[str] = ..., family: _Optional[str] = ..., dimension: _Optional[int] = ..., fingerprint: _Optional[str] = ...) -> None: ...

class CollectionStats(_message.Message):
    __slots__ = ("name", "items")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    name: str
    items: int
    def __init__(self, name: _Optional[str] = ..., items: _Optional[int] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatsResponse(_message.Message):
    __slots__ = ("items", "collections", "redis_memory_bytes", "vector_index_memory_bytes", "indexing", "percent_indexed", "settings", "redis_version", "loading", "loading_percent", "loading_eta_seconds", "loading_message", "indexing_eta_seconds")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    REDIS_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    VECTOR_INDEX_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    INDEXING_FIELD_NUMBER: _ClassVar[int]
    PERCENT_INDEXED_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    REDIS_VERSION_FIELD_NUMBER: _ClassVar[int]
    LOADING_FIELD_NUMBER: _ClassVar[int]
    LOADING_PERCENT_FIELD_NUMBER: _ClassVar[int]
    LOADING_ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LOADING_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    INDEXING_ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    items: int
    collections: _containers.RepeatedCompositeFieldContainer[CollectionStats]
    redis_memory_bytes: int
    vector_index_memory_bytes: int
    indexing: bool
    percent_indexed: float
    settings: IndexSettings
    redis_version: str
    loading: bool
    loading_percent: float
    loading_eta_seconds: float
    loading_message: str
    indexing_eta_seconds: float
    def __init__(self, items: _Optional[int] = ..., collections: _Optional[_Iterable[_Union[CollectionStats, _Mapping]]] = ..., redis_memory_bytes: _Optional[int] = ..., vector_index_memory_bytes: _Optional[int] = ..., indexing: _Optional[bool] = ..., percent_indexed: _Optional[float] = ..., settings: _Optional[_Union[IndexSettings, _Mapping]] = ..., redis_version: _Optional[str] = ..., loading: _Optional[bool] = ..., loading_percent: _Optional[float] = ..., loading_eta_seconds: _Optional[float] = ..., loading_message: _Optional[str] = ..., indexing_eta_seconds: _Optional[float] = ...) -> None: ...

class ListCollectionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListCollectionsResponse(_message.Message):
    __slots__ = ("collections",)
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    collections: _containers.RepeatedCompositeFieldContainer[CollectionStats]
    def __init__(self, collections: _Optional[_Iterable[_Union[CollectionStats, _Mapping]]] = ...) -> None: ...

class BeginReindexRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: EmbeddingModel
    def __init__(self, model: _Optional[_Union[EmbeddingModel, _Mapping]] = ...) -> None: ...

class ReindexStatus(_message.Message):
    __slots__ = ("staging_index", "staging_key_prefix", "staged_items", "resumed", "model", "live_model", "live_items")
    STAGING_INDEX_FIELD_NUMBER: _ClassVar[int]
    STAGING_KEY_PREFIX_FIELD_NUMBER: _ClassVar[int]
    STAGED_ITEMS_FIELD_NUMBER: _ClassVar[int]
    RESUMED_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LIVE_MODEL_FIELD_NUMBER: _ClassVar[int]
    LIVE_ITEMS_FIELD_NUMBER: _ClassVar[int]
    staging_index: str
    staging_key_prefix: str
    staged_items: int
    resumed: bool
    model: EmbeddingModel
    live_model: EmbeddingModel
    live_items: int
    def __init__(self, staging_index: _Optional[str] = ..., staging_key_prefix: _Optional[str] = ..., staged_items: _Optional[int] = ..., resumed: _Optional[bool] = ..., model: _Optional[_Union[EmbeddingModel, _Mapping]] = ..., live_model: _Optional[_Union[EmbeddingModel, _Mapping]] = ..., live_items: _Optional[int] = ...) -> None: ...

class StagedIdsRequest(_message.Message):
    __slots__ = ("ids",)
    IDS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ids: _Optional[_Iterable[str]] = ...) -> None: ...

class StagedIdsResponse(_message.Message):
    __slots__ = ("ids",)
    IDS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ids: _Optional[_Iterable[str]] = ...) -> None: ...

class FinishReindexRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: EmbeddingModel
    def __init__(self, model: _Optional[_Union[EmbeddingModel, _Mapping]] = ...) -> None: ...

class FinishReindexResponse(_message.Message):
    __slots__ = ("items", "dropped_items", "index")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    DROPPED_ITEMS_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    items: int
    dropped_items: int
    index: str
    def __init__(self, items: _Optional[int] = ..., dropped_items: _Optional[int] = ..., index: _Optional[str] = ...) -> None: ...

class AbortReindexRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AbortReindexResponse(_message.Message):
    __slots__ = ("aborted", "discarded_items")
    ABORTED_FIELD_NUMBER: _ClassVar[int]
    DISCARDED_ITEMS_FIELD_NUMBER: _ClassVar[int]
    aborted: bool
    discarded_items: int
    def __init__(self, aborted: _Optional[bool] = ..., discarded_items: _Optional[int] = ...) -> None: ...

class LibraryFailure(_message.Message):
    __slots__ = ("path", "reason")
    PATH_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    path: str
    reason: str
    def __init__(self, path: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class LibraryStatus(_message.Message):
    __slots__ = ("state", "files_done", "files_total", "eta_seconds", "message", "failures", "failed_files", "updated_at", "indexer", "caught_up_at")
    STATE_FIELD_NUMBER: _ClassVar[int]
    FILES_DONE_FIELD_NUMBER: _ClassVar[int]
    FILES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    FAILED_FILES_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    INDEXER_FIELD_NUMBER: _ClassVar[int]
    CAUGHT_UP_AT_FIELD_NUMBER: _ClassVar[int]
    state: LibraryState
    files_done: int
    files_total: int
    eta_seconds: float
    message: str
    failures: _containers.RepeatedCompositeFieldContainer[LibraryFailure]
    failed_files: int
    updated_at: float
    indexer: str
    caught_up_at: float
    def __init__(self, state: _Optional[_Union[LibraryState, str]] = ..., files_done: _Optional[int] = ..., files_total: _Optional[int] = ..., eta_seconds: _Optional[float] = ..., message: _Optional[str] = ..., failures: _Optional[_Iterable[_Union[LibraryFailure, _Mapping]]] = ..., failed_files: _Optional[int] = ..., updated_at: _Optional[float] = ..., indexer: _Optional[str] = ..., caught_up_at: _Optional[float] = ...) -> None: ...

class Library(_message.Message):
    __slots__ = ("name", "path", "uri", "collection", "items", "status", "rescan_requests", "created_at")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    RESCAN_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    path: str
    uri: str
    collection: str
    items: int
    status: LibraryStatus
    rescan_requests: int
    created_at: float
    def __init__(self, name: _Optional[str] = ..., path: _Optional[str] = ..., uri: _Optional[str] = ..., collection: _Optional[str] = ..., items: _Optional[int] = ..., status: _Optional[_Union[LibraryStatus, _Mapping]] = ..., rescan_requests: _Optional[int] = ..., created_at: _Optional[float] = ...) -> None: ...

class ListLibrariesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListLibrariesResponse(_message.Message):
    __slots__ = ("libraries",)
    LIBRARIES_FIELD_NUMBER: _ClassVar[int]
    libraries: _containers.RepeatedCompositeFieldContainer[Library]
    def __init__(self, libraries: _Optional[_Iterable[_Union[Library, _Mapping]]] = ...) -> None: ...

class AddLibraryRequest(_message.Message):
    __slots__ = ("path", "collection", "name")
    PATH_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    path: str
    collection: str
    name: str
    def __init__(self, path: _Optional[str] = ..., collection: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class RemoveLibraryRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class RemoveLibraryResponse(_message.Message):
    __slots__ = ("library", "deleted_items", "updated_items")
    LIBRARY_FIELD_NUMBER: _ClassVar[int]
    DELETED_ITEMS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_ITEMS_FIELD_NUMBER: _ClassVar[int]
    library: Library
    deleted_items: int
    updated_items: int
    def __init__(self, library: _Optional[_Union[Library, _Mapping]] = ..., deleted_items: _Optional[int] = ..., updated_items: _Optional[int] = ...) -> None: ...

class RequestLibraryRescanRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ReportLibraryStatusRequest(_message.Message):
    __slots__ = ("name", "status")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    name: str
    status: LibraryStatus
    def __init__(self, name: _Optional[str] = ..., status: _Optional[_Union[LibraryStatus, _Mapping]] = ...) -> None: ...

class ReportLibraryStatusResponse(_message.Message):
    __slots__ = ("known",)
    KNOWN_FIELD_NUMBER: _ClassVar[int]
    known: bool
    def __init__(self, known: _Optional[bool] = ...) -> None: ...
