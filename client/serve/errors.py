"""Serve's exit codes and ServeError, the one-line reason it cannot go on."""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHILD_FAILED = 1
EXIT_USAGE = 2


class ServeError(Exception):
    """Serve cannot go on; the message is the one line shown to the user."""

    def __init__(self, message: str, exit_code: int = EXIT_CHILD_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code
