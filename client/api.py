"""The Python client: index files, search by text, image or item, classify, delete, stats."""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import TypedDict, Unpack

import grpc
import numpy as np

from clipsearch.envconfig import ConfigError
from clipsearch.limits import MAX_COLLECTION_BYTES, MAX_IDS, MAX_K, MAX_PAGE_SIZE, MAX_TAG_BYTES
from clipsearch.v1 import embedder_pb2, search_pb2

from . import ids as idmod
from . import libraries as libs
from .config import ClientConfig, split_addresses
from .errors import ClientError, InvalidInput, NotFound, ServiceError
from .ingest.convert import copy_reindex
from .ingest.engine import ImageBytes, Ingest, IngestOptions
from .ingest.media import ImageLimits, MediaError, prepare_image, read_file
from .ingest.prune import list_all, prune
from .ingest.reindex import Reindex, ReindexReport
from .ingest.reports import IndexReport, ProgressCallback, ProgressEvent, Tally
from .placement import choose_collection
from .results import MEDIA_TYPES, DeleteResult, Hit, Hits, Item, LabelScore, Stats, SubtitleTrack
from .transport import Transport
from .uris import PathLike, absolute, dir_uri, display_path, is_within, path_to_uri

_MAX_IMAGE_FILE_BYTES = 512 << 20

ImageInput = PathLike | bytes


@dataclass(frozen=True)
class SearchFilter:
    """Restricts a search to items matching every field that is set."""

    collections: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    media: str | None = None  # "image" or "video"
    sources: tuple[str, ...] = ()  # source URIs
    source_dir: str = ""  # a directory URI
    min_timestamp_seconds: float | None = None
    max_timestamp_seconds: float | None = None
    content_hashes: tuple[str, ...] = ()

    def to_proto(self) -> search_pb2.Filter:
        if self.media is not None and self.media not in MEDIA_TYPES:
            raise InvalidInput(f"unknown media type {self.media!r}: use image or video")
        filter_ = search_pb2.Filter(
            collections=[idmod.normalize_collection(c) for c in self.collections],
            sources=list(self.sources),
            source_dir=self.source_dir,
            tags=list(self.tags),
            media_type=MEDIA_TYPES[self.media] if self.media else search_pb2.MEDIA_TYPE_UNSPECIFIED,
            content_hashes=list(self.content_hashes),
        )
        if self.min_timestamp_seconds is not None:
            filter_.min_timestamp_seconds = self.min_timestamp_seconds
        if self.max_timestamp_seconds is not None:
            filter_.max_timestamp_seconds = self.max_timestamp_seconds
        return filter_


class SearchArguments(TypedDict, total=False):
    """SearchOptions' fields, as keyword arguments of the Client's search methods."""

    top: int
    offset: int
    filter: SearchFilter | None
    min_score: float | None
    moments: bool
    collapse_duplicates: bool
    said: str
    said_window_seconds: float
    said_languages: tuple[str, ...]


@dataclass(frozen=True)
class SearchOptions:
    """Which results a search returns: how many, from where, which items, and how they are grouped."""

    top: int = 10
    offset: int = 0
    filter: SearchFilter | None = None
    min_score: float | None = None  # only results with a cosine of at least this
    moments: bool = False  # frames of one video that follow each other as one hit
    collapse_duplicates: bool = False  # near-duplicate photos as one hit
    # What is said, in the videos' subtitles: alone (search_said) or fused with what is seen.
    said: str = ""
    said_window_seconds: float = 0.0  # a seen and a said moment this close are one (0: the sampling interval)
    said_languages: tuple[str, ...] = ()  # only subtitle tracks in these languages (empty: all)

    @classmethod
    def of(cls, options: SearchOptions | None = None, **overrides: Unpack[SearchArguments]) -> SearchOptions:
        """`options` (the defaults when None) with the fields given by name replaced."""
        return replace(options or cls(), **overrides)


