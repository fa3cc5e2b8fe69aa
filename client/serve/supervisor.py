"""Serve's supervisor: starts the children in order, restarts those that die, stops them in order."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .children import embedder_specs, indexer_spec, redis_spec, search_spec, web_spec
from .config import ServeConfig
from .probes import model_info
from .process import REDIS_GRACE_SECONDS, Child, ChildSpec, OutputRelay

if TYPE_CHECKING:
    from clipsearch.v1.embedder_pb2 import ModelInfo

TICK_SECONDS = 0.2

log = logging.getLogger("clipsearch.serve")


class Supervisor:
    """Starts children, keeps them running, and stops them in order: services first, Redis last."""

    def __init__(
        self, config: ServeConfig, stop: threading.Event, hurry: threading.Event, relay: OutputRelay | None = None
    ) -> None:
        self.config = config
        self.stop_requested = stop
        self.hurry = hurry
        self.relay = relay or OutputRelay()
        self.redis: Child | None = None
        self.embedders: list[Child] = []
        self.search: Child | None = None
        self.web: Child | None = None
        self.indexer: Child | None = None
        self.info: ModelInfo | None = None

    @property
    def children(self) -> list[Child]:
        return [c for c in (self.redis, *self.embedders, self.search, self.web, self.indexer) if c is not None]

    def _new_child(self, spec: ChildSpec) -> Child:
        child = Child(spec, self.relay, self.config.start_timeout)
        child.spawn()
        return child

    def _tick_all(self) -> None:
        for child in self.children:
            event = child.tick()
            if event == "serving" and child.restarts:
                log.info(
                    "%s: serving again at %s (pid %d, restart %d)",
                    child.name,
                    child.spec.address,
                    child.pid,
                    child.restarts,
                )

    def _wait_until_ready(self, children: Sequence[Child]) -> bool:
        """Ticks everything until `children` all serve; False if a stop was requested first."""
        while not self.stop_requested.is_set():
            self._tick_all()
            if all(child.state == "serving" for child in children):
                return True
            self.stop_requested.wait(TICK_SECONDS)
        return False

    def start(self) -> bool:
        """Starts Redis and the embedders together, then the search service sized to the model, then the
        web page once both services answer."""
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        if self.config.redis_port is not None:
            self.redis = self._new_child(redis_spec(self.config))
        self.embedders = [self._new_child(spec) for spec in embedder_specs(self.config)]
        if not self._wait_until_ready(self.children):
            return False
        self.info = model_info(self.embedders[0].spec.address, self.config.security)
        self.search = self._new_child(search_spec(self.config, self.info.dimension))
        if not self._wait_until_ready(self.children):
            return False
        if self.config.web_port is not None:
            self.web = self._new_child(web_spec(self.config))
        if self.config.watch:
            self.indexer = self._new_child(indexer_spec(self.config))
        return self._wait_until_ready(self.children)

    def supervise(self) -> None:
        """Restarts children that die, until a stop is requested."""
        while not self.stop_requested.wait(TICK_SECONDS):
            self._tick_all()

    def shutdown(self) -> None:
        # The page and the indexer first: they are clients of the services.
        services = [c for c in (self.indexer, self.web, *self.embedders, self.search) if c is not None]
        if services:
            log.info(
                "stopping %s%s",
                ", ".join(child.name for child in services),
                " and then redis" if self.redis is not None else "",
            )
        for child in services:
            child.terminate()
        told = time.monotonic()
        for child in services:
            child.finish(told + child.spec.stop_seconds, self.hurry)
        if self.redis is not None:
            self.redis.terminate()
            self.redis.finish(time.monotonic() + REDIS_GRACE_SECONDS, self.hurry)
        for child in self.children:
            child.state = "stopped"
