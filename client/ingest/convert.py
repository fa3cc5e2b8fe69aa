"""`clipsearch reindex --copy`: a new index built from the stored vectors (no embedder, no files), in the
vector type the search service is configured for (SEARCH_VECTOR_TYPE: a FLOAT32 index becomes FLOAT16)."""

from __future__ import annotations

import time

from clipsearch.limits import MAX_BATCH, MAX_IDS
from clipsearch.v1 import search_pb2

from ..errors import InvalidInput
from ..transport import Transport
from .prune import list_all
from .reindex import ReindexReport
from .reports import IndexReport, ProgressCallback, Tally


def copy_reindex(transport: Transport, on_event: ProgressCallback | None = None) -> ReindexReport:
    """Stages every live item with its stored vector and metadata under the model the index records, then
    switches (resuming a copy that was interrupted, like any reindex); a second pass stages what was written
    meanwhile."""
    started = time.monotonic()
    model = transport.stats().settings.model
    if not model.model_id:
        raise InvalidInput(
            "the index records no model, so its vectors cannot be copied under one: run `clipsearch reindex` "
            "without --copy to embed every item again"
        )
    report = ReindexReport(model=model.model_id, copied=True)
    status = transport.begin_reindex(search_pb2.BeginReindexRequest(model=model))
    report.resumed, report.live_items = status.resumed, status.live_items
    for pass_event in (on_event, None):
        tally = Tally(report.progress if pass_event else IndexReport(), pass_event)
        batch: list[search_pb2.Item] = []
        for item in list_all(transport, search_pb2.Filter(), with_vectors=True):
            batch.append(item)
            if len(batch) == min(MAX_IDS, MAX_BATCH):
                _stage(transport, model, batch, tally)
                batch = []
        _stage(transport, model, batch, tally)
    finished = transport.finish_reindex(search_pb2.FinishReindexRequest(model=model))
    report.finished, report.items = True, finished.items
    report.seconds = time.monotonic() - started
    return report


def _stage(transport: Transport, model: search_pb2.EmbeddingModel, batch: list[search_pb2.Item], tally: Tally) -> None:
    if not batch:
        return
    staged = set(transport.staged_ids(search_pb2.StagedIdsRequest(ids=[i.id for i in batch])).ids)
    tally.known(len(staged))
    todo = [i for i in batch if i.id not in staged]
    if todo:
        transport.upsert(search_pb2.UpsertRequest(items=todo, model=model, staging=True))
        frames = sum(i.metadata.media_type == search_pb2.MEDIA_TYPE_VIDEO_FRAME for i in todo)
        tally.indexed(len(todo) - frames, frames)
