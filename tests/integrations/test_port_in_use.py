"""A port in use, or a host that does not resolve, ends an adapter's ``run`` with one
ERROR line naming the address and exit status 1, not a traceback; ``serve`` raises an
``OSError`` that says the same, and the service is left unstarted."""

from __future__ import annotations

import logging
import signal
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from aiohttp import web

import statemigrate as sm
from statemigrate.integrations import aiohttp as aiohttp_adapter
from statemigrate.integrations import hypercorn as hypercorn_adapter
from statemigrate.integrations import uvicorn as uvicorn_adapter
from statemigrate.integrations._listen import ListenError, bind_listener
from statemigrate.integrations.asgi import Receive, Scope, Send
from statemigrate.reference import KVCacheV3, build_registry


async def asgi_app(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("never served")


def run_aiohttp(service: sm.Service, **options: Any) -> object:
    return aiohttp_adapter.run_app(web.Application(), service, **options)


def run_uvicorn(service: sm.Service, **options: Any) -> object:
    return uvicorn_adapter.run(asgi_app, service, **options)


def run_hypercorn(service: sm.Service, **options: Any) -> object:
    return hypercorn_adapter.run(asgi_app, service, **options)


RUNS = [run_aiohttp, run_uvicorn, run_hypercorn]


@pytest.fixture
def taken_port() -> Iterator[int]:
    holder = socket.create_server(("127.0.0.1", 0))
    try:
        yield holder.getsockname()[1]
    finally:
        holder.close()


def new_service() -> sm.Service:
    service = sm.Service("cache", registry=build_registry())
    service.register(KVCacheV3())
    return service


@pytest.mark.parametrize("run", RUNS, ids=lambda run: run.__name__)
def test_a_port_in_use_is_one_line_and_status_1(
    run: Callable[..., object], taken_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    service = new_service()
    with caplog.at_level(logging.ERROR), pytest.raises(SystemExit) as ended:
        run(service, host="127.0.0.1", port=taken_port)
    assert ended.value.code == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [
        f"cannot listen on 127.0.0.1:{taken_port}: Address already in use; this process exits"
    ]
    assert all(r.exc_info is None for r in caplog.records)


def test_the_aiohttp_service_is_not_started_when_its_port_is_in_use(taken_port: int) -> None:
    service = new_service()
    with pytest.raises(SystemExit):
        run_aiohttp(service, host="127.0.0.1", port=taken_port)
    assert service.status.state == "starting"


def test_the_aiohttp_start_up_hooks_do_not_run_when_the_port_is_in_use(taken_port: int) -> None:
    # A second copy started by mistake must not reach a hook that acts on the state,
    # such as a checkpointer in cleanup_ctx whose final checkpoint would commit.
    ran: list[str] = []

    async def context(app: web.Application) -> AsyncIterator[None]:
        ran.append("start-up")
        yield
        ran.append("cleanup")

    app = web.Application()
    app.cleanup_ctx.append(context)
    with pytest.raises(SystemExit):
        aiohttp_adapter.run_app(app, new_service(), host="127.0.0.1", port=taken_port)
    assert ran == []


def test_a_host_that_does_not_resolve_is_named() -> None:
    with pytest.raises(ListenError) as refused:
        bind_listener("no-such-host.invalid", 8080, 16)
    assert str(refused.value).startswith("cannot listen on no-such-host.invalid:8080: ")
    assert "while attempting" not in str(refused.value)


def test_an_ipv6_address_is_shown_in_brackets_and_the_error_is_an_oserror() -> None:
    with pytest.raises(OSError) as refused:
        bind_listener("fe80::zz", 8080, 16)  # not an address in any family
    assert isinstance(refused.value, ListenError)
    assert str(refused.value).startswith("cannot listen on [fe80::zz]:8080: ")


@pytest.mark.parametrize("run", RUNS, ids=lambda run: run.__name__)
def test_a_port_out_of_range_is_one_line_and_status_1(
    run: Callable[..., object], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR), pytest.raises(SystemExit) as ended:
        run(new_service(), host="127.0.0.1", port=70000)
    assert ended.value.code == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [
        "cannot listen on 127.0.0.1:70000: the port must be an int from 0 to 65535;"
        " this process exits"
    ]


def test_an_ipv6_host_is_bound_in_its_own_family(monkeypatch: pytest.MonkeyPatch) -> None:
    # create_server binds IPv4 unless told: "::1" failed with "Address family for
    # hostname not supported" on every machine.
    asked: list[socket.AddressFamily] = []
    real = socket.create_server

    def create_server(address: Any, *, family: Any = socket.AF_INET, **kwargs: Any) -> Any:
        asked.append(family)
        return real(address, family=family, **kwargs)

    monkeypatch.setattr(socket, "create_server", create_server)
    try:
        bind_listener("::1", 0, 16).close()
    except ListenError as refused:  # a machine without IPv6 says so in its words
        assert str(refused).startswith("cannot listen on [::1]:0: ")
    assert asked == [socket.AF_INET6]


def test_no_host_is_every_interface() -> None:
    for host in (None, ""):
        listener = bind_listener(host, 0, 16)
        try:
            assert listener.getsockname()[0] in ("::", "0.0.0.0")
        finally:
            listener.close()


def test_aiohttp_says_where_it_serves(caplog: pytest.LogCaptureFixture) -> None:
    # As web.run_app does: with port 0, the line is the only way to learn the port.
    app = web.Application()
    seen: list[int] = []

    async def stop_at_once(app: web.Application) -> AsyncIterator[None]:
        yield

    app.cleanup_ctx.append(stop_at_once)

    def serving(listener: socket.socket) -> None:
        seen.append(listener.getsockname()[1])
        signal.raise_signal(signal.SIGTERM)

    with caplog.at_level(logging.INFO, logger="statemigrate.handoff"):
        aiohttp_adapter.run_app(app, new_service(), host="127.0.0.1", port=0, on_serving=serving)
    assert f"serving on http://127.0.0.1:{seen[0]}" in [r.getMessage() for r in caplog.records]