class Client(libs.LibraryCalls):
    """Talks to one or more embedder replicas (round-robin) and one search service.

    Addresses, deadlines, TLS and the token come from `config` (default: ClientConfig.from_env()).
    Use as a context manager, or call close(): it closes the channels.
    """

    def __init__(
        self,
        embedder: str | Sequence[str] | None = None,
        search: str | None = None,
        *,
        timeout: float | None = None,
        connect_timeout: float | None = None,
        config: ClientConfig | None = None,
    ) -> None:
        config = config or ClientConfig.from_env()
        if isinstance(embedder, str):
            embedder_addresses = split_addresses(embedder)
        elif embedder is not None:
            embedder_addresses = tuple(embedder)
        else:
            embedder_addresses = config.embedder_addresses
        try:
            self._transport = Transport(
                embedder_addresses or config.embedder_addresses,
                search or config.search_address,
                timeout=timeout if timeout is not None else config.timeout,
                connect_timeout=connect_timeout if connect_timeout is not None else config.connect_timeout,
                security=config.security,
                refused_wait=config.refused_wait,
            )
        except ConfigError:
            raise  # a TLS or token setting: its message names the setting
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        self._model: embedder_pb2.ModelInfo | None = None

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._transport.close()

    @property
    def embedder_addresses(self) -> tuple[str, ...]:
        return self._transport.embedder_addresses

    @property
    def search_address(self) -> str:
        return self._transport.search_address

    # The embedder.
    def model_info(self, *, refresh: bool = False) -> embedder_pb2.ModelInfo:
        """The embedder's model and limits (fetched once, or again with refresh: a check that it answers)."""
        if self._model is None or refresh:
            self._model = self._transport.model_info()
        return self._model

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """One L2-normalized vector per text, as a (len(texts), dimension) float32 array."""
        if not texts:
            return np.zeros((0, self.model_info().dimension), np.float32)
        limit = self.model_info().max_batch_texts or len(texts)
        rows: list[np.ndarray] = []
        for start in range(0, len(texts), limit):
            response = self._transport.embed_texts(
                embedder_pb2.EmbedTextsRequest(texts=list(texts[start : start + limit]))
            )
            rows.extend(np.asarray(e.values, np.float32) for e in response.embeddings)
        return np.stack(rows)

    def embed_image(self, image: ImageInput) -> np.ndarray:
        """The vector of one image (a file path or encoded bytes)."""
        label, prepared = self._prepare(image)
        response = self._transport.embed_images(embedder_pb2.EmbedImagesRequest(images=[prepared], allow_partial=True))
        result = response.results[0]
        if result.WhichOneof("result") != "embedding":
            raise InvalidInput(f"{label}: {result.error.message or 'cannot embed this image'}")
        return np.asarray(result.embedding.values, np.float32)

    def _prepare(self, image: ImageInput) -> tuple[str, embedder_pb2.Image]:
        model = self.model_info()
        if isinstance(image, bytes):
            label, data = "image", image
        else:
            label = display_path(image)
            try:
                data = read_file(image, _MAX_IMAGE_FILE_BYTES)
            except MediaError as exc:
                raise InvalidInput(f"{label}: {exc}") from None
        limits = ImageLimits(model.image_size or 224, model.max_image_pixels or 1 << 28)
        try:
            return label, prepare_image(data, limits).image
        except MediaError as exc:
            raise InvalidInput(f"{label}: {exc}") from None

    def classify(self, image: ImageInput, labels: Sequence[str], template: str = "") -> list[LabelScore]:
        """Zero-shot probabilities of an image (path or bytes) over labels, best first."""
        label, prepared = self._prepare(image)
        try:
            response = self._transport.classify(
                embedder_pb2.ClassifyRequest(image=prepared, labels=list(labels), prompt_template=template)
            )
        except ServiceError as exc:
            if exc.code == grpc.StatusCode.INVALID_ARGUMENT:
                raise InvalidInput(f"cannot classify {label}: {exc.details}") from None
            raise
        return _ranked(response)

    def classify_item(self, item_id: str, labels: Sequence[str], template: str = "") -> list[LabelScore]:
        """Zero-shot probabilities of an indexed item over labels, from its stored vector, best first.

        The stored vector must come from the embedder's model: a one-match query naming the model lets the
        search service refuse (ModelMismatch) an index of another model, whose vector would score nonsense.
        """
        vector = self._stored_vector(item_id)
        self.model_info()
        self.search_vector(vector, top=1, model=self._transport.embedding_model)
        try:
            response = self._transport.classify(
                embedder_pb2.ClassifyRequest(
                    embedding=embedder_pb2.Embedding(values=vector), labels=list(labels), prompt_template=template
                )
            )
        except ServiceError as exc:
            if exc.code == grpc.StatusCode.INVALID_ARGUMENT:
                raise InvalidInput(f"cannot classify {item_id}: {exc.details}") from None
            raise
        return _ranked(response)

    # Indexing.
    def index(
        self,
        paths: Iterable[PathLike | ImageBytes],
        *,
        collection: str | None = None,
        fps: float = 1.0,
        tags: Sequence[str] = (),
        recursive: bool = True,
        prune: bool = False,
        on_event: ProgressCallback | None = None,
        options: IngestOptions | None = None,
        one_item_per_file: bool = True,
    ) -> IndexReport:
        """Indexes files and folders (images and videos) and image bytes; see IndexReport.

        What is already indexed is skipped; `prune` removes, within the given paths, the sources whose files
        are gone or changed, in whatever collection they were indexed. One file is one item: paths inside a
        library use its collection and files already indexed keep theirs; a `collection` (None or "": not
        given) that disagrees raises Conflict (see client/placement.py). one_item_per_file=False indexes into
        `collection` as given, even files indexed in another collection already.
        """
        collection = collection or ""
        paths = list(paths)
        files = [p for p in paths if not isinstance(p, ImageBytes)]
        if one_item_per_file and files:
            placement = choose_collection(self._transport, files, collection or None)
            collection = placement.collection
            if placement.note and on_event is not None:
                on_event(ProgressEvent("note", 0, message=placement.note))
        if fps <= 0:
            raise InvalidInput(f"fps must be positive, got {fps:g}")
        if len(collection.encode("utf-8")) > MAX_COLLECTION_BYTES:
            raise InvalidInput(f"collection name is longer than {MAX_COLLECTION_BYTES} bytes")
        for tag in tags:
            size = len(tag.encode("utf-8"))
            if not 1 <= size <= MAX_TAG_BYTES or any(unicodedata.category(c) == "Cc" for c in tag):
                raise InvalidInput(
                    f"bad tag {tag!r}: tags are 1 to {MAX_TAG_BYTES} bytes of UTF-8 without control characters"
                )
        options = replace(
            options or IngestOptions(),
            collection=idmod.normalize_collection(collection),
            fps=fps,
            tags=tuple(tags),
            recursive=recursive,
            prune=prune,
        )
        return Ingest(self._transport, self.model_info(), options, on_event).run(paths)

    def index_images(
        self,
        images: Iterable[PathLike | bytes | ImageBytes],
        *,
        collection: str = "",
        tags: Sequence[str] = (),
        on_event: ProgressCallback | None = None,
    ) -> IndexReport:
        """Indexes image files or image bytes (bytes have no source unless given as ImageBytes)."""
        inputs = [ImageBytes(i, label=f"<bytes #{n}>") if isinstance(i, bytes) else i for n, i in enumerate(images)]
        return self.index(inputs, collection=collection, tags=tags, on_event=on_event)

    # Searching.
    def search_vector(
        self,
        vector: Sequence[float] | np.ndarray,
        options: SearchOptions | None = None,
        *,
        with_vectors: bool = False,
        gap_seconds: float = 0.0,
        model: search_pb2.EmbeddingModel | None = None,
        **overrides: Unpack[SearchArguments],
    ) -> Hits:
        """Nearest items to a vector, best first: `options` (SearchOptions), with any of its fields given by name.

        With moments, matching frames of one video that follow each other come back as one hit (its best
        frame, with the span it covers); top and offset then count moments. With said, the moments where it is
        said (in the videos' subtitles) are fused with them (reciprocal rank fusion): a moment where both
        match, within said_window_seconds (0: the video's sampling interval), ranks first. gap_seconds is the largest gap
        within a moment (0: two sampling intervals of the video). With collapse_duplicates, near-duplicate
        photos (the same picture resized or re-encoded) come back as one hit listing the others in its
        duplicates; top and offset then count collapsed hits. `model`, the model the vector comes from,
        makes the service refuse an index of another model (search_text and search_image name it).
        """
        options = SearchOptions.of(options, **overrides)
        request = search_pb2.QueryRequest(
            vector=[float(v) for v in np.asarray(vector).ravel()],
            k=options.top,
            offset=options.offset,
            filter=(options.filter or SearchFilter()).to_proto(),
            with_vectors=with_vectors,
        )
        if options.moments:
            request.moments.gap_seconds = gap_seconds
        if options.collapse_duplicates:
            request.duplicates.SetInParent()
        if model is not None:
            request.model.CopyFrom(model)
        if options.min_score is not None:
            request.min_score = options.min_score
        if options.said:
            _add_said(request, options)
        return self._query(request, options.offset)

    def _query(self, request: search_pb2.QueryRequest, offset: int) -> Hits:
        try:
            response = self._transport.query(request)
        except ServiceError as exc:
            if exc.code == grpc.StatusCode.INVALID_ARGUMENT:
                raise InvalidInput(f"invalid search: {exc.details}") from None
            raise
        words = tuple(response.said_words)
        return Hits(
            [Hit.from_match(m, offset + n + 1, words) for n, m in enumerate(response.matches)],
            partial=response.partial,
            percent_indexed=float(response.percent_indexed) if response.partial else 100.0,
        )

    def search_text(
        self, text: str, options: SearchOptions | None = None, **overrides: Unpack[SearchArguments]
    ) -> Hits:
        """Items (or, with moments, moments) best matching a text description."""
        if not text.strip():
            raise InvalidInput("the search text is empty")
        options = SearchOptions.of(options, **overrides)
        return self.search_vector(self.embed_texts([text])[0], options, model=self._transport.embedding_model)

    def search_said(
        self, text: str, options: SearchOptions | None = None, **overrides: Unpack[SearchArguments]
    ) -> Hits:
        """Moments where `text` is said in the videos' subtitles (words, "a phrase", prefix*, Chinese): each hit's
        said_lines are the lines that matched, start_seconds to end_seconds their span, best first. To fuse it
        with what is seen, give it as options.said to search_text, search_image or search_vector instead."""
        options = SearchOptions.of(options, **overrides)
        if not text.strip():
            raise InvalidInput("the said text is empty")
        request = search_pb2.QueryRequest(
            k=options.top, offset=options.offset, filter=(options.filter or SearchFilter()).to_proto()
        )
        _add_said(request, replace(options, said=text))
        return self._query(request, options.offset)

    def search_image(
        self, image: ImageInput, options: SearchOptions | None = None, **overrides: Unpack[SearchArguments]
    ) -> Hits:
        """Items (or moments) most similar to an image (a file path or encoded bytes)."""
        options = SearchOptions.of(options, **overrides)
        vector = self.embed_image(image)
        return self.search_vector(vector, options, model=self._transport.embedding_model)

    def search_like(
        self, item_id: str, options: SearchOptions | None = None, **overrides: Unpack[SearchArguments]
    ) -> Hits:
        """ "More like this": items (or moments) nearest to an indexed item, the item itself (or the moment
        it leads) excluded."""
        options = SearchOptions.of(options, **overrides)
        top, offset = options.top, options.offset
        vector = self._stored_vector(item_id)
        if offset + top + 1 <= MAX_K:
            # Ask for everything up to the page plus one, so the page is exact wherever the item ranks.
            hits = self.search_vector(vector, replace(options, top=offset + top + 1, offset=0))
            others = [h for h in hits if h.id != item_id][offset : offset + top]
        else:
            # Deep pages: the item is its own nearest neighbour (score 1), so it ranks before the page.
            hits = self.search_vector(vector, replace(options, top=top + 1))
            others = [h for h in hits if h.id != item_id]
            others = others[:top] if len(others) < len(hits) else others[1 : top + 1]
        return Hits(
            [replace(h, rank=offset + n + 1) for n, h in enumerate(others)],
            partial=hits.partial,
            percent_indexed=hits.percent_indexed,
        )

    def _stored_vector(self, item_id: str) -> list[float]:
        try:
            response = self._transport.get(search_pb2.GetRequest(ids=[item_id], with_vectors=True))
        except ServiceError as exc:
            if exc.code == grpc.StatusCode.INVALID_ARGUMENT:
                raise InvalidInput(f"bad item id {item_id!r}: {exc.details}") from None
            raise
        if not response.items:
            raise NotFound(f"no item with id {item_id!r}")
        return list(response.items[0].vector)

    # Stored items.
    def get(self, item_ids: Sequence[str]) -> list[Item]:
        """The items that exist among item_ids, in order."""
        items: list[Item] = []
        for start in range(0, len(item_ids), MAX_IDS):
            response = self._transport.get(search_pb2.GetRequest(ids=list(item_ids[start : start + MAX_IDS])))
            items.extend(Item.from_proto(i) for i in response.items)
        return items

    def list_items(self, filter: SearchFilter | None = None, page_size: int = MAX_PAGE_SIZE) -> Iterator[Item]:
        """Every item matching the filter, ordered by id, fetched page by page."""
        for item in list_all(self._transport, (filter or SearchFilter()).to_proto(), page_size=page_size):
            yield Item.from_proto(item)

    def delete(
        self, *, ids: Sequence[str] = (), sources: Sequence[PathLike] = (), collection: str | None = None
    ) -> DeleteResult:
        """Deletes items by id, removes sources (files, or every file under a folder), or drops a collection.

        `ids` alone deletes those items and `collection` alone the whole collection. With `sources`, the
        files are removed from the items listing them, only from items of `collection` and only from the
        items in `ids` when those are given; an item left without sources is deleted.
        """
        if not ids and not sources and collection is None:
            raise InvalidInput("give ids, sources or a collection to delete")
        if ids and collection is not None and not sources:
            raise InvalidInput(
                "ids and a collection go together only with sources: give ids alone to delete "
                "items, or a collection alone to drop it"
            )
        scope = None if collection is None else idmod.normalize_collection(collection)
        if sources:
            uris = self._source_uris(sources, scope)
            id_chunks = [list(ids[s : s + MAX_IDS]) for s in range(0, len(ids), MAX_IDS)] or [[]]
            requests = [
                search_pb2.DeleteRequest(sources=uris[s : s + MAX_IDS], ids=chunk, collection=scope or "")
                for s in range(0, len(uris), MAX_IDS)
                for chunk in id_chunks
            ]
        elif ids:
            requests = [search_pb2.DeleteRequest(ids=list(ids[s : s + MAX_IDS])) for s in range(0, len(ids), MAX_IDS)]
        else:
            requests = [search_pb2.DeleteRequest(collection=scope or "")]
        deleted = updated = 0
        for request in requests:
            try:
                response = self._transport.delete(request)
            except ServiceError as exc:
                if exc.code == grpc.StatusCode.INVALID_ARGUMENT:
                    raise InvalidInput(f"cannot delete: {exc.details}") from None
                raise
            deleted += response.deleted
            updated += response.updated
        return DeleteResult(deleted, updated)

    def _source_uris(self, sources: Sequence[PathLike], collection: str | None) -> list[str]:
        uris: list[str] = []
        for source in sources:
            text = os.fsdecode(source)
            if text.startswith("file://"):
                uris.append(text)
                continue
            path = absolute(source)
            uris.append(path_to_uri(path))
            if path.is_dir():
                scope = dir_uri(path)
                filter_ = search_pb2.Filter(source_dir=scope, collections=[collection] if collection else [])
                for item in list_all(self._transport, filter_):
                    uris.extend(s for s in item.metadata.sources if is_within(s, scope))
        return list(dict.fromkeys(uris))

    def forget_missing(self, paths: Sequence[PathLike]) -> tuple[int, int]:
        """Removes the sources of files gone from `paths` (files, or anything under folders) from the items of
        every collection: (sources removed, items deleted). What still exists is left alone."""
        report = IndexReport()
        prune(self._transport, list(paths), recursive=True, hash_by_uri={}, tally=Tally(report, None))
        return report.pruned_sources, report.pruned_items

    def stats(self) -> Stats:
        return Stats.from_proto(self._transport.stats())

    def reindex(self, *, on_event: ProgressCallback | None = None) -> ReindexReport:
        """Embeds every stored item again with the embedder's model into a new index, then switches to it
        (resuming a reindex for the same model that was interrupted); see client/reindex.py."""
        return Reindex(self._transport, self.model_info(), on_event).run()

    def copy_reindex(self, *, on_event: ProgressCallback | None = None) -> ReindexReport:
        """Rebuilds the index from its stored vectors (no embedder, no files) in the vector type the search
        service is configured for, then switches to it; see client/ingest/convert.py."""
        return copy_reindex(self._transport, on_event)

    def abort_reindex(self) -> tuple[bool, int]:
        """Discards a reindex in progress: (whether there was one, staged items discarded)."""
        response = self._transport.abort_reindex()
        return response.aborted, response.discarded_items

    def collections(self) -> dict[str, int]:
        """Collection name -> item count, sorted by name."""
        response = self._transport.list_collections()
        return {c.name: c.items for c in response.collections}

    def subtitles(self, item: Item) -> list[SubtitleTrack]:
        """The stored subtitle tracks of an item's video (none for a photo, or a video without subtitles)."""
        if not item.content_hash or item.media != "video_frame":
            return []
        request = search_pb2.CueListRequest(collection=item.collection, content_hash=item.content_hash)
        return [SubtitleTrack.from_proto(t) for t in self._transport.cue_list(request).tracks]


def _add_said(request: search_pb2.QueryRequest, options: SearchOptions) -> None:
    """The said search of `options` on a query; its moments are always grouped."""
    request.said = options.said
    request.said_options.window_seconds = options.said_window_seconds
    request.said_options.languages.extend(options.said_languages)
    if not request.HasField("moments"):
        request.moments.SetInParent()


def _ranked(response: embedder_pb2.ClassifyResponse) -> list[LabelScore]:
    scores = [LabelScore.from_proto(s) for s in response.scores]
    if not scores:
        raise ClientError("the embedder returned no scores")
    return sorted(scores, key=lambda s: s.probability, reverse=True)
