"""The demo's child processes: the server generations under a reaper, and the load.

Every server generation is the child of the previous one, which exits after the
handoff; its successor is then re-parented to the nearest subreaper, or to pid 1,
which in some containers never reaps. So the first generation runs under a small
reaper (``python -m statemigrate.demo._procs reap -- ARGV``) that adopts and reaps
them all, in a session of its own, so one ``killpg`` ends every generation and
nothing else.

A child that dies must end the wait at once, not at a time-out: the group's stdout
reaches end-of-file when the last process holding it is gone, and from then on every
wait for an event that has not arrived raises :class:`ChildExited` with the child's
exit status and the last line it wrote on stderr (its error, as a rule). The stderr
lines pass through to ours as they come.
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
from collections import deque
from collections.abc import Callable, Sequence
from typing import IO, Any

__all__ = ["ChildExited", "ChildGroup", "reap_main"]

_PR_SET_CHILD_SUBREAPER = 36
_LAST_WORDS_WAIT = 5.0  # seconds for the stderr tail and the status once stdout closed

Event = dict[str, Any]


def reap_main(argv: Sequence[str]) -> int:
    """Become a child subreaper, start ``argv``, reap every descendant, then exit.

    Returns:
        The exit status of ``argv`` itself (128 + N if signal N killed it), so whoever
        waits for the reaper learns how the command ended.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print(f"prctl(PR_SET_CHILD_SUBREAPER) failed: errno {ctypes.get_errno()}", file=sys.stderr)
        return 2
    try:
        first = os.posix_spawn(argv[0], list(argv), os.environ)
    except OSError as exc:
        print(f"cannot start {argv[0]}: {exc.strerror or exc}", file=sys.stderr)
        return 127
    status = 0
    while True:
        try:
            pid, raw = os.wait()
        except ChildProcessError:
            return status
        if pid == first:
            code = os.waitstatus_to_exitcode(raw)
            status = 128 - code if code < 0 else code


class ChildExited(RuntimeError):
    """The child (every process of its group) is gone, and the event waited for never came.

    Attributes:
        name: what the child is, as the messages call it.
        status: its exit status (negative: killed by that signal), or ``None`` if it
            could not be had.
        last_words: the last non-empty line it wrote on stderr, if any.
        when: what was awaited, e.g. ``before its 'ready' event``.
    """

    def __init__(self, name: str, status: int | None, last_words: str | None, when: str) -> None:
        self.name = name
        self.status = status
        self.last_words = last_words
        self.when = when
        if status is None:
            how = "exited"
        elif status < 0:
            how = f"was killed by signal {-status}"
        else:
            how = f"exited with status {status}"
        message = f"{name} {how} {when}"
        super().__init__(f"{message}: {last_words}" if last_words else message)


class ChildGroup:
    """A child process in its own session whose stdout carries JSON events, one a line.

    Args:
        argv: the command (run under the reaper when ``reaper`` is true).
        reaper: adopt and reap the command's orphaned descendants.
        stdin: pass ``subprocess.PIPE`` to write to the child.
        on_event: called from the reader thread with each event.
        name: what the child is, in messages (the command by default).
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        reaper: bool = False,
        stdin: int | None = subprocess.DEVNULL,
        on_event: Callable[[Event], None] | None = None,
        name: str | None = None,
    ) -> None:
        command = list(argv)
        if reaper:
            command = [sys.executable, "-m", "statemigrate.demo._procs", "reap", "--", *command]
        self.name = name or " ".join(argv)
        self.events: list[Event] = []
        self.closed = False
        """True once the child's stdout reached end-of-file: no event will come any more."""
        self._changed = threading.Condition()
        self._on_event = on_event
        self._stderr_tail: deque[str] = deque(maxlen=1)
        self.proc = subprocess.Popen(
            command,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            close_fds=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._error_reader = threading.Thread(target=self._read_errors, daemon=True)
        self._error_reader.start()

    @property
    def stdin(self) -> IO[bytes] | None:
        return self.proc.stdin

    def _read(self) -> None:
        assert self.proc.stdout is not None
        try:
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
        except (OSError, ValueError):
            pass  # the pipe was closed under us by kill(): the same as end-of-file
        finally:
            with self._changed:
                self.closed = True
                self._changed.notify_all()

    def _read_errors(self) -> None:
        """Pass the child's stderr through to ours, keeping its last non-empty line."""
        assert self.proc.stderr is not None
        try:
            for line in self.proc.stderr:
                with contextlib.suppress(OSError):
                    os.write(2, line)
                text = line.decode(errors="replace").strip()
                if text:
                    self._stderr_tail.append(text)
        except (OSError, ValueError):
            pass  # closed by kill()

    def check(self) -> None:
        """Raise :class:`ChildExited` if the child is gone (its stdout closed).

        Raises:
            ChildExited: the child and every process sharing its stdout are gone.
        """
        gone = self.exited()
        if gone is not None:
            raise gone

    def exited(self, timeout: float = 0.0) -> ChildExited | None:
        """The child's end as an error if it is gone, waiting up to ``timeout`` seconds.

        A request to a server that just died can fail before its stdout is seen to
        close; a short wait tells "it died" from "it answered badly".
        """
        with self._changed:
            if not self._changed.wait_for(lambda: self.closed, timeout=timeout):
                return None
        return self._exited("during the run")

    def _exited(self, when: str) -> ChildExited:
        self._error_reader.join(timeout=_LAST_WORDS_WAIT)
        status = self.wait(_LAST_WORDS_WAIT)
        last = self._stderr_tail[-1] if self._stderr_tail else None
        return ChildExited(self.name, status, last, when)

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
            ChildExited: the child is gone and no such event came.
            TimeoutError: none arrived within ``timeout`` seconds.
        """
        with self._changed:
            if not self._changed.wait_for(
                lambda: self.closed or self.find(kind, **fields) is not None, timeout=timeout
            ):
                raise TimeoutError(f"no {kind!r} event {fields} within {timeout:g} s")
        found = self.find(kind, **fields)
        if found is None:
            raise self._exited(f"before its {kind!r} event")
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
        self._error_reader.join(timeout=30.0)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


if __name__ == "__main__":
    if len(sys.argv) > 3 and sys.argv[1] == "reap" and sys.argv[2] == "--":
        sys.exit(reap_main(sys.argv[3:]))
    print("usage: python -m statemigrate.demo._procs reap -- ARGV...", file=sys.stderr)
    sys.exit(2)
