"""A real race on the libraries: another connection writes their Redis HASH between a call's WATCH and EXEC."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from search_service.libraries import Libraries


@dataclass
class Meddler:
    """Touches the libraries' HASH (a field written, then deleted: nothing is left) while the next `times`
    read-modify-writes of the search service are between WATCH and MULTI, so that Redis aborts each."""

    times: int
    meddled: int = 0

    def install(self, monkeypatch: pytest.MonkeyPatch) -> Meddler:
        original = Libraries._transaction
        meddler = self

        class Meddling:
            def __init__(self, libraries: Libraries) -> None:
                self._libraries = libraries
                self._pipeline = original(libraries)

            def __enter__(self) -> Meddling:
                self._pipeline.__enter__()
                return self

            def __exit__(self, *exc: object) -> None:
                self._pipeline.__exit__(*exc)

            def __getattr__(self, name: str) -> Any:
                return getattr(self._pipeline, name)

            def multi(self) -> None:
                if meddler.meddled < meddler.times:
                    meddler.meddled += 1
                    client, key = self._libraries._client, self._libraries._key
                    client.hset(key, "~meddler", "{}")
                    client.hdel(key, "~meddler")
                self._pipeline.multi()

        monkeypatch.setattr(Libraries, "_transaction", lambda libraries: Meddling(libraries))
        return self
