"""The Search gRPC servicer: converts between protos and the domain index, and errors into gRPC statuses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
import numpy as np

from clipsearch.rpc_status import ErrorStatuses, StatusRule
from clipsearch.v1 import search_pb2 as pb
from clipsearch.v1 import search_pb2_grpc
from search_service.catalog import EmbeddingModel
from search_service.cues import Cue, CueStore, CueTrack
from search_service.errors import (
    IndexMismatch,
    InvalidArgument,
    LibraryChanged,
    LibraryConflict,
    LibraryNotFound,
    Loading,
    QueryTimeout,
    Unavailable,
)
from search_service.index import SearchIndex
from search_service.items import (
    DuplicateOptions,
    Filter,
    Item,
    Match,
    MediaType,
    Metadata,
    MomentOptions,
    SaidOptions,
)
from search_service.libraries import Libraries, Library, LibraryState, LibraryStatus
from search_service.loading import describe
from search_service.reindex import Reindexer
from search_service.said import SaidSearch

_MEDIA_TYPES = {
    pb.MEDIA_TYPE_UNSPECIFIED: MediaType.UNSPECIFIED,
    pb.MEDIA_TYPE_IMAGE: MediaType.IMAGE,
    pb.MEDIA_TYPE_VIDEO_FRAME: MediaType.VIDEO_FRAME,
}
_MEDIA_TYPES_PB = {value: key for key, value in _MEDIA_TYPES.items()}
_ALGORITHMS_PB = {"hnsw": pb.ALGORITHM_HNSW, "flat": pb.ALGORITHM_FLAT}
_VECTOR_TYPES_PB = {"float32": pb.VECTOR_TYPE_FLOAT32, "float16": pb.VECTOR_TYPE_FLOAT16}
_STATUSES = ErrorStatuses(
    [
        StatusRule(InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
        StatusRule(IndexMismatch, grpc.StatusCode.FAILED_PRECONDITION),
        StatusRule(Unavailable, grpc.StatusCode.UNAVAILABLE),
        StatusRule(QueryTimeout, grpc.StatusCode.DEADLINE_EXCEEDED),
        StatusRule(LibraryNotFound, grpc.StatusCode.NOT_FOUND),
        StatusRule(LibraryConflict, grpc.StatusCode.ALREADY_EXISTS),
        StatusRule(LibraryChanged, grpc.StatusCode.ABORTED),
    ],
    internal=lambda method, error: f"internal error: {type(error).__name__}: {error}",
)


class SearchServicer(search_pb2_grpc.SearchServicer):
    """Serves clipsearch.v1.Search from a SearchIndex."""

    def __init__(self, index: SearchIndex) -> None:
        self._index = index
        self._reindex = Reindexer(index)
        self._cues = CueStore(index)
        self._said = SaidSearch(index, self._cues)
        self._libraries = Libraries(index)

    @_STATUSES.rpc
    def Upsert(self, request: pb.UpsertRequest, context: grpc.ServicerContext) -> pb.UpsertResponse:
        items = [_item_from_pb(item, f"items[{i}]") for i, item in enumerate(request.items)]
        result = self._index.upsert(items, model=_model(request, "model"), staging=request.staging)
        return pb.UpsertResponse(upserted=result.upserted, created=result.created)

    @_STATUSES.rpc
    def Query(self, request: pb.QueryRequest, context: grpc.ServicerContext) -> pb.QueryResponse:
        if request.said:
            return self._said_query(request)
        matches = self._index.query(np.asarray(request.vector, dtype=np.float32), **_query_arguments(request))
        return self._response(matches)

    def _said_query(self, request: pb.QueryRequest) -> pb.QueryResponse:
        options = request.said_options
        matches, parsed = self._said.query(
            request.said,
            np.asarray(request.vector, dtype=np.float32) if request.vector else None,
            **_query_arguments(request),
            options=SaidOptions(options.window_seconds, tuple(options.languages)),
        )
        return self._response(matches, said_query=parsed.expression, said_words=parsed.words)

    def _response(self, matches: Sequence[Match], **said: Any) -> pb.QueryResponse:
        fill = self._index.fill  # as of the last check, at most a health interval old
        return pb.QueryResponse(
            matches=[_match_to_pb(m) for m in matches],
            partial=fill is not None,
            percent_indexed=100.0 if fill is None else fill.percent,
            **said,
        )

    @_STATUSES.rpc
    def CueWrite(self, request: pb.CueWriteRequest, context: grpc.ServicerContext) -> pb.CueWriteResponse:
        tracks = [
            CueTrack(t.name, t.language, tuple(Cue(c.start_seconds, c.end_seconds, c.text) for c in t.cues))
            for t in request.tracks
        ]
        stored = self._cues.write(request.collection, request.content_hash, request.signature, tracks)
        return pb.CueWriteResponse(cues=stored)

    @_STATUSES.rpc
    def CueList(self, request: pb.CueListRequest, context: grpc.ServicerContext) -> pb.CueListResponse:
        found, signature, tracks = self._cues.list(
            request.collection, request.content_hash, signature_only=request.signature_only
        )
        return pb.CueListResponse(
            found=found,
            signature=signature,
            tracks=[
                pb.CueTrack(
                    name=t.name,
                    language=t.language,
                    cues=[
                        pb.Cue(start_seconds=c.start_seconds, end_seconds=c.end_seconds, text=c.text) for c in t.cues
                    ],
                )
                for t in tracks
            ],
        )

    @_STATUSES.rpc
    def Get(self, request: pb.GetRequest, context: grpc.ServicerContext) -> pb.GetResponse:
        items, missing = self._index.get(list(request.ids), with_vectors=request.with_vectors)
        return pb.GetResponse(items=[_item_to_pb(item) for item in items], missing_ids=missing)

    @_STATUSES.rpc
    def List(self, request: pb.ListRequest, context: grpc.ServicerContext) -> pb.ListResponse:
        page = self._index.list(
            _filter_from_pb(request.filter) if request.HasField("filter") else None,
            page_size=request.page_size,
            page_token=request.page_token,
            with_vectors=request.with_vectors,
        )
        return pb.ListResponse(
            items=[_item_to_pb(item) for item in page.items], next_page_token=page.next_page_token, total=page.total
        )

    @_STATUSES.rpc
    def Delete(self, request: pb.DeleteRequest, context: grpc.ServicerContext) -> pb.DeleteResponse:
        ids, sources, collection = list(request.ids), list(request.sources), request.collection
        # The cues of a video go with its last frame: which videos may lose it is read before the delete.
        if sources:
            videos = self._cues.videos_of_ids(ids) if ids else self._cues.videos_of_sources(sources, collection)
            result = self._index.delete_sources(sources, collection=collection or None, ids=ids)
            self._cues.drop_orphans(videos)
        elif ids and collection:
            raise InvalidArgument(
                "ids and collection are set without sources: set ids alone to delete those items, "
                "collection alone to delete the collection, or add sources to remove them from those "
                "items of that collection"
            )
        elif ids:
            videos = self._cues.videos_of_ids(ids)
            result = self._index.delete_ids(ids)
            self._cues.drop_orphans(videos)
        elif collection:
            result = self._index.delete_collection(collection)
            self._cues.delete_collection(collection)
        else:
            raise InvalidArgument(
                "nothing to delete: set ids, sources (optionally with collection and/or ids) or collection"
            )
        return pb.DeleteResponse(deleted=result.deleted, updated=result.updated)

    @_STATUSES.rpc
    def Stats(self, request: pb.StatsRequest, context: grpc.ServicerContext) -> pb.StatsResponse:
        try:
            stats = self._index.stats()
        except Loading as loading:  # not an error for Stats: it says how far the library is
            return pb.StatsResponse(
                loading=True,
                loading_percent=loading.percent,
                loading_eta_seconds=loading.eta_seconds or 0.0,
                loading_message=str(loading),
            )
        schema = self._index.schema
        settings = pb.IndexSettings(
            index_name=self._index.configured.name,
            key_prefix=schema.prefix,
            algorithm=_ALGORITHMS_PB[schema.vector.algorithm],
            dimension=schema.vector.dimension,
            distance_metric="COSINE",
            vector_type=_VECTOR_TYPES_PB[schema.vector.vector_type],
        )
        if schema.vector.algorithm == "hnsw":
            settings.m = stats.hnsw.m
            settings.ef_construction = stats.hnsw.ef_construction
            settings.ef_runtime = stats.hnsw.ef_runtime
        if stats.model is not None:
            settings.model.CopyFrom(_model_to_pb(stats.model))
        return pb.StatsResponse(
            items=stats.items,
            collections=[pb.CollectionStats(name=name, items=count) for name, count in stats.collections],
            redis_memory_bytes=stats.redis_memory_bytes,
            vector_index_memory_bytes=stats.vector_index_memory_bytes,
            indexing=stats.indexing,
            percent_indexed=stats.percent_indexed,
            settings=settings,
            redis_version=stats.redis_version,
            loading_message=describe(stats.percent_indexed, stats.indexing_eta_seconds) if stats.indexing else "",
            indexing_eta_seconds=stats.indexing_eta_seconds or 0.0,
        )

    @_STATUSES.rpc
    def ListCollections(
        self, request: pb.ListCollectionsRequest, context: grpc.ServicerContext
    ) -> pb.ListCollectionsResponse:
        return pb.ListCollectionsResponse(
            collections=[pb.CollectionStats(name=name, items=count) for name, count in self._index.list_collections()]
        )

    @_STATUSES.rpc
    def BeginReindex(self, request: pb.BeginReindexRequest, context: grpc.ServicerContext) -> pb.ReindexStatus:
        model = _model(request, "model")
        if model is None:
            raise InvalidArgument("model is required: the model the items will be embedded with")
        status = self._reindex.begin(model)
        response = pb.ReindexStatus(
            staging_index=status.staging.index,
            staging_key_prefix=status.staging.prefix,
            staged_items=status.staged_items,
            resumed=status.resumed,
            model=_model_to_pb(model),
            live_items=status.live_items,
        )
        if status.live_model is not None:
            response.live_model.CopyFrom(_model_to_pb(status.live_model))
        return response

    @_STATUSES.rpc
    def StagedIds(self, request: pb.StagedIdsRequest, context: grpc.ServicerContext) -> pb.StagedIdsResponse:
        return pb.StagedIdsResponse(ids=self._reindex.staged_ids(list(request.ids)))

    @_STATUSES.rpc
    def FinishReindex(
        self, request: pb.FinishReindexRequest, context: grpc.ServicerContext
    ) -> pb.FinishReindexResponse:
        result = self._reindex.finish(_model(request, "model"))
        return pb.FinishReindexResponse(items=result.items, dropped_items=result.dropped_items, index=result.index)

    @_STATUSES.rpc
    def AbortReindex(self, request: pb.AbortReindexRequest, context: grpc.ServicerContext) -> pb.AbortReindexResponse:
        discarded = self._reindex.abort()
        return pb.AbortReindexResponse(aborted=discarded is not None, discarded_items=discarded or 0)

    @_STATUSES.rpc
    def ListLibraries(
        self, request: pb.ListLibrariesRequest, context: grpc.ServicerContext
    ) -> pb.ListLibrariesResponse:
        return pb.ListLibrariesResponse(libraries=[_library_to_pb(lib) for lib in self._libraries.list()])

    @_STATUSES.rpc
    def AddLibrary(self, request: pb.AddLibraryRequest, context: grpc.ServicerContext) -> pb.Library:
        return _library_to_pb(self._libraries.add(request.path, request.collection, request.name))

    @_STATUSES.rpc
    def RemoveLibrary(
        self, request: pb.RemoveLibraryRequest, context: grpc.ServicerContext
    ) -> pb.RemoveLibraryResponse:
        result = self._libraries.remove(request.name)
        return pb.RemoveLibraryResponse(
            library=_library_to_pb(result.library),
            deleted_items=result.deleted_items,
            updated_items=result.updated_items,
        )

    @_STATUSES.rpc
    def RequestLibraryRescan(
        self, request: pb.RequestLibraryRescanRequest, context: grpc.ServicerContext
    ) -> pb.Library:
        return _library_to_pb(self._libraries.request_rescan(request.name))

    @_STATUSES.rpc
    def ReportLibraryStatus(
        self, request: pb.ReportLibraryStatusRequest, context: grpc.ServicerContext
    ) -> pb.ReportLibraryStatusResponse:
        s = request.status
        status = LibraryStatus(
            state=_library_state(s.state),
            files_done=s.files_done,
            files_total=s.files_total,
            eta_seconds=s.eta_seconds if s.HasField("eta_seconds") else None,
            message=s.message,
            failures=tuple((f.path, f.reason) for f in s.failures),
            failed_files=s.failed_files,
            indexer=s.indexer,
            caught_up_at=s.caught_up_at,
        )
        return pb.ReportLibraryStatusResponse(known=self._libraries.report(request.name, status))


def _model(
    request: pb.UpsertRequest | pb.QueryRequest | pb.BeginReindexRequest | pb.FinishReindexRequest, field: str
) -> EmbeddingModel | None:
    if not request.HasField(field):
        return None
    m = request.model
    if not m.model_id:
        raise InvalidArgument("model.model_id is empty: name the embedder's model (ModelInfo.model_id)")
    return EmbeddingModel(m.model_id, m.family, m.dimension, m.fingerprint)


def _model_to_pb(model: EmbeddingModel) -> pb.EmbeddingModel:
    return pb.EmbeddingModel(
        model_id=model.model_id, family=model.family, dimension=model.dimension, fingerprint=model.fingerprint
    )


def _media_type(value: pb.MediaType, where: str) -> MediaType:
    try:
        return _MEDIA_TYPES[value]
    except KeyError:
        raise InvalidArgument(f"{where}={value} is not a known MediaType") from None


def _item_from_pb(item: pb.Item, where: str) -> Item:
    meta = item.metadata
    return Item(
        id=item.id,
        vector=np.asarray(item.vector, dtype=np.float32),
        metadata=Metadata(
            sources=tuple(meta.sources),
            media_type=_media_type(meta.media_type, f"{where}.metadata.media_type"),
            collection=meta.collection,
            timestamp_seconds=meta.timestamp_seconds,
            frame_index=meta.frame_index,
            content_hash=meta.content_hash,
            width=meta.width,
            height=meta.height,
            tags=tuple(meta.tags),
            frame_interval_seconds=meta.frame_interval_seconds,
            span_end_seconds=meta.span_end_seconds,
            perceptual_hash=meta.perceptual_hash if meta.HasField("perceptual_hash") else None,
        ),
    )


def _item_to_pb(item: Item) -> pb.Item:
    meta = item.metadata
    message = pb.Item(
        id=item.id,
        metadata=pb.Metadata(
            sources=meta.sources,
            media_type=_MEDIA_TYPES_PB[meta.media_type],
            collection=meta.collection,
            timestamp_seconds=meta.timestamp_seconds,
            frame_index=meta.frame_index,
            content_hash=meta.content_hash,
            width=meta.width,
            height=meta.height,
            tags=meta.tags,
            frame_interval_seconds=meta.frame_interval_seconds,
            span_end_seconds=meta.span_end_seconds,
            perceptual_hash=meta.perceptual_hash,
        ),
    )
    if item.vector is not None:
        message.vector.extend(item.vector.tolist())
    return message


def _match_to_pb(m: Match) -> pb.Match:
    return pb.Match(
        item=_item_to_pb(m.item),
        score=m.score,
        start_seconds=m.start_seconds,
        end_seconds=m.end_seconds,
        frames=m.frames,
        duplicates=[_match_to_pb(d) for d in m.duplicates],
        said_lines=[
            pb.SaidLine(
                start_seconds=x.start_seconds,
                end_seconds=x.end_seconds,
                text=x.text,
                language=x.language,
                track=x.track,
            )
            for x in m.said_lines
        ],
        seen_rank=m.seen_rank,
        said_rank=m.said_rank,
    )


def _duplicates_from_pb(options: pb.DuplicateOptions) -> DuplicateOptions:
    return DuplicateOptions(options.max_distance if options.HasField("max_distance") else None)


def _filter_from_pb(f: pb.Filter) -> Filter:
    return Filter(
        collections=tuple(f.collections),
        sources=tuple(f.sources),
        source_dir=f.source_dir,
        tags=tuple(f.tags),
        media_type=_media_type(f.media_type, "filter.media_type"),
        min_timestamp_seconds=f.min_timestamp_seconds if f.HasField("min_timestamp_seconds") else None,
        max_timestamp_seconds=f.max_timestamp_seconds if f.HasField("max_timestamp_seconds") else None,
        content_hashes=tuple(f.content_hashes),
    )


def _library_state(value: int) -> LibraryState:
    try:
        return LibraryState(value)
    except ValueError:
        raise InvalidArgument(f"status.state={value} is not a known LibraryState") from None


def _library_to_pb(library: Library) -> pb.Library:
    s = library.status
    status = pb.LibraryStatus(
        state=int(s.state),  # type: ignore[arg-type]
        files_done=s.files_done,
        files_total=s.files_total,
        message=s.message,
        failures=[pb.LibraryFailure(path=p, reason=r) for p, r in s.failures],
        failed_files=s.failed_files,
        updated_at=s.updated_at,
        indexer=s.indexer,
        caught_up_at=s.caught_up_at,
    )
    if s.eta_seconds is not None:
        status.eta_seconds = s.eta_seconds
    return pb.Library(
        name=library.name,
        path=library.path,
        uri=library.uri,
        collection=library.collection,
        items=library.items,
        status=status,
        rescan_requests=library.rescan_requests,
        created_at=library.created_at,
    )


def _query_arguments(request: pb.QueryRequest) -> dict[str, Any]:
    """A query's options as SearchIndex.query and SaidSearch.query take them."""
    return {
        "k": request.k,
        "offset": request.offset,
        "filter": _filter_from_pb(request.filter) if request.HasField("filter") else None,
        "min_score": request.min_score if request.HasField("min_score") else None,
        "ef_runtime": request.ef_runtime,
        "with_vectors": request.with_vectors,
        "moments": MomentOptions(request.moments.gap_seconds) if request.HasField("moments") else None,
        "duplicates": _duplicates_from_pb(request.duplicates) if request.HasField("duplicates") else None,
        "model": _model(request, "model"),
    }
