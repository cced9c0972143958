"""The demo's load generator: client threads that write, overwrite, delete and read.

Run as ``python -m statemigrate.demo._load --port P --clients N --out FILE``. Each
thread keeps one HTTP/1.1 keep-alive connection (or opens one per request with
``--fresh``) and loops over a seeded mix of requests on keys of its own: a PUT of a
new key (half the requests), a PUT overwriting one of its keys, a DELETE of one, a GET
of one of its keys (checked against what it last had acknowledged) or of a prefilled
key (checked against the fill value).

No request is ever sent twice, as with a browser or ``wrk``: a refused connection, a
reset, a time-out or a ``5xx`` answer is counted as such and the client moves on. An
acknowledged write is recorded; a request whose outcome is unknown (reset, time-out,
``5xx``) marks its key uncertain, so the final check neither counts it as lost nor as
found. The start time and duration of every answered request are kept, for the
latency figures and the picture of the run.

It runs until stdin reaches end-of-file or reads ``stop``, printing a ``progress``
JSON line on stdout four times a second. Then it writes the acknowledged state
(``{"acked": {key: value or null}, "uncertain": [...], "counts": {...},
"latencies": [[start, seconds], ...]}``, ``start`` in ``time.time()`` seconds) to
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


def fill_value(index: int) -> str:
    """The value the demo stores under ``fill:<index>`` before the load starts."""
    return f"prefilled value {index:08d} " + "x" * (index % 48)


OUTCOMES = ("sent", "ok", "server_errors", "refused", "reset", "timeouts", "errors")
"""The per-request counters of :class:`Counts`, as the ``done`` event reports them."""


@dataclass
class Counts:
    """What the clients saw. ``sent`` counts every request; each then counts once as
    ``ok``, ``server_errors`` (a 5xx answer), ``refused``, ``reset``, ``timeouts`` or
    ``errors`` (a wrong answer, stale data among them)."""

    sent: int = 0
    ok: int = 0
    server_errors: int = 0
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
        self.latencies: list[tuple[float, float]] = []

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30.0)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        """Send once; raise _Failed when the request was not answered, or with a 5xx."""
        counts = self.counts
        counts.sent += 1
        began = time.time()
        try:
            conn = self._connection()
            conn.request(method, path, body=body)
            response = conn.getresponse()
            data = response.read()
        except ConnectionRefusedError as exc:
            counts.refused += 1
            self.close()
            raise _Failed from exc
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
        self.latencies.append((began, time.time() - began))
        if self.fresh or response.will_close:
            self.close()
        if response.status >= 500:
            counts.server_errors += 1
            self._sample(f"{method} {path}: status {response.status}")
            raise _Failed(f"{method} {path}: status {response.status}")
        return response.status, data

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
    latencies = sorted(sample for client in clients for sample in client.latencies)
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(
            {
                "acked": acked,
                "uncertain": uncertain,
                "counts": asdict(total),
                "latencies": [[round(t, 6), round(s, 6)] for t, s in latencies],
            },
            handle,
        )
    _emit(event="done", stuck=sum(t.is_alive() for t in threads), **asdict(total))
    return 0


if __name__ == "__main__":
    sys.exit(main())
