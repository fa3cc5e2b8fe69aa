"""Serve's ready file (--ready-file): JSON that says serve is serving and where, written atomically."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipsearch.urls import redact_url

from .errors import EXIT_USAGE, ServeError

if TYPE_CHECKING:
    from clipsearch.v1.embedder_pb2 import ModelInfo

    from .config import ServeConfig

READY_FILE_VERSION = 1


def check_ready_path(path: Path) -> Path:
    """The ready file's absolute path, once a file could be written beside it; raises ServeError (usage)
    naming what is wrong, so a bad path stops serve before anything starts."""
    path = path.expanduser().absolute()
    if path.is_dir():
        raise ServeError(f"--ready-file {path} is a directory; name a file to write", EXIT_USAGE)
    try:
        descriptor, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise ServeError(
            f"--ready-file {path}: cannot write a file in {path.parent}: {error.strerror or error}", EXIT_USAGE
        ) from None
    os.close(descriptor)
    os.unlink(probe)
    return path


def ready_document(config: ServeConfig, info: ModelInfo, pid: int) -> dict[str, Any]:
    """The ready file's content. Serve removes the file when it stops, and when it starts, one that a
    killed serve left behind.

    Keys (version 1):
      version             1; a reader refuses a version it does not know
      pid                 serve's process id (a file whose pid is not running is left over from a killed serve)
      embedder_addresses  host:port of each embedder replica, in order
      search_address      host:port of the search service
      redis_url           the Redis the search service uses, its password hidden
      model               the model id the embedders report (a hub id or a local directory)
      dimension           length of the model's vectors
      dtype               the embedders' weights and compute precision: "float32", "bfloat16" or "int8"
      device              where the embedders run the model, e.g. "cpu"
      data_dir            serve's data directory (Redis keeps its data in data_dir/redis)
      web_url             the web page's address (http://host:port/), or null when it does not run
      client_env          the variables a client exports to reach the services, as the banner lists them:
                          EMBEDDER_ADDR, SEARCH_ADDR and, where needed, the paths of the CA, the client
                          certificate and the token file (never the token itself)
    """
    return {
        "version": READY_FILE_VERSION,
        "pid": pid,
        "embedder_addresses": config.embedder_addresses(),
        "search_address": config.search_address(),
        "redis_url": redact_url(config.redis_url),
        "model": info.model_id,
        "dimension": info.dimension,
        "dtype": info.dtype,
        "device": info.device,
        "data_dir": str(config.data_dir),
        "web_url": config.web_url(),
        "client_env": config.client_exports(),
    }


def write_ready_file(path: Path, document: dict[str, Any]) -> None:
    """Writes `document` as JSON to `path` atomically: readers see the whole file or none."""
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            json.dump(document, stream, indent=2)
            stream.write("\n")
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def remove_ready_file(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
