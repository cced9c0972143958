"""What the asyncio adapters hold during a handoff's pause: ``safe_methods`` checked, and
a read that changes the state, run in a thread beside an export on the loop, torn
apart by the export unless the pause holds it; the wait for the writes running,
bounded by ``HandoffTimeouts.writes``; a stop signal held, and logged."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any, cast

import pytest
from aiohttp import web
from integrations.torn_reads import DEADLINE, StoppingEntries, restored_keys, service_with

import statemigrate as sm
from statemigrate import ConfigurationError
from statemigrate.handoff import HandoffError, HandoffTimeouts
from statemigrate.integrations import _gate, aiohttp, asgi
from statemigrate.integrations._gate import SAFE_METHODS, HeldStops, safe_methods_of


def test_safe_methods_are_kept_as_given() -> None:
    assert safe_methods_of(()) == frozenset()
    assert safe_methods_of(["GET", "PROPFIND", "VERSION-CONTROL"]) == {
        "GET", "PROPFIND", "VERSION-CONTROL",
    }  # fmt: skip
    assert safe_methods_of(SAFE_METHODS) == {"GET", "HEAD", "OPTIONS"}


@pytest.mark.parametrize("methods", ["GET", b"GET", 3, ["GET", ""], ["GET HEAD"], [None]])
def test_safe_methods_that_are_not_method_names_are_refused(methods: Any) -> None:
    with pytest.raises(ConfigurationError, match="safe_methods"):
        safe_methods_of(methods)


def test_each_asyncio_adapter_checks_its_safe_methods() -> None:
    service = sm.Service("gate")

    async def app(scope: Any, receive: Any, send: Any) -> None: ...

    def served(listener: object) -> None:
        raise AssertionError("served with safe_methods='GET'")

    with pytest.raises(ConfigurationError, match="safe_methods"):
        aiohttp.HotRestart(safe_methods="GET")
    with pytest.raises(ConfigurationError, match="safe_methods"):
        aiohttp.run_app(
            web.Application(), service, port=0, on_serving=served, safe_methods="GET"
        )
    with pytest.raises(ConfigurationError, match="safe_methods"):
        asgi.HotRestart(app, service, safe_methods="GET")


# -- a read in a thread, stopped halfway through its move --------------------------------

class Adapter:
    """One asyncio adapter's switch, serving a GET and pausing as a handoff does."""

    def __init__(
        self,
        kind: str,
        service: sm.Service,
        safe_methods: Any,
        timeouts: HandoffTimeouts | None = None,
    ) -> None:
        self.kind = kind
        self.read: Callable[[], str | None] = lambda: None
        if kind == "aiohttp":
            self.hot: Any = aiohttp.HotRestart(safe_methods=safe_methods, timeouts=timeouts)
        else:
            self.hot = asgi.HotRestart(
                self._asgi_app, service, safe_methods=safe_methods, timeouts=timeouts
            )

    async def _asgi_app(self, scope: Any, receive: Any, send: Any) -> None:
        # A framework's sync endpoint: run in a thread, off the loop.
        await asyncio.to_thread(self.read)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def get(self, method: str = "GET") -> None:
        if self.kind == "aiohttp":

            async def handler(request: web.Request) -> web.StreamResponse:
                await asyncio.to_thread(self.read)
                return web.Response()

            request = cast(web.Request, type("Request", (), {"method": method, "headers": {}})())
            await self.hot.middleware(request, handler)
        else:

            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": b"", "more_body": False}

            async def send(message: Any) -> None: ...

            scope = {"type": "http", "method": method, "path": "/cache/a", "headers": []}
            await self.hot(scope, receive, send)


async def _settle() -> None:
    """Let the loop run every callback that is ready."""
    for _ in range(20):
        await asyncio.sleep(0)


async def _export_during_a_stopped_read(
    adapter: Adapter, service: sm.Service, entries: StoppingEntries, read: Callable[[], Any]
) -> tuple[bool, bytes]:
    """Stop a GET's read halfway, pause, and export in the pause, inline on the loop as
    ``hand_over_async`` does; whether the pause waited for the read, and the export."""
    adapter.read = read
    entries.stop_next_pop()
    reading = asyncio.ensure_future(adapter.get())
    assert await asyncio.to_thread(entries.taken.wait, DEADLINE)
    pausing = asyncio.ensure_future(adapter.hot.pause())
    await _settle()
    waited = not pausing.done()
    if waited:
        entries.go_on.set()  # the pause waits for the read in flight: let it end
    await pausing
    exported = service.snapshot()[0].to_bytes()
    entries.go_on.set()
    await reading
    await adapter.hot.resume()
    return waited, exported


@pytest.mark.parametrize("kind", ["aiohttp", "asgi"])
@pytest.mark.parametrize(("safe_methods", "held"), [(SAFE_METHODS, False), ((), True)])
def test_a_read_in_a_thread_that_moves_a_key_loses_it_unless_the_pause_holds_reads(
    kind: str, safe_methods: Any, held: bool
) -> None:
    """A handler reads the reference cache in a thread while the export runs on the
    loop; the read takes its key out and puts it back (an LRU's move to the end), and
    stops in between. Served during the pause (GET a safe method), it leaves the key
    out of the export; with ``safe_methods=()`` the pause waits for it, and the export
    has every key."""
    service, cache, entries = service_with({"a": "1", "b": "2"})
    adapter = Adapter(kind, service, safe_methods)
    waited, exported = asyncio.run(
        _export_during_a_stopped_read(adapter, service, entries, lambda: cache.get("a"))
    )
    assert waited == held
    assert restored_keys(exported) == ({"a", "b"} if held else {"b"})


