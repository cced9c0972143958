"""The demo's child processes: the server generations under a reaper, and the load.

Every server generation is the child of the previous one, which exits after the
handoff; its successor is then re-parented to the nearest subreaper, or to pid 1,
which in some containers never reaps. So the first generation runs under a small
reaper (``python -m statemigrate.demo._procs reap -- ARGV``) that adopts and reaps
them all, in a session of its own, so one ``killpg`` ends every generation and
nothing else.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import IO, Any

__all__ = ["ChildGroup", "reap_main"]

_PR_SET_CHILD_SUBREAPER = 36

Event = dict[str, Any]


def reap_main(argv: Sequence[str]) -> int:
    """Become a child subreaper, start ``argv``, reap every descendant, then exit."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print(f"prctl(PR_SET_CHILD_SUBREAPER) failed: errno {ctypes.get_errno()}", file=sys.stderr)
        return 2
    os.posix_spawn(argv[0], list(argv), os.environ)
    while True:
        try:
            os.wait()
        except ChildProcessError:
            return 0


class ChildGroup:
    """A child process in its own session whose stdout carries JSON events, one a line.

    Args:
        argv: the command (run under the reaper when ``reaper`` is true).
        reaper: adopt and reap the command's orphaned descendants.
        stdin: pass ``subprocess.PIPE`` to write to the child.
        on_event: called from the reader thread with each event.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        reaper: bool = False,
        stdin: int | None = subprocess.DEVNULL,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        command = list(argv)
        if reaper:
            command = [sys.executable, "-m", "statemigrate.demo._procs", "reap", "--", *command]
        self.events: list[Event] = []
        self._changed = threading.Condition()
        self._on_event = on_event
        self.proc = subprocess.Popen(
            command,
            stdin=stdin,
            stdout=subprocess.PIPE,
            close_fds=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def stdin(self) -> IO[bytes] | None:
        return self.proc.stdin

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event: Event = json.loads(line)
            except ValueError:
                continue  # not an event: ignore rather than stop reading
            if self._on_event is not None:
                self._on_event(event)
            with self._changed:
                self.events.append(event)
                self._changed.notify_all()

    def find(self, kind: str, **fields: object) -> Event | None:
        """The first event of ``kind`` whose fields match, if one arrived."""
        with self._changed:
            for event in self.events:
                if event.get("event") == kind and all(event.get(k) == v for k, v in fields.items()):
                    return event
        return None

    def wait_event(self, kind: str, *, timeout: float, **fields: object) -> Event:
        """Wait (bounded) for an event of ``kind`` with these fields.

        Raises:
            TimeoutError: none arrived within ``timeout`` seconds.
        """
        with self._changed:
            if not self._changed.wait_for(
                lambda: self.find(kind, **fields) is not None, timeout=timeout
            ):
                raise TimeoutError(f"no {kind!r} event {fields} within {timeout:g} s")
        found = self.find(kind, **fields)
        assert found is not None
        return found

    def wait(self, timeout: float) -> int | None:
        """Wait for the child to exit; its status, or ``None`` if it is still running."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """End the whole session (every generation), reap the child, close the pipes."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=30.0)
        else:
            # The reaper is gone; kill any generation left in its session all the same.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self._reader.join(timeout=30.0)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


if __name__ == "__main__":
    if len(sys.argv) > 3 and sys.argv[1] == "reap" and sys.argv[2] == "--":
        sys.exit(reap_main(sys.argv[3:]))
    print("usage: python -m statemigrate.demo._procs reap -- ARGV...", file=sys.stderr)
    sys.exit(2)
