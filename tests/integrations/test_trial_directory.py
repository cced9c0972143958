"""A trial directory that cannot hold the record: the adapters refuse to start with it,
whatever restored the service before, and refuse a handoff that could not be put on
trial."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

import statemigrate as sm
from statemigrate.handoff import HandoffError, TrialError
from statemigrate.integrations import Trial
from statemigrate.integrations.aiohttp import serve
from statemigrate.integrations.asgi import HotRestart
from statemigrate.reference import KVCacheV3, build_registry


def restored_service() -> sm.Service:
    """A service that restored itself before the adapter runs, as ``start_from`` does."""
    service = sm.Service("cache", registry=build_registry())
    service.register(KVCacheV3())
    service.start_cold("restored by the application")
    return service


def shared_directory(tmp_path: Path) -> Path:
    """A directory as ``mkdir -p`` leaves it: readable by everyone."""
    directory = tmp_path / "trial"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    return directory


def test_aiohttp_refuses_to_start_with_a_shared_trial_directory(tmp_path: Path) -> None:
    directory = shared_directory(tmp_path)

    def served(listener: socket.socket) -> None:
        raise AssertionError("served with a trial directory no trial can be recorded in")

    with pytest.raises(TrialError) as caught:
        asyncio.run(serve(
            web.Application(), restored_service(), port=0, on_serving=served,
            trial=Trial(directory=directory, argv=["app"]),
        ))
    assert caught.value.directory == str(directory)
    assert "0700" in str(caught.value) and "\n" not in str(caught.value)


def test_a_missing_trial_directory_is_created_private(tmp_path: Path) -> None:
    directory = tmp_path / "trial"

    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    hot = HotRestart(app, restored_service(), trial=Trial(directory=directory, argv=["app"]))
    assert hot._trials is not None
    hot._trials.check()
    assert directory.stat().st_mode & 0o777 == 0o700


def test_a_handoff_with_a_trial_that_cannot_be_recorded_does_not_start(tmp_path: Path) -> None:
    directory = tmp_path / "trial"

    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    service = restored_service()
    hot = HotRestart(
        app, service, argv=["no-such-successor"], trial=Trial(directory=directory, argv=["app"])
    )
    directory.mkdir(mode=0o700)
    directory.chmod(0o755)  # made unusable while the service served
    with pytest.raises(HandoffError) as caught:
        asyncio.run(hot.hand_over())
    assert caught.value.stage == "trial"
    assert "0700" in caught.value.detail and "\n" not in str(caught.value)
    assert not hot.moved and hot.report is None
