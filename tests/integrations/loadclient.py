"""A load client that never retries, for the server adapters' end-to-end tests.

Every example service speaks the same small API::

    PUT /cache/{key}   body = the value        -> 2xx once the value is applied
    GET /cache/{key}   -> 200 {"key": ..., "value": ..., "release": ...} | 404

Each client thread sends requests one after another (half writes of fresh keys, half
reads of preloaded keys) either on one keep-alive connection or on a fresh connection
per request, and counts what a user would notice: refused and reset connections,
timeouts, answers other than 2xx, and acknowledged writes that are later missing. A
connection the server closes after an answer (``Connection: close``) is reopened for
the next request, as any client does; a request is never sent twice.
"""

from __future__ import annotations

import http.client
import json
import statistics
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

TIMEOUT = 30.0


def ask(port: int, method: str, path: str, body: str | None = None) -> tuple[int, str]:
    """One request on a fresh connection: (status, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        connection.request(method, path, body=body)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def read_value(port: int, key: str) -> str | None:
    """The value the service holds for ``key``, or None when it has none."""
    return _value_of(*ask(port, "GET", f"/cache/{key}"))


def _value_of(status: int, body: str) -> str | None:
    if status == 404:
        return None
    assert status == 200, (status, body)
    value = json.loads(body)["value"]
    assert isinstance(value, str)
    return value


def read_values(port: int, keys: Iterable[str], *, connections: int = 2) -> dict[str, str | None]:
    """The values the service holds for ``keys`` (None where it has none).

    Read on a few keep-alive connections side by side: a test checks every write the
    load had acknowledged, thousands of them, and a fresh connection for each would
    cost more than the requests themselves.
    """
    keys = list(keys)
    with ThreadPoolExecutor(connections) as pool:
        parts = pool.map(
            _read_on_one_connection,
            [port] * connections,
            [keys[n::connections] for n in range(connections)],
        )
        return {key: value for part in parts for key, value in part.items()}


def _read_on_one_connection(port: int, keys: list[str]) -> dict[str, str | None]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)

    def get(key: str) -> tuple[int, str]:
        connection.request("GET", f"/cache/{key}")
        response = connection.getresponse()
        return response.status, response.read().decode()

    values: dict[str, str | None] = {}
    try:
        for key in keys:
            try:
                answer = get(key)
            except (ConnectionResetError, http.client.RemoteDisconnected, BrokenPipeError):
                # The server closed the idle connection as the request went out (its
                # keep-alive timeout): a read changes nothing, so it is sent again, on
                # a new connection (http.client opens one for a closed connection).
                connection.close()
                answer = get(key)
            values[key] = _value_of(*answer)
    finally:
        connection.close()
    return values


@dataclass
class Tally:
    """What the clients saw, summed over every thread."""

    requests: int = 0
    refused: int = 0
    reset: int = 0
    timed_out: int = 0
    non_2xx: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    acknowledged: dict[str, str] = field(default_factory=dict)
    # (start, seconds) of every answered request, for latency over time.
    latencies: list[tuple[float, float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def failures(self) -> dict[str, int]:
        return {
            "refused": self.refused,
            "reset": self.reset,
            "timed_out": self.timed_out,
            "non_2xx": self.non_2xx,
        }

    def latency_summary(self, since: float = 0.0, until: float = float("inf")) -> str:
        picked = sorted(s for start, s in self.latencies if since <= start <= until)
        if not picked:
            return "no requests"
        p99 = picked[min(len(picked) - 1, int(len(picked) * 0.99))]
        return (
            f"n={len(picked)} p50={statistics.median(picked) * 1e3:.1f}ms"
            f" p99={p99 * 1e3:.1f}ms max={picked[-1] * 1e3:.1f}ms"
        )

    def line(self) -> str:
        counts = " ".join(f"{name}={value}" for name, value in self.failures().items())
        return (
            f"requests={self.requests} {counts} acknowledged_writes={len(self.acknowledged)}"
            f" latency: {self.latency_summary()}"
        )


class _Client:
    def __init__(self, port: int, index: int, keep_alive: bool, tally: Tally, keys: int):
        self.port = port
        self.index = index
        self.keep_alive = keep_alive
        self.tally = tally
        self.keys = keys
        self.connection: http.client.HTTPConnection | None = None

    def _request(self, method: str, path: str, body: str | None) -> int:
        if self.connection is None:
            self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
        connection = self.connection
        try:
            connection.request(method, path, body=body)
            response = connection.getresponse()
            response.read()
            return response.status
        except BaseException:
            self._close()
            raise
        finally:
            if not self.keep_alive:
                self._close()

    def _close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def run(self, stop: threading.Event, pace: float) -> None:
        n = 0
        try:
            while not stop.is_set():
                n += 1
                write = n % 2 == 1
                key = f"w{self.index}-{n}" if write else f"k{n % self.keys}"
                value = f"x{self.index}-{n}"
                start = time.monotonic()
                try:
                    if write:
                        status = self._request("PUT", f"/cache/{key}", value)
                    else:
                        status = self._request("GET", f"/cache/{key}", None)
                except ConnectionRefusedError:
                    self._count("refused")
                except (ConnectionResetError, http.client.RemoteDisconnected, BrokenPipeError):
                    self._count("reset")
                except TimeoutError:
                    self._count("timed_out")
                else:
                    with self.tally.lock:
                        self.tally.requests += 1
                        self.tally.statuses[status] = self.tally.statuses.get(status, 0) + 1
                        self.tally.latencies.append((start, time.monotonic() - start))
                        if not 200 <= status < 300:
                            self.tally.non_2xx += 1
                        elif write:
                            self.tally.acknowledged[key] = value
                if pace:
                    time.sleep(pace)
        finally:
            self._close()

    def _count(self, what: str) -> None:
        with self.tally.lock:
            self.tally.requests += 1
            setattr(self.tally, what, getattr(self.tally, what) + 1)


@contextmanager
def load(
    port: int, *, clients: int = 4, keep_alive: bool = True, keys: int = 100, pace: float = 0.002
) -> Iterator[Tally]:
    """Run ``clients`` threads against ``port`` for the duration of the ``with`` block.

    Preload keys ``k0..k{keys-1}`` first (values ``v0..``), so reads find something.
    """
    for i in range(keys):
        status, body = ask(port, "PUT", f"/cache/k{i}", f"v{i}")
        assert 200 <= status < 300, (status, body)
    tally = Tally()
    stop = threading.Event()
    threads = [
        threading.Thread(target=_Client(port, i, keep_alive, tally, keys).run, args=(stop, pace))
        for i in range(clients)
    ]
    for thread in threads:
        thread.start()
    try:
        yield tally
    finally:
        stop.set()
        for thread in threads:
            thread.join()


def lost_writes(port: int, tally: Tally) -> list[str]:
    """Acknowledged writes the service no longer holds (or holds changed)."""
    held = read_values(port, tally.acknowledged)
    return [key for key, value in tally.acknowledged.items() if held[key] != value]


def wait_for_requests(tally: Tally, count: int, deadline: float = 60.0) -> None:
    """Block until the clients have sent ``count`` more requests (bounded)."""
    target = tally.requests + count
    end = time.monotonic() + deadline
    while tally.requests < target:
        assert time.monotonic() < end, f"load stalled at {tally.requests} requests"
        time.sleep(0.01)
