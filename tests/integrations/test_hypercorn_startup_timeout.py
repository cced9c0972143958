"""hypercorn's ``startup_timeout`` bounds the lifespan start-up, where the take-over
runs: the adapter raises it to cover the handoff's own timeouts unless it was set, and
warns in one line when one set is shorter."""

from __future__ import annotations

import logging
from typing import Any

import hypercorn.asyncio
import pytest

import statemigrate as sm
from statemigrate.handoff import HandoffTimeouts
from statemigrate.integrations import hypercorn as adapter
from statemigrate.integrations._startuptimeout import handoff_waits
from statemigrate.integrations.asgi import Receive, Scope, Send
from statemigrate.reference import KVCacheV3, build_registry


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("never served")


def startup_timeout_given(
    monkeypatch: pytest.MonkeyPatch, config: dict[str, Any], **options: Any
) -> float:
    """The ``startup_timeout`` the adapter gives hypercorn (which returns at once)."""
    seen: list[float] = []

    async def fake_serve(application: Any, settings: Any, **kwargs: Any) -> None:
        seen.append(settings.startup_timeout)

    monkeypatch.setattr(hypercorn.asyncio, "serve", fake_serve)
    service = sm.Service("cache", registry=build_registry())
    service.register(KVCacheV3())
    adapter.run(app, service, port=0, config=config, **options)
    assert len(seen) == 1
    return seen[0]


def test_the_sum_of_the_handoff_timeouts_is_305_s_by_default() -> None:
    assert handoff_waits(HandoffTimeouts()) == 305.0
    assert handoff_waits(HandoffTimeouts(precopy=600.0)) == 785.0


def test_by_default_the_start_up_may_last_the_handoff_timeouts_past_hypercorns_own(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="statemigrate.handoff"):
        assert startup_timeout_given(monkeypatch, {}) == 60.0 + 305.0
        long_rounds = HandoffTimeouts(precopy=600.0)
        assert startup_timeout_given(monkeypatch, {}, timeouts=long_rounds) == 60.0 + 785.0
    assert not [r for r in caplog.records if "startup_timeout" in r.getMessage()]


def test_a_startup_timeout_set_explicitly_is_kept(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="statemigrate.handoff"):
        assert startup_timeout_given(monkeypatch, {"startup_timeout": 400}) == 400.0
    assert not [r for r in caplog.records if "startup_timeout" in r.getMessage()]


def test_a_shorter_startup_timeout_is_kept_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="statemigrate.handoff"):
        assert startup_timeout_given(monkeypatch, {"startup_timeout": 0.5}) == 0.5
    warnings = [r for r in caplog.records if "startup_timeout" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    line = warnings[0].getMessage()
    assert "0.5 s, below the 305 s" in line and "\n" not in line
