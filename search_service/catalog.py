"""Which physical index is live, which model its vectors come from, and the reindex in progress, in Redis."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import redis

from search_service.errors import IndexMismatch
from search_service.schema import ALGORITHMS, F_VECTOR, VECTOR_TYPES, VectorField


@dataclass(frozen=True)
class EmbeddingModel:
    """The model whose vectors an index holds (search.proto EmbeddingModel)."""

    model_id: str
    family: str = ""
    dimension: int = 0
    fingerprint: str = ""

    def same_as(self, other: EmbeddingModel) -> bool:
        """search.proto's rule: equal fingerprints when both are set; otherwise equal id and dimension and,
        when both are known, family."""
        if self.fingerprint and other.fingerprint:
            return self.fingerprint == other.fingerprint
        families_agree = not self.family or not other.family or self.family == other.family
        return self.model_id == other.model_id and self.dimension == other.dimension and families_agree

    def describe(self) -> str:
        details = [self.family or "family not reported", f"{self.dimension}-d"]
        if self.fingerprint:
            details.append(self.fingerprint[:19])
        return f"{self.model_id!r} ({', '.join(details)})"

    def fields(self, prefix: str) -> dict[str, str]:
        return {
            prefix + "id": self.model_id,
            prefix + "family": self.family,
            prefix + "dimension": str(self.dimension),
            prefix + "fingerprint": self.fingerprint,
        }


@dataclass(frozen=True)
class Generation:
    """One physical index: generation 0 is the plain index named as configured (before any reindex)."""

    number: int
    index: str
    prefix: str
    dimension: int
    model: EmbeddingModel | None
    # "float32" or "float16"; "" for generation 0, whose index says (while a clean stop has dropped its
    # definition, Catalog.dropped does; generations a reindex built before vector types were recorded hold FLOAT32).
    vector_type: str = ""


# Hash fields of the catalog key; "model_" and "staging_model_" prefix the EmbeddingModel fields.
LIVE_MODEL = "model_"
STAGING_MODEL = "staging_model_"
F_GENERATION = "generation"
F_STAGING_GENERATION = "staging_generation"
F_VECTOR_TYPE = "vector_type"
F_STAGING_VECTOR_TYPE = "staging_vector_type"
F_DROPPED = "dropped_index"


@dataclass(frozen=True)
class DroppedIndex:
    """The live index as a clean stop found it before dropping its definition (its keys kept): the next start
    creates it again with this vector field (its EF_RUNTIME aside, a query setting), whatever the configuration
    says by then."""

    index: str
    vector: VectorField

    def to_json(self) -> str:
        v = self.vector
        return json.dumps(
            {
                "index": self.index,
                "vector_type": v.vector_type,
                "dimension": v.dimension,
                "algorithm": v.algorithm,
                "m": v.m,
                "ef_construction": v.ef_construction,
            }
        )

    @classmethod
    def from_json(cls, raw: str) -> DroppedIndex | None:
        """The record, or None when it is not one this version can read (then the index is created as
        configured, as after any loss)."""
        try:
            data = json.loads(raw)
            if data["vector_type"] not in VECTOR_TYPES or data["algorithm"] not in ALGORITHMS:
                return None
            vector = VectorField(
                F_VECTOR,
                int(data["dimension"]),
                data["algorithm"],
                int(data["m"]),
                int(data["ef_construction"]),
                vector_type=data["vector_type"],
            )
            return cls(str(data["index"]), vector)
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True)
class Catalog:
    """The catalog of one configured index name: its live generation and the staging one, if any, and the
    live index's definition as a clean stop dropped it, until it is created again."""

    live: Generation
    staging: Generation | None
    dropped: DroppedIndex | None = None


def catalog_key(index_name: str) -> str:
    """The HASH holding the catalog. Outside the default key prefixes ("<index>:item:", "<index>:g<N>:item:")."""
    return f"clipsearch-meta:{index_name}"


def garbage_key(index_name: str) -> str:
    """A SET of key prefixes whose keys are left over from a dropped index, deleted in the background."""
    return f"clipsearch-meta:{index_name}:drop"


def generation_name(index_name: str, number: int) -> tuple[str, str]:
    """The physical index name and key prefix of generation `number` (1 and up)."""
    return f"{index_name}:g{number}", f"{index_name}:g{number}:item:"


