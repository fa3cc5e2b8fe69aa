"""Run by path as each of serve's children: arms the parent-death signal, then becomes the service."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> int:
    """argv: [this script, SERVE_PID, PROGRAM, ARGS...]. Asks Linux to send SIGTERM to this process when
    serve dies, even by SIGKILL, so no service outlives its supervisor; then replaces itself with PROGRAM.
    Imports only the standard library: it runs before the service's own imports."""
    supervisor, program = int(argv[1]), argv[2:]
    with contextlib.suppress(AttributeError, OSError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != supervisor:
        return 0  # serve died before the death signal was armed
    os.execv(program[0], program)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
