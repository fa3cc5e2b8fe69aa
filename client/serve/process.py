"""Serve's child processes: each in its own process group, probed until ready, restarted with backoff."""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TextIO

from .errors import ServeError
from .probes import Probe

# The services stop within their own grace period (10 s by default); this leaves them room to do so.
SERVICE_GRACE_SECONDS = 15.0
# On SIGTERM Redis flushes and fsyncs its append-only file before it exits.
REDIS_GRACE_SECONDS = 30.0
RESTART_BACKOFF_INITIAL = 1.0
RESTART_BACKOFF_MAX = 30.0
# A child that served this long before dying is restarted with the initial backoff again.
RESTART_BACKOFF_RESET_AFTER = 60.0

# Each child starts as this script, which makes sure the child dies with serve, then becomes the service.
EXEC_WITH_DEATH_SIGNAL = Path(__file__).with_name("exec_with_death_signal.py")

log = logging.getLogger("clipsearch.serve")


def live_group_members(pgid: int) -> list[int]:
    """Processes of a process group that are still running (zombies excluded)."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


@dataclass(frozen=True)
class ChildSpec:
    """One supervised service: its command, environment, and how to tell it is ready."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    address: str
    make_probe: Callable[[], Probe]
    # Added to a start-up error that the child explains itself.
    hint: str = ""
    # How long a stop waits for it after SIGTERM before killing it.
    stop_seconds: float = SERVICE_GRACE_SECONDS


