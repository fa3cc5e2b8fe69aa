"""A web app served by uvicorn in a background thread, for tests and benchmarks."""

from __future__ import annotations

import threading

from fastapi import FastAPI

from client.web.server import bind, make_server, url_of


class WebThread:
    """An app served by uvicorn in a daemon thread on a socket of its own; start() returns its URL."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        self._sock = bind(host, port)
        self.url = url_of(host, self._sock.getsockname()[1])
        self._server = make_server(app, log=False)
        self._thread = threading.Thread(target=self._run, name="clipsearch-web", daemon=True)
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self._sock])
        except BaseException as exc:  # noqa: BLE001 - reported by start() or stop() in the caller's thread
            self._error = exc

    def start(self, timeout: float = 30.0) -> str:
        self._thread.start()
        started = threading.Event()

        def wait() -> bool:
            return bool(self._server.started) or not self._thread.is_alive()

        while not wait():
            started.wait(0.01)
            timeout -= 0.01
            if timeout <= 0:
                raise RuntimeError("the web server did not start within its timeout")
        if not self._server.started:
            raise RuntimeError(f"the web server failed to start: {self._error}")
        return self.url

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(30)
        self._sock.close()
