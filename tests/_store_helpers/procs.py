"""Driving writer processes from a test: line protocol with bounded waits, kill, reap."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

WRITER = str(Path(__file__).resolve().parent / "writer.py")


class Lines:
    """Reads lines from a pipe, never waiting longer than asked."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = b""

    def next(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self._fd], [], [], max(0.0, remaining))
            if not ready:
                raise TimeoutError(f"no line from the writer within {timeout} s")
            chunk = os.read(self._fd, 65536)
            if not chunk:
                raise EOFError("the writer closed its output")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()


class Writer:
    """One writer child (``writer.py <command> ...``), killed if still alive at exit."""

    def __init__(self, *args: str, stderr_path: Path) -> None:
        self._stderr = open(stderr_path, "wb")  # closed in close()
        self.stderr_path = stderr_path
        self.proc = subprocess.Popen(
            [sys.executable, WRITER, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        assert self.proc.stdout is not None
        self.lines = Lines(self.proc.stdout.fileno())

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def expect(self, prefix: str, *, timeout: float = 30.0, acks: list[int] | None = None) -> str:
        """Read lines until one starts with ``prefix``; collect ``ack`` lines on the way."""
        while True:
            line = self.lines.next(timeout)
            if line.startswith("ack ") and acks is not None:
                acks.append(int(line.split()[1]))
            elif line.startswith(prefix):
                return line
            elif not line.startswith("ack "):
                raise AssertionError(f"unexpected line from the writer: {line!r}")

    def stderr_text(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")[-4000:]

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                try:
                    self.send("quit")
                    self.proc.wait(timeout=10)
                except (OSError, subprocess.TimeoutExpired):
                    pass
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=10)
            for pipe in (self.proc.stdin, self.proc.stdout):
                if pipe is not None:
                    pipe.close()
            self._stderr.close()

    def __enter__(self) -> Writer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Zygote(Writer):
    """The forking writer server of ``writer.py zygote``."""

    def __init__(self, *, stderr_path: Path) -> None:
        super().__init__("zygote", stderr_path=stderr_path)
        self.expect("ready")
        self._live: set[int] = set()

    def run(self, directory: Path, kind: str, seed: int, acks: list[int],
            pause: str | None = None) -> int:
        """Fork a writer; return its pid. Acks seen meanwhile are appended to ``acks``."""
        self.send(f"run {directory} {kind} {seed}" + (f" {pause}" if pause else ""))
        pid = int(self.expect("pid ", acks=acks).split()[1])
        self._live.add(pid)
        return pid

    def kill(self, pid: int, acks: list[int]) -> int:
        """SIGKILL the writer, reap it, return its wait status; collects its last acks."""
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # it died on its own; the wait status will say why
        self.send(f"reap {pid}")
        status = int(self.expect(f"reaped {pid} ", acks=acks).split()[2])
        self._live.discard(pid)
        return status

    def close(self) -> None:
        for pid in list(self._live):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        super().close()
