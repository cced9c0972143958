"""The adapters' and the handoff's allow_lossy: the per-component form accepted, a str
refused when the option is given (not at the first handoff, in a worker)."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest
from aiohttp import web
from lossy_components import lossy_both_ways, service_at

from statemigrate import ConfigurationError
from statemigrate.handoff import Spawn, hand_over, take_over
from statemigrate.integrations.aiohttp import serve
from statemigrate.integrations.asgi import HotRestart
from statemigrate.integrations.gunicorn import server_hooks

STR_REFUSED = "allow_lossy: must be True, False or a collection of component names"


async def _app(scope: Any, receive: Any, send: Any) -> None:  # never called
    raise AssertionError("not served")


def test_asgi_takes_names_and_refuses_a_str() -> None:
    service = service_at(2, [], lossy_both_ways())
    hot = HotRestart(_app, service, allow_lossy=["catalog"])
    assert hot.allow_lossy == frozenset({"catalog"})
    with pytest.raises(ConfigurationError, match=STR_REFUSED):
        HotRestart(_app, service, allow_lossy="catalog")


def test_gunicorn_takes_names_and_refuses_a_str() -> None:
    assert "when_ready" in server_hooks("m:s", allow_lossy={"catalog"})
    with pytest.raises(ConfigurationError, match=STR_REFUSED):
        server_hooks("m:s", allow_lossy="catalog")


def test_aiohttp_refuses_a_str_before_serving() -> None:
    service = service_at(2, [], lossy_both_ways())
    with pytest.raises(ConfigurationError, match=STR_REFUSED):
        asyncio.run(serve(web.Application(), service, port=0, allow_lossy="catalog"))


def test_hand_over_refuses_a_str_before_a_successor_is_started(tmp_path: Any) -> None:
    marker = tmp_path / "started"
    successor = Spawn([sys.executable, "-c", f"open({str(marker)!r}, 'w')"])
    with pytest.raises(ConfigurationError, match=STR_REFUSED):
        hand_over(
            service_at(2, [], lossy_both_ways()),
            successor,
            listeners={},
            allow_lossy="catalog",
        )
    assert not marker.exists()


def test_take_over_refuses_a_str_before_its_first_step() -> None:
    """Refused before the first step: the inheritance (here not even a real one) is not
    touched, and no HELLO goes to the old process."""
    untouched: Any = object()
    with pytest.raises(ConfigurationError, match=STR_REFUSED):
        take_over(service_at(2, [], lossy_both_ways()), untouched, allow_lossy="catalog")