class OutputRelay:
    """Copies child output to our stderr (or `stream`), each line prefixed with the child's name."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def write(self, name: str, line: str) -> None:
        stream = self._stream or sys.stderr
        with self._lock:
            try:
                stream.write(f"{name:<11}| {line}\n")
                stream.flush()
            except (OSError, ValueError):
                pass


class Child:
    """A supervised child process: started in its own process group, restarted with backoff."""

    def __init__(
        self, spec: ChildSpec, relay: OutputRelay, start_timeout: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.spec = spec
        self.relay = relay
        self.start_timeout = start_timeout
        self.clock = clock
        self.process: subprocess.Popen[bytes] | None = None
        self.probe: Probe | None = None
        self.reader: threading.Thread | None = None
        self.state = "new"  # new -> starting -> serving; exited -> waiting -> starting; stopped
        self.ever_served = False
        self.restarts = 0
        self.backoff = RESTART_BACKOFF_INITIAL
        self.next_start = 0.0
        self.started_at = 0.0
        self.serving_since = 0.0
        self.tail: collections.deque[str] = collections.deque(maxlen=40)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def spawn(self) -> None:
        argv = [sys.executable, str(EXEC_WITH_DEATH_SIGNAL), str(os.getpid()), *self.spec.argv]
        self.tail.clear()
        self.process = subprocess.Popen(
            argv,
            env=dict(self.spec.env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            process_group=0,
            close_fds=True,
        )
        self.reader = threading.Thread(
            target=self._relay_output, args=(self.process.stdout,), name=f"output-{self.name}", daemon=True
        )
        self.reader.start()
        self.probe = self.spec.make_probe()
        self.state = "starting"
        self.started_at = self.clock()
        log.info("%s: started (pid %d)", self.name, self.process.pid)

    def _relay_output(self, stream: IO[bytes]) -> None:
        with stream:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip()
                if line:
                    self.tail.append(line)
                    self.relay.write(self.name, line)

    def exit_code(self) -> int | None:
        """The exit code once the process has ended (negative: killed by that signal), else None.

        The process is left a zombie (WNOWAIT) until finish() reaps it, so its process-group id stays
        reserved while leftovers in the group are cleaned up."""
        assert self.process is not None
        if self.process.returncode is not None:
            return self.process.returncode
        if not hasattr(os, "waitid"):  # macOS
            return self.process.poll()
        try:
            info = os.waitid(os.P_PID, self.process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return self.process.poll()
        if info is None or info.si_pid == 0:
            return None
        return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status

    def last_words(self) -> str:
        """The child's last line of output: a service's one-line start-up error, or an exception."""
        return self.tail[-1] if self.tail else ""

    def terminate(self) -> None:
        if self.process is not None and self.process.returncode is None:
            signal_group(self.process.pid, signal.SIGTERM)

    def finish(self, deadline: float, hurry: threading.Event | None = None) -> None:
        """Waits until the process and the rest of its group end (SIGKILL after the deadline), then
        reaps it."""
        if self.process is None or self.process.returncode is not None:
            return
        pgid = self.process.pid
        killed = leftovers_told = False
        give_up = deadline + 10.0
        while True:
            leader_done = self.exit_code() is not None
            members = live_group_members(pgid)
            if leader_done and not members:
                break
            now = self.clock()
            if now >= give_up:
                log.warning("%s: processes %s of its group do not die; leaving them", self.name, members)
                break
            if now >= deadline or (hurry is not None and hurry.is_set()):
                if not killed:
                    log.warning("%s: still running after SIGTERM; killing it", self.name)
                    killed = True
                signal_group(pgid, signal.SIGKILL)
            elif leader_done and not leftovers_told:
                # Leftovers in the group (a redis-server whose wrapper died) get SIGTERM, then SIGKILL
                # at the deadline.
                signal_group(pgid, signal.SIGTERM)
                leftovers_told = True
            time.sleep(0.05)
        self.process.wait()
        if self.reader is not None:
            self.reader.join(timeout=2)
        if self.probe is not None:
            self.probe.close()
            self.probe = None

    def stop(self, grace: float) -> None:
        self.terminate()
        self.finish(self.clock() + grace)
        self.state = "stopped"

    def tick(self) -> str | None:
        """Advances the child's life; returns an event ("serving", "exited", "restarted") or None.

        Raises ServeError when a child fails before it ever became ready: a configuration error that a
        restart would only repeat."""
        now = self.clock()
        if self.state == "waiting":
            if now >= self.next_start:
                self.restarts += 1
                self.spawn()
                return "restarted"
            return None
        if self.state not in ("starting", "serving"):
            return None
        code = self.exit_code()
        if code is not None:
            return self._on_exit(code, now)
        if self.state == "starting":
            assert self.probe is not None
            if self.probe.ready():
                self.state = "serving"
                self.serving_since = self.clock()
                self.ever_served = True
                return "serving"
            refusal = None if self.ever_served else self.probe.refusal()
            if refusal:
                self.stop(SERVICE_GRACE_SECONDS)
                raise ServeError(f"cannot connect to {self.name} at {self.spec.address}: {refusal}")
            problem = None if self.ever_served else self.probe.problem()
            if problem:
                self.stop(SERVICE_GRACE_SECONDS)
                raise ServeError(f"{self.name} cannot serve: {problem}{self.spec.hint}")
            if self.probe.loading():
                # A large library loads for minutes: --start-timeout counts from when the load ends (the
                # Redis wrapper gives up by itself when the load stalls).
                self.started_at = now
            elif now - self.started_at > self.start_timeout:
                if not self.ever_served:
                    self.stop(SERVICE_GRACE_SECONDS)
                    raise ServeError(
                        f"{self.name} did not become ready within {self.start_timeout:.0f} s "
                        "(raise --start-timeout for a slow model download)"
                    )
                log.warning("%s: not ready after %.0f s; restarting it", self.name, self.start_timeout)
                self.stop(SERVICE_GRACE_SECONDS)
                return self._schedule_restart(now, "did not become ready")
        return None

    def _on_exit(self, code: int, now: float) -> str:
        was_serving_for = now - self.serving_since if self.state == "serving" else 0.0
        self.finish(now + 5.0)
        if not self.ever_served:
            self.state = "stopped"
            why = self.last_words() or "no output"
            raise ServeError(f"{self.name} exited with code {code} before it was ready: {why}")
        if was_serving_for >= RESTART_BACKOFF_RESET_AFTER:
            self.backoff = RESTART_BACKOFF_INITIAL
        return self._schedule_restart(now, f"exited with code {code}")

    def _schedule_restart(self, now: float, why: str) -> str:
        log.warning("%s: %s; restarting in %.0f s", self.name, why, self.backoff)
        self.state = "waiting"
        self.next_start = now + self.backoff
        self.backoff = min(self.backoff * 2, RESTART_BACKOFF_MAX)
        return "exited"
