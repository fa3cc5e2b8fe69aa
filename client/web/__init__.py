"""The web page and JSON API of clipsearch: one more client of the services, served over HTTP."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app
    from .settings import WebSettings

# Loaded on first use, so that `python -m client.web` reaches its entry (which sets GRPC_VERBOSITY) before
# the app, and with it gRPC, is imported.
_MODULES = {"create_app": "app", "WebSettings": "settings"}

__all__ = ["WebSettings", "create_app"]


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
