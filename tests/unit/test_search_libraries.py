"""The library records of the search service: paths, their URIs, and a report gone stale."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from client.uris import dir_uri as client_dir_uri
from search_service.libraries import STALE_AFTER_SECONDS, LibraryState, _status_from_json, dir_uri, normalize_path


def test_a_library_whose_indexer_stopped_reporting_reads_idle() -> None:
    report = json.dumps(
        {
            "state": int(LibraryState.INDEXING),
            "files_done": 3,
            "files_total": 9,
            "eta_seconds": 12.0,
            "updated_at": 1000.0,
        }
    ).encode()
    fresh = _status_from_json(report, now=1000.0 + STALE_AFTER_SECONDS - 1)
    assert (fresh.state, fresh.files_done, fresh.eta_seconds) == (LibraryState.INDEXING, 3, 12.0)
    stale = _status_from_json(report, now=1000.0 + STALE_AFTER_SECONDS + 1)
    assert (stale.state, stale.files_done, stale.eta_seconds) == (LibraryState.IDLE, 3, None)


_names = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\0"), min_size=1, max_size=12)


@given(st.lists(_names.filter(lambda n: n not in (".", "..")), min_size=1, max_size=4))
def test_the_folder_uri_is_spelled_as_the_client_spells_sources(parts: list[str]) -> None:
    path = normalize_path("/" + "/".join(parts))
    assert path == "/" + "/".join(parts)
    assert dir_uri(path) == client_dir_uri(path)  # what Filter.source_dir must match