def _model(fields: Mapping[str, str], prefix: str) -> EmbeddingModel | None:
    model_id = fields.get(prefix + "id", "")
    if not model_id:
        return None
    return EmbeddingModel(
        model_id,
        fields.get(prefix + "family", ""),
        int(fields.get(prefix + "dimension", "0") or 0),
        fields.get(prefix + "fingerprint", ""),
    )


def parse_catalog(raw: Mapping[bytes, bytes], *, index_name: str, key_prefix: str, dimension: int) -> Catalog:
    """The catalog from its HASH; an absent one (or absent fields) means generation 0 as configured."""
    fields = {k.decode(): v.decode() for k, v in raw.items()}
    number = int(fields.get(F_GENERATION, "0") or 0)
    if number == 0:
        live = Generation(0, index_name, key_prefix, dimension, _model(fields, LIVE_MODEL))
    else:
        live = Generation(
            number,
            fields["index"],
            fields["prefix"],
            int(fields["dimension"]),
            _model(fields, LIVE_MODEL),
            fields.get(F_VECTOR_TYPE) or "float32",
        )
    staging = None
    if fields.get(F_STAGING_GENERATION):
        staging = Generation(
            int(fields[F_STAGING_GENERATION]),
            fields["staging_index"],
            fields["staging_prefix"],
            int(fields["staging_dimension"]),
            _model(fields, STAGING_MODEL),
            fields.get(F_STAGING_VECTOR_TYPE) or "float32",
        )
    dropped = DroppedIndex.from_json(fields[F_DROPPED]) if fields.get(F_DROPPED) else None
    return Catalog(live, staging, dropped)


def read_catalog(client: redis.Redis, *, index_name: str, key_prefix: str, dimension: int) -> Catalog:
    if catalog_key(index_name).startswith(key_prefix):
        raise IndexMismatch(
            f"SEARCH_KEY_PREFIX={key_prefix!r} would cover the service's own key {catalog_key(index_name)!r}: "
            "choose a longer prefix (the default is '<SEARCH_INDEX>:item:')"
        )
    raw: Mapping[bytes, bytes] = client.hgetall(catalog_key(index_name))  # type: ignore[assignment]
    return parse_catalog(raw, index_name=index_name, key_prefix=key_prefix, dimension=dimension)


def mismatch(index_name: str, recorded: EmbeddingModel, given: EmbeddingModel, *, staging: bool = False) -> str:
    """Why a request's model cannot use the index, and what to do."""
    what = "the reindex in progress of the index" if staging else "the index"
    return (
        f"{what} {index_name!r} holds vectors of the model {recorded.describe()}, but this request's "
        f"vectors come from the model {given.describe()}; vectors of different models cannot be compared. "
        f"Run `clipsearch reindex` with the embedder serving {given.model_id!r} to embed every item again "
        f"with it, or use an embedder serving {recorded.model_id!r}"
    )


def dimension_mismatch(index_name: str, dimension: int, given: EmbeddingModel) -> str:
    return (
        f"the index {index_name!r} holds {dimension}-d vectors, but this request's vectors come from the "
        f"model {given.describe()}; run `clipsearch reindex` with the embedder serving {given.model_id!r} "
        "to embed every item again with it"
    )


def delete_prefix(client: redis.Redis, prefix: str, batch: int = 1000) -> int:
    """Deletes every key under `prefix` (of an index already dropped), a batch at a time."""
    pattern = "".join("\\" + c if c in "*?[]\\" else c for c in prefix) + "*"
    deleted = 0
    cursor = 0
    while True:
        cursor, keys = client.scan(cursor, match=pattern, count=batch)
        if keys:
            deleted += int(client.unlink(*keys))
        if cursor == 0:
            return deleted


def collect_garbage(client: redis.Redis, index_name: str) -> None:
    """Deletes the keys of indexes dropped by a switch or an abort (resumes one cut short)."""
    members: set[bytes] = client.smembers(garbage_key(index_name))  # type: ignore[assignment]
    for prefix in members:
        delete_prefix(client, prefix.decode())
        client.srem(garbage_key(index_name), prefix)
