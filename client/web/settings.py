"""What the web server is told: where it listens, the services it uses, its cache, limits and password."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from client import weboptions
from client.config import ClientConfig

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_CACHE_BYTES = 256 << 20
DEFAULT_UPLOAD_BYTES = 20 << 20
# Files added to a library from the page.
DEFAULT_UPLOAD_VIDEO_BYTES = weboptions.DEFAULT_UPLOAD_VIDEO_BYTES
DEFAULT_UPLOAD_PHOTO_BYTES = weboptions.DEFAULT_UPLOAD_PHOTO_BYTES
DEFAULT_THUMB_SIZE = 320
# A page waits on each call: a service that does not answer within this is reported, not waited for.
DEFAULT_CALL_TIMEOUT = 10.0
# How long /api/stats waits for each service before it reports that one as down.
DEFAULT_PROBE_TIMEOUT = 2.0
# How long a call waits for a service that refuses connections (is down) before the page is told.
DEFAULT_REFUSED_WAIT = 1.0


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/clipsearch/web, else ~/.cache/clipsearch/web."""
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(base) if base else Path.home() / ".cache") / "clipsearch" / "web"


@dataclass(frozen=True)
class WebSettings:
    """The web server's settings; `services` holds the addresses, TLS and token of the gRPC services."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    services: ClientConfig = field(default_factory=ClientConfig)
    cache_dir: Path = field(default_factory=default_cache_dir)
    cache_max_bytes: int = DEFAULT_CACHE_BYTES
    max_upload_bytes: int = DEFAULT_UPLOAD_BYTES
    thumb_size: int = DEFAULT_THUMB_SIZE
    call_timeout: float = DEFAULT_CALL_TIMEOUT
    probe_timeout: float = DEFAULT_PROBE_TIMEOUT
    refused_wait: float = DEFAULT_REFUSED_WAIT
    # HTTP Basic password (any user name); None: no password asked.
    password: str | None = field(default=None, repr=False)
    # Listen beyond loopback without a password.
    insecure: bool = False
    # Folders under which the page may add a library and upload files (symlinks resolved).
    library_roots: tuple[Path, ...] = field(default_factory=lambda: (Path.home(),))
    max_upload_photo_bytes: int = DEFAULT_UPLOAD_PHOTO_BYTES
    max_upload_video_bytes: int = DEFAULT_UPLOAD_VIDEO_BYTES

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0 to 65535, got {self.port}")
        for name in (
            "cache_max_bytes",
            "max_upload_bytes",
            "thumb_size",
            "max_upload_photo_bytes",
            "max_upload_video_bytes",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.call_timeout <= 0 or self.probe_timeout <= 0:
            raise ValueError("timeouts must be positive")
        if not self.library_roots:
            raise ValueError("give at least one library root")
        if self.password is not None and not self.password:
            raise ValueError("the password is empty")
