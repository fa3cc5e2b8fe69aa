"""The RediSearch index schema as data: fields, their options, and the FT.CREATE arguments they make."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

# Joins the values of a multi-valued TAG field. Sources are printable ASCII and tags are percent-encoded,
# so neither can contain it; RediSearch accepts any single byte as a separator.
TAG_SEPARATOR = "\x1f"

Algorithm = Literal["hnsw", "flat"]
ALGORITHMS: tuple[Algorithm, ...] = ("hnsw", "flat")
DISTANCE_METRIC = "COSINE"
# How the index stores a vector. FLOAT16 halves a vector's bytes (in the HASH and in the index) and, on CLIP
# vectors rounded to 11 significant bits, changes no cosine by more than about 1e-3 (see docs/scaling.md).
VectorType = Literal["float32", "float16"]
VECTOR_TYPES: tuple[VectorType, ...] = ("float32", "float16")
NUMPY_TYPES: dict[VectorType, str] = {"float32": "<f4", "float16": "<f2"}

# Hash field names. Every item is one HASH key: <key_prefix><id>.
# The id, hex-encoded, SORTABLE: written by earlier versions for List's paging, which now sorts by the key
# itself. Indexes created before keep the field; new ones and new items go without (about 300 B an item).
F_ID = "id_hex"
F_VECTOR = "vector"  # FLOAT32 or FLOAT16 little-endian bytes, as the index's vector type
F_COLLECTION = "collection"  # percent-encoded (see storage.encode_tag)
F_SOURCES = "sources"  # TAG_SEPARATOR-joined source URIs
F_SOURCE_DIRS = "source_dirs"  # SHA-1 hex of every ancestor directory URI of every source (source_dir filters)
F_TAGS = "tags"  # TAG_SEPARATOR-joined, each percent-encoded
F_CONTENT_HASH = "content_hash"
F_MEDIA_TYPE = "media_type"
F_TIMESTAMP = "timestamp"
F_FRAME_INDEX = "frame_index"  # stored, not indexed
F_WIDTH = "width"  # stored, not indexed
F_HEIGHT = "height"  # stored, not indexed
F_FRAME_INTERVAL = "frame_interval"  # stored, not indexed; absent on items written before it existed
F_SPAN_END = "span_end"  # stored, not indexed; absent when the frame stands for itself alone
F_PHASH = "phash"  # stored, not indexed: a still image's 64-bit perceptual hash, 16 hex digits; absent if none


@dataclass(frozen=True)
class TagField:
    """A TAG field: exact-match values, optionally several per item joined by the separator."""

    name: str
    separator: str = TAG_SEPARATOR
    case_sensitive: bool = True
    sortable: bool = False
    indexed: bool = True

    def args(self) -> list[str]:
        out = [self.name, "TAG", "SEPARATOR", self.separator]
        if self.case_sensitive:
            out.append("CASESENSITIVE")
        if self.sortable:
            out += ["SORTABLE", "UNF"]
        if not self.indexed:
            out.append("NOINDEX")
        return out


@dataclass(frozen=True)
class NumericField:
    """A NUMERIC field: range filters."""

    name: str

    def args(self) -> list[str]:
        return [self.name, "NUMERIC"]


@dataclass(frozen=True)
class VectorField:
    """A VECTOR field: FLOAT32 or FLOAT16, cosine distance, HNSW or FLAT."""

    name: str
    dimension: int
    algorithm: Algorithm = "hnsw"
    m: int = 16
    ef_construction: int = 200
    ef_runtime: int = 100
    vector_type: VectorType = "float32"

    @property
    def numpy_type(self) -> str:
        return NUMPY_TYPES[self.vector_type]

    def args(self) -> list[str]:
        attrs = {"TYPE": self.vector_type.upper(), "DIM": str(self.dimension), "DISTANCE_METRIC": DISTANCE_METRIC}
        if self.algorithm == "hnsw":
            attrs |= {
                "M": str(self.m),
                "EF_CONSTRUCTION": str(self.ef_construction),
                "EF_RUNTIME": str(self.ef_runtime),
            }
        flat = [part for pair in attrs.items() for part in pair]
        return [self.name, "VECTOR", self.algorithm.upper(), str(len(flat)), *flat]


Field = TagField | NumericField | VectorField


@dataclass(frozen=True)
class IndexSchema:
    """One RediSearch index over the HASH keys under `prefix`."""

    name: str
    prefix: str
    fields: tuple[Field, ...]

    @property
    def vector(self) -> VectorField:
        return next(f for f in self.fields if isinstance(f, VectorField))

    def with_vector_type(self, vector_type: VectorType) -> IndexSchema:
        """This schema with vectors stored as `vector_type`."""
        return self.with_vector(replace(self.vector, vector_type=vector_type))

    def with_vector(self, vector: VectorField) -> IndexSchema:
        """This schema with `vector` as its vector field."""
        return replace(self, fields=tuple(vector if isinstance(f, VectorField) else f for f in self.fields))

    def create_args(self) -> list[str]:
        """The arguments of FT.CREATE for this index."""
        args = ["FT.CREATE", self.name, "ON", "HASH", "PREFIX", "1", self.prefix, "SCHEMA"]
        for field in self.fields:
            args += field.args()
        return args

    def mismatches(self, info: Mapping[str, object]) -> list[str]:
        """How an existing index (parsed FT.INFO: prefixes, attributes) differs from this schema."""
        problems: list[str] = []
        prefixes = info.get("prefixes", [])
        if prefixes != [self.prefix]:
            problems.append(f"key prefix {prefixes} instead of [{self.prefix!r}]")
        attributes = info.get("attributes", {})
        assert isinstance(attributes, Mapping)
        for field in self.fields:
            found = attributes.get(field.name)
            expected_type = {TagField: "TAG", NumericField: "NUMERIC", VectorField: "VECTOR"}[type(field)]
            if not isinstance(found, Mapping):
                problems.append(f"no field {field.name!r}")
                continue
            if found.get("type") != expected_type:
                problems.append(f"field {field.name!r} is {found.get('type')} instead of {expected_type}")
            if isinstance(field, VectorField) and found.get("type") == "VECTOR":
                if found.get("dim") != field.dimension:
                    problems.append(f"dimension {found.get('dim')} instead of {field.dimension}")
                if str(found.get("algorithm", "")).lower() != field.algorithm:
                    problems.append(f"algorithm {found.get('algorithm')} instead of {field.algorithm.upper()}")
                if found.get("distance_metric") != DISTANCE_METRIC:
                    problems.append(f"distance metric {found.get('distance_metric')} instead of COSINE")
                if found.get("data_type") != field.vector_type.upper():
                    problems.append(f"vector type {found.get('data_type')} instead of {field.vector_type.upper()}")
            if isinstance(field, TagField) and found.get("type") == "TAG" and found.get("separator") != field.separator:
                problems.append(f"field {field.name!r} has separator {found.get('separator')!r}")
        return problems


def build_schema(
    name: str,
    prefix: str,
    *,
    dimension: int,
    algorithm: Algorithm = "hnsw",
    m: int = 16,
    ef_construction: int = 200,
    ef_runtime: int = 100,
    vector_type: VectorType = "float32",
) -> IndexSchema:
    """The clipsearch item index."""
    return IndexSchema(
        name=name,
        prefix=prefix,
        fields=(
            TagField(F_COLLECTION),
            TagField(F_SOURCES),
            TagField(F_SOURCE_DIRS),
            TagField(F_TAGS),
            TagField(F_CONTENT_HASH),
            TagField(F_MEDIA_TYPE),
            NumericField(F_TIMESTAMP),
            VectorField(F_VECTOR, dimension, algorithm, m, ef_construction, ef_runtime, vector_type),
        ),
    )