# -- the wait for the writes running, bounded ---------------------------------------------


class Writes:
    """Write requests (POSTs) through an adapter, each stuck in its handler, in a
    thread, until let go: a client trickling its body keeps its write running so."""

    def __init__(self, adapter: Adapter) -> None:
        self.adapter = adapter
        self.go_on = threading.Event()
        self.running = threading.Semaphore(0)
        adapter.read = self._handle
        self.tasks: list[asyncio.Future[None]] = []

    def _handle(self) -> None:
        self.running.release()
        self.go_on.wait(DEADLINE)
        return None

    async def start(self, count: int) -> None:
        for _ in range(count):
            self.tasks.append(asyncio.ensure_future(self.adapter.get("POST")))
            assert await asyncio.to_thread(self.running.acquire, True, DEADLINE)

    async def end(self) -> None:
        self.go_on.set()
        await asyncio.gather(*self.tasks)


@pytest.mark.parametrize("kind", ["aiohttp", "asgi"])
def test_writes_running_past_timeouts_writes_fail_the_pause_and_let_the_writes_go(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Two writes still running after ``writes`` seconds: the pause gives up with stage
    ``writes``, saying how many and what to do; the gate is open again, so a new write
    runs at once, beside the two, and a later pause, once they ended, holds writes."""
    service = sm.Service("bounded")
    adapter = Adapter(kind, service, SAFE_METHODS, HandoffTimeouts(writes=0.05))
    writes = Writes(adapter)

    async def scenario() -> HandoffError:
        await writes.start(2)
        with pytest.raises(HandoffError) as raised:
            await asyncio.wait_for(adapter.hot.pause(), DEADLINE)
        await writes.start(1)  # not held: it runs beside the two
        await writes.end()
        await asyncio.wait_for(adapter.hot.pause(), DEADLINE)  # nothing running now
        held = asyncio.ensure_future(adapter.get("POST"))
        await _settle()
        assert not held.done()  # this pause holds writes again
        await adapter.hot.resume()
        await asyncio.wait_for(held, DEADLINE)
        return raised.value

    with caplog.at_level(logging.INFO, logger="statemigrate.handoff"):
        error = asyncio.run(scenario())
    assert error.stage == "writes"
    assert error.detail.startswith("2 write requests still running after 0.05 s of the pause")
    assert "the handoff is abandoned and the old process serves on" in error.detail
    assert "Raise HandoffTimeouts.writes, or bound request bodies" in error.detail
    # Under a second: nothing said while waiting, the failure says it all.
    assert not [r for r in caplog.records if "the pause waits" in r.getMessage()]


@pytest.mark.parametrize("kind", ["aiohttp", "asgi"])
def test_a_pause_waiting_long_for_its_writes_says_so_once(
    kind: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past ``TELL_AFTER`` (1 s; shortened here) the pause logs one WARNING naming the
    writes it waits for; writes that end within ``writes`` let it complete."""
    monkeypatch.setattr(_gate, "TELL_AFTER", 0.01)
    service = sm.Service("told")
    adapter = Adapter(kind, service, SAFE_METHODS, HandoffTimeouts(writes=DEADLINE))
    writes = Writes(adapter)

    def told() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "the pause waits for" in r.getMessage()]

    async def scenario() -> None:
        await writes.start(1)
        pausing = asyncio.ensure_future(adapter.hot.pause())
        while not told():
            await asyncio.sleep(0.005)
        assert not pausing.done()
        await writes.end()
        await asyncio.wait_for(pausing, DEADLINE)  # no error: the write ended in time
        await adapter.hot.resume()

    with caplog.at_level(logging.INFO, logger="statemigrate.handoff"):
        asyncio.run(asyncio.wait_for(scenario(), DEADLINE))
    (line,) = told()
    assert line.levelno == logging.WARNING
    assert line.getMessage() == (
        "handoff: the pause waits for 1 write request still running; new writes are held"
        f" meanwhile, for at most {DEADLINE:g} s in all (HandoffTimeouts.writes)"
    )


def test_a_stop_held_by_a_handoff_says_so_and_for_how_long_at_most(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A stop signal during a handoff waits for it, as documented; it is logged as a
    warning with the bound of the handoff's waits. A stop outside one runs at once,
    unlogged."""
    timeouts = HandoffTimeouts(
        hello=10, ready=20, serving=30, kill_grace=5, precopy=40, writes=5
    )
    stops = HeldStops(timeouts=timeouts)
    done: list[str] = []

    async def scenario() -> None:
        async with stops.handing_over():
            stops.stop(lambda: done.append("held"))
            assert done == []
        assert done == ["held"]
        stops.stop(lambda: done.append("at once"))

    with caplog.at_level(logging.INFO, logger="statemigrate.handoff"):
        asyncio.run(scenario())
    assert done == ["held", "at once"]
    lines = [record for record in caplog.records if "stop signal" in record.getMessage()]
    assert [record.levelno for record in lines] == [logging.WARNING]
    line = lines[0].getMessage()
    assert "a handoff is running for " in line and "takes effect once it ends" in line
    assert "at most 70 s" in line and "at most 40 s a round with pre-copy" in line
