"""RediSearch queries from filters, every value passed as a PARAMS argument, never inside the query text."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from search_service import schema as S
from search_service.errors import InvalidArgument
from search_service.items import Filter, MediaType
from search_service.storage import encode_tag, source_dir_digests
from search_service.validation import check_collection, check_content_hash, check_source, check_tag, unique

# The name a KNN query gives each match's distance.
DISTANCE = "knn_distance"


class QueryBuilder:
    """A RediSearch query from clauses whose values all travel as PARAMS, never inside the query text."""

    def __init__(self) -> None:
        self.clauses: list[str] = []
        self.params: dict[str, str | bytes] = {}

    def _param(self, value: str) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return "$" + name

    def tags(self, field: str, values: Sequence[str]) -> QueryBuilder:
        """Items whose `field` holds any of `values` (no clause when empty)."""
        if values:
            # RediSearch still unescapes backslashes in TAG parameters ("\%" means "%"): double them.
            escaped = [v.replace("\\", "\\\\") for v in values]
            self.clauses.append(f"@{field}:{{{' | '.join(self._param(v) for v in escaped)}}}")
        return self

    def numeric(self, field: str, low: float | None, high: float | None) -> QueryBuilder:
        lo = "-inf" if low is None else repr(float(low))
        hi = "+inf" if high is None else repr(float(high))
        self.clauses.append(f"@{field}:[{self._param(lo)} {self._param(hi)}]")
        return self

    def build(self) -> tuple[str, dict[str, str | bytes]]:
        return (" ".join(self.clauses) or "*"), dict(self.params)


def filter_query(f: Filter) -> QueryBuilder:
    """The clauses selecting the items that match `f`, once its values are checked."""
    builder = QueryBuilder()
    collections = [check_collection(c, f"filter.collections[{i}]") for i, c in enumerate(f.collections)]
    builder.tags(S.F_COLLECTION, [encode_tag(c) for c in unique(collections)])
    for i, source in enumerate(f.sources):
        check_source(source, f"filter.sources[{i}]")
    builder.tags(S.F_SOURCES, unique(f.sources))
    if f.source_dir:
        check_source(f.source_dir, "filter.source_dir")
        directory = f.source_dir if f.source_dir.endswith("/") else f.source_dir + "/"
        builder.tags(S.F_SOURCE_DIRS, source_dir_digests(directory))
    for i, tag in enumerate(f.tags):
        check_tag(tag, f"filter.tags[{i}]")
    for tag in unique(f.tags):  # all of them: one clause each
        builder.tags(S.F_TAGS, [encode_tag(tag)])
    if f.media_type is not MediaType.UNSPECIFIED:
        builder.tags(S.F_MEDIA_TYPE, [f.media_type.value])
    lo, hi = f.min_timestamp_seconds, f.max_timestamp_seconds
    if lo is not None or hi is not None:
        for name, bound in (("min", lo), ("max", hi)):
            if bound is not None and math.isnan(bound):
                raise InvalidArgument(f"filter.{name}_timestamp_seconds is NaN")
        if lo is not None and hi is not None and lo > hi:
            raise InvalidArgument(
                f"filter.min_timestamp_seconds ({lo}) is greater than filter.max_timestamp_seconds ({hi})"
            )
        builder.numeric(S.F_TIMESTAMP, lo, hi)
    for i, content_hash in enumerate(f.content_hashes):
        check_content_hash(content_hash, f"filter.content_hashes[{i}]")
        if not content_hash:
            raise InvalidArgument(f"filter.content_hashes[{i}] is empty")
    builder.tags(S.F_CONTENT_HASH, unique(f.content_hashes))
    return builder


def params_args(params: Mapping[str, str | bytes]) -> list[str | bytes]:
    """The PARAMS arguments of FT.SEARCH or FT.AGGREGATE (none when there are no parameters)."""
    if not params:
        return []
    return ["PARAMS", str(2 * len(params)), *(part for pair in params.items() for part in pair)]
