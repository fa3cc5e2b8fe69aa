"""Reading FT.INFO (RediSearch's description of an index), and telling how an index differs from the schema."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from search_service import schema as S
from search_service.schema import IndexSchema


def parse_info(raw: Mapping[bytes, Any]) -> dict[str, Any]:
    """FT.INFO (RESP3) with str keys; attributes by name with lower-case keys; prefixes as a list."""
    info: dict[str, Any] = {}
    for key, value in raw.items():
        info[key.decode() if isinstance(key, bytes) else str(key)] = value
    definition = info.get("index_definition", {})
    info["prefixes"] = [p.decode() for p in definition.get(b"prefixes", [])]
    attributes: dict[str, dict[str, Any]] = {}
    for attr in info.get("attributes", []):
        parsed = {
            (k.decode() if isinstance(k, bytes) else str(k)).lower(): (v.decode() if isinstance(v, bytes) else v)
            for k, v in attr.items()
        }
        attributes[str(parsed.get("attribute"))] = parsed
    info["attributes"] = attributes
    return info


def mismatch_message(schema: IndexSchema, info: Mapping[str, Any], problems: list[str], redis_label: str) -> str:
    """Why the index found (parsed FT.INFO) cannot serve `schema`, and how to resolve it."""
    vector = info.get("attributes", {}).get(S.F_VECTOR, {})
    hint = ""
    if isinstance(vector.get("dim"), int) and vector.get("algorithm"):
        hint = f"set SEARCH_DIM={vector['dim']} and SEARCH_ALGORITHM={str(vector['algorithm']).lower()} to use it, or "
    return (
        f"the RediSearch index {schema.name!r} in Redis at {redis_label} does not match the "
        f"configuration: {'; '.join(problems)}. To resolve: {hint}set SEARCH_INDEX to another name for a "
        f"new index, or drop this one (FT.DROPINDEX {schema.name} DD, which deletes its items) "
        "and restart the service"
    )
