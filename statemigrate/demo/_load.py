"""The demo's load generator: client threads that write, overwrite, delete and read.

Run as ``python -m statemigrate.demo._load --port P --clients N --out FILE``. Each
thread keeps one HTTP/1.1 keep-alive connection (or opens one per request with
``--fresh``) and loops over a seeded mix of requests on keys of its own: a PUT of a
new key (half the requests), a PUT overwriting one of its keys, a DELETE of one, a GET
of one of its keys (checked against what it last had acknowledged) or of a prefilled
key (checked against the fill value).

A ``503`` is the server's "not done, send again" and is retried on a new connection.
An acknowledged write is recorded; a request whose outcome is unknown (reset, time-out)
marks its key uncertain, so the final check neither counts it as lost nor as found.

It runs until stdin reaches end-of-file or reads ``stop``, printing a ``progress``
JSON line on stdout four times a second. Then it writes the acknowledged state
(``{"acked": {key: value or null}, "uncertain": [...], "counts": {...}}``) to
``--out`` and prints a ``done`` line with the counts.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from urllib.parse import quote

__all__ = ["OUTCOMES", "Counts", "fill_value", "main"]

_STALE_SAMPLES = 5
_MAX_TRIES = 2_000  # 503s in a row for one request: a hang guard, never reached in practice


def fill_value(index: int) -> str:
    """The value the demo stores under ``fill:<index>`` before the load starts."""
    return f"prefilled value {index:08d} " + "x" * (index % 48)


OUTCOMES = ("sent", "ok", "retries", "refused", "reset", "timeouts", "errors")
"""The per-request counters of :class:`Counts`, as the ``done`` event reports them."""


@dataclass
class Counts:
    """What the clients saw. ``sent`` counts every attempt (retries included); each
    attempt then counts once as ``ok``, ``retries`` (a 503), ``refused``, ``reset``,
    ``timeouts`` or ``errors`` (a wrong answer, stale data among them)."""

    sent: int = 0
    ok: int = 0
    retries: int = 0
    refused: int = 0
    reset: int = 0
    timeouts: int = 0
    errors: int = 0
    writes_acked: int = 0
    samples: list[str] = field(default_factory=list)

    def add(self, other: Counts) -> None:
        for name in OUTCOMES:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.writes_acked += other.writes_acked
        self.samples.extend(other.samples[: _STALE_SAMPLES - len(self.samples)])


class _Failed(Exception):
    """The request's outcome is unknown (the connection failed mid-request)."""


