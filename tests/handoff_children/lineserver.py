"""A small line-protocol TCP server that can hand itself over (used by the handoff tests).

One request per line, one reply per line; a connection may carry many requests::

    INC <client>   ->  OK <value> <generation>     (or RETRY <generation>, see below)
    GET <client>   ->  VAL <value> <generation>
    PING           ->  PONG <generation>

The state is a counter per client. Quiescing works like this:

* ``pause()`` takes the state lock, so no increment is half done, and from then on
  every ``INC`` waits;
* ``export_state()`` encodes the counters (msgpack + an xxh64 digest, so a
  successor detects corruption);
* on failure ``resume()`` lets the waiting ``INC`` requests go on, against the
  state that never left;
* on success ``stop_accepting()`` marks the state as moved: the waiting (and any
  later) ``INC`` on this generation is answered ``RETRY``, which the client takes as
  "not done, send it again", and the new connection lands on the successor. No
  increment is acknowledged by a process that no longer owns the state.

The listener's blocking flag is shared with the other generation (it belongs to
the open socket, not to the descriptor), so accepting uses a timeout: both
generations then treat "someone else took it" as a timeout, never a hang.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator, Mapping, Sequence
from types import FrameType

import msgpack
import xxhash

from statemigrate.handoff import Drainer, DrainReport

_DIGEST = struct.Struct(">Q")


def encode_state(generation: int, counters: Mapping[str, int]) -> bytes:
    """Return the snapshot bytes: an xxh64 digest, then msgpack of the state."""
    body = msgpack.packb({"generation": generation, "counters": dict(counters)})
    return _DIGEST.pack(xxhash.xxh64_intdigest(body)) + body


def decode_state(data: bytes | memoryview) -> tuple[int, dict[str, int]]:
    """Check the digest and return ``(generation, counters)``.

    Raises:
        ValueError: the bytes are corrupt.
    """
    raw = bytes(data)
    if len(raw) < _DIGEST.size:
        raise ValueError("corrupt snapshot: too short")
    (expected,) = _DIGEST.unpack_from(raw)
    body = raw[_DIGEST.size :]
    actual = xxhash.xxh64_intdigest(body)
    if actual != expected:
        raise ValueError(f"corrupt snapshot: digest {actual:#x}, expected {expected:#x}")
    state = msgpack.unpackb(body)
    return int(state["generation"]), {str(k): int(v) for k, v in state["counters"].items()}


def read_lines(conn: socket.socket) -> Iterator[str]:
    """Yield the lines received on ``conn`` until end-of-file."""
    pending = b""
    while True:
        chunk = conn.recv(4096)
        if not chunk:
            return
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            yield line.decode()


class LineServer:
    """The server of one generation; thread per connection."""

    def __init__(
        self,
        listener: socket.socket,
        *,
        generation: int,
        counters: Mapping[str, int] | None = None,
    ) -> None:
        self.listener = listener
        self.generation = generation
        self.counters = dict(counters or {})
        self.drainer = Drainer()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._paused = False
        self._moved = False
        self._stop = threading.Event()
        self._acceptor: threading.Thread | None = None
        self._handlers: list[threading.Thread] = []
        self.accepted = 0

    # -- serving ---------------------------------------------------------------------

    def start(self) -> None:
        self.listener.settimeout(0.05)
        self._acceptor = threading.Thread(target=self._accept_loop, name="acceptor", daemon=True)
        self._acceptor.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _address = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                continue
            self.accepted += 1
            if self.accepted % 256 == 0:  # forget finished handlers; runs go to 20k+
                self._handlers = [t for t in self._handlers if t.is_alive()]
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._handlers.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            with conn, self.drainer.track(conn):
                conn.settimeout(30.0)
                for line in read_lines(conn):
                    conn.sendall(self.handle(line).encode() + b"\n")
        except OSError:
            pass  # the client went away, or draining cut the connection

    def handle(self, line: str) -> str:
        verb, _, arg = line.partition(" ")
        if verb == "PING":
            return f"PONG {self.generation}"
        if verb == "GET":
            with self._lock:
                return f"VAL {self.counters.get(arg, 0)} {self.generation}"
        if verb == "INC":
            with self._changed:
                self._changed.wait_for(lambda: not self._paused or self._moved)
                if self._moved:
                    return f"RETRY {self.generation}"
                value = self.counters.get(arg, 0) + 1
                self.counters[arg] = value
                return f"OK {value} {self.generation}"
        return f"ERR unknown request {verb!r}"

    # -- handoff callbacks -----------------------------------------------------------

    def pause(self) -> None:
        with self._changed:
            self._paused = True

    def resume(self) -> None:
        with self._changed:
            self._paused = False
            self._changed.notify_all()

    def export_state(self, readable: Mapping[str, Sequence[int]]) -> bytes:
        if 1 not in readable.get("counters", ()):
            raise ValueError(f"successor cannot read counters version 1: {dict(readable)}")
        with self._lock:
            return encode_state(self.generation, self.counters)

    def stop_accepting(self) -> None:
        self._stop.set()
        with self._changed:
            self._moved = True
            self._changed.notify_all()
        if self._acceptor is not None:
            self._acceptor.join(timeout=10.0)

    # -- ending ----------------------------------------------------------------------

    def drain(self, timeout: float) -> DrainReport:
        """After a handoff: let connections finish for up to ``timeout`` seconds."""
        report = self.drainer.drain(timeout)
        for thread in self._handlers:
            thread.join(timeout=10.0)
        return report

    def close(self) -> DrainReport:
        """Stop serving at once (the listener stays open; it is the caller's)."""
        self.stop_accepting()
        return self.drain(0.0)


class Stopping:
    """A child server's end: ``done`` set by its handoff thread, or a stop signal.

    Use the object as the signal's handler and ``while not stopping.wait(): ...`` as
    the main thread's loop. A Python signal handler runs in the main thread between
    two bytecodes, wherever that thread is, and the main thread spends its life in
    ``done.wait()``, which holds the event's lock now and then (taking it back when a
    wait times out or is woken). A handler calling ``done.set()`` there would wait on
    a lock its own thread holds, forever. That is where a ``SIGTERM`` held during a
    handoff lands: ``install_signal_trigger`` raises it again from the handoff thread
    just after that thread set ``done``, as the main thread wakes up. So the handler
    only notes the signal, and the loop polls the note.
    """

    def __init__(self, done: threading.Event, *, poll: float = 0.2) -> None:
        self.done = done
        self.poll = poll
        self.signalled: int | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        """The signal handler: takes no lock."""
        self.signalled = signum

    def wait(self) -> bool:
        """Wait for one more poll; return whether serving should end."""
        return self.signalled is not None or self.done.wait(self.poll)