class Client:
    """One load thread: its keys, its connection, its counts."""

    def __init__(
        self, index: int, port: int, *, fills: int, fresh: bool, stop: threading.Event
    ) -> None:
        self.name = f"c{index}"
        self.port = port
        self.fills = fills
        self.fresh = fresh
        self.stop = stop
        self.random = random.Random(index)
        self.counts = Counts()
        self.acked: dict[str, str | None] = {}
        self.uncertain: set[str] = set()
        self._keys: list[str] = []
        self._seq = 0
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30.0)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        """Send until answered other than 503; raise _Failed when the outcome is unknown."""
        counts = self.counts
        for _ in range(_MAX_TRIES):
            counts.sent += 1
            try:
                conn = self._connection()
                conn.request(method, path, body=body)
                response = conn.getresponse()
                data = response.read()
            except ConnectionRefusedError:
                counts.refused += 1  # never sent: safe to send again
                self.close()
                time.sleep(0.001)
                continue
            except TimeoutError as exc:
                counts.timeouts += 1
                self.close()
                raise _Failed from exc
            except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected) as exc:
                counts.reset += 1
                self.close()
                raise _Failed from exc
            except (OSError, http.client.HTTPException) as exc:
                counts.errors += 1
                self._sample(f"{method} {path}: {exc!r}")
                self.close()
                raise _Failed from exc
            if response.status == 503:
                counts.retries += 1
                self.close()
                continue
            if self.fresh or response.will_close:
                self.close()
            return response.status, data
        counts.errors += 1
        raise _Failed(f"{method} {path}: still 503 after {_MAX_TRIES} tries")

    def _sample(self, text: str) -> None:
        if len(self.counts.samples) < _STALE_SAMPLES:
            self.counts.samples.append(text)

    def _expect(self, ok: bool, what: str) -> None:
        if ok:
            self.counts.ok += 1
        else:
            self.counts.errors += 1
            self._sample(what)

    def step(self) -> None:
        """Send one request of the mix and check its answer."""
        roll = self.random.random()
        own = self._keys
        if roll < 0.5 or not own:
            self._seq += 1
            key = f"{self.name}:{self._seq}"
            own.append(key)
            self._put(key, f"{key} first {self.random.getrandbits(32):08x}")
        elif roll < 0.7:
            key = self.random.choice(own)
            self._put(key, f"{key} again {self.random.getrandbits(32):08x}")
        elif roll < 0.75:
            key = self.random.choice(own)
            try:
                status, _ = self.request("DELETE", f"/kv/{quote(key)}")
            except _Failed:
                self.uncertain.add(key)
                return
            if status == 200:
                self.acked[key] = None
                self.counts.writes_acked += 1
            self._expect(status == 200, f"DELETE {key}: status {status}")
        elif roll < 0.9 or not self.fills:
            key = self.random.choice(own)
            self._get(key, self.acked.get(key), check=key not in self.uncertain)
        else:
            index = self.random.randrange(self.fills)
            self._get(f"fill:{index}", fill_value(index), check=True)

    def _put(self, key: str, value: str) -> None:
        try:
            status, _ = self.request("PUT", f"/kv/{quote(key)}", value.encode())
        except _Failed:
            self.uncertain.add(key)
            return
        if status == 200:
            self.acked[key] = value
            self.uncertain.discard(key)
            self.counts.writes_acked += 1
        self._expect(status == 200, f"PUT {key}: status {status}")

    def _get(self, key: str, expected: str | None, *, check: bool) -> None:
        try:
            status, data = self.request("GET", f"/kv/{quote(key)}")
        except _Failed:
            return
        found = data.decode() if status == 200 else None
        if status not in (200, 404):
            self._expect(False, f"GET {key}: status {status}")
        elif check:
            self._expect(found == expected, f"GET {key}: {found!r}, acknowledged {expected!r}")
        else:
            self.counts.ok += 1

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.step()
        finally:
            self.close()


def _total(clients: list[Client]) -> Counts:
    total = Counts()
    for client in clients:
        total.add(client.counts)  # racy reads of ints: fine for progress lines
    return total


def _emit(**event: object) -> None:
    os.write(1, json.dumps(event).encode() + b"\n")


def main(argv: list[str] | None = None) -> int:
    """Run the load until told to stop; write the acknowledged state to ``--out``."""
    parser = argparse.ArgumentParser(prog="python -m statemigrate.demo._load")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--fills", type=int, default=0, help="prefilled keys to read")
    parser.add_argument("--fresh", action="store_true", help="one request per connection")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    stop = threading.Event()
    clients = [
        Client(i, args.port, fills=args.fills, fresh=args.fresh, stop=stop)
        for i in range(args.clients)
    ]
    threads = [threading.Thread(target=c.run, daemon=True) for c in clients]
    for thread in threads:
        thread.start()

    def watch_stdin() -> None:
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    while not stop.wait(0.25):
        _emit(event="progress", **asdict(_total(clients)))
    for thread in threads:
        thread.join(timeout=60.0)
    total = _total(clients)
    acked: dict[str, str | None] = {}
    uncertain: list[str] = []
    for client in clients:
        acked.update(client.acked)
        uncertain.extend(sorted(client.uncertain))
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump({"acked": acked, "uncertain": uncertain, "counts": asdict(total)}, handle)
    _emit(event="done", stuck=sum(t.is_alive() for t in threads), **asdict(total))
    return 0


if __name__ == "__main__":
    sys.exit(main())
