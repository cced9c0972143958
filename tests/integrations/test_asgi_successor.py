"""The successor the ASGI wrapper starts on a handoff: the environment it gets."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

import statemigrate as sm
from statemigrate.handoff import HandoffError
from statemigrate.integrations.asgi import HotRestart, Receive, Scope, Send
from statemigrate.reference import KVCacheV3, build_registry

# The successor writes the environment it was given, then exits before the handshake.
WRITE_ENV = "import json, os, sys; open(sys.argv[1], 'w').write(json.dumps(dict(os.environ)))"


class Hooks:
    async def stop_accepting(self) -> None:
        return None

    async def drain(self, active: Callable[[], int]) -> None:
        return None

    def shut_down(self) -> None:
        return None

    def route_stop_signals(self, route: Callable[[Callable[[], None]], None]) -> None:
        return None


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    return None


def successor_environment(tmp_path: Path, **options: Any) -> dict[str, str]:
    """Hand over to a successor that records its environment and dies; what it saw."""
    service = sm.Service("cache", registry=build_registry())
    service.register(KVCacheV3())
    service.start_cold("the test")
    seen = tmp_path / "env.json"
    hot = HotRestart(app, service, argv=[sys.executable, "-c", WRITE_ENV, str(seen)], **options)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        hot.attach(Hooks(), listener, None)
        with pytest.raises(HandoffError):  # it exited without a word
            asyncio.run(hot.hand_over())
    environ: dict[str, str] = json.loads(seen.read_text())
    return environ


def test_by_default_the_successor_inherits_the_environment_as_it_is_at_the_handoff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELEASE_SETTING", "old")
    environ = successor_environment(tmp_path)
    assert environ["RELEASE_SETTING"] == "old"
    assert "STATEMIGRATE_FDS" in environ  # the handoff's own variables are added


def test_env_gives_the_successor_an_environment_read_at_each_handoff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A function is called at the handoff: a deployment that rewrote an environment
    file before the signal gives the successor its new settings."""
    monkeypatch.setenv("RELEASE_SETTING", "old")
    settings = {"RELEASE_SETTING": "old"}

    def env() -> Mapping[str, str]:
        return {"PATH": "/usr/bin:/bin", **settings}

    settings["RELEASE_SETTING"] = "new"  # changed after start-up, before the signal
    environ = successor_environment(tmp_path, env=env)
    assert environ["RELEASE_SETTING"] == "new"
    # Exactly what env gave, with the handoff's variables (and the C locale's
    # coercion Python may add at start).
    given = {k for k in environ if not k.startswith(("STATEMIGRATE_", "LC_"))}
    assert given == {"PATH", "RELEASE_SETTING"}
    fixed = successor_environment(tmp_path, env={"RELEASE_SETTING": "fixed"})
    assert fixed["RELEASE_SETTING"] == "fixed"


def test_an_env_function_that_fails_fails_the_handoff_in_one_line(tmp_path: Path) -> None:
    def env() -> Mapping[str, str]:
        raise FileNotFoundError("/etc/myservice/env")

    service = sm.Service("cache", registry=build_registry())
    service.register(KVCacheV3())
    hot = HotRestart(app, service, argv=["unused"], env=env)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        hot.attach(Hooks(), listener, None)
        with pytest.raises(HandoffError, match="env failed: FileNotFoundError") as caught:
            asyncio.run(hot.hand_over())
    assert caught.value.stage == "spawn"


def test_env_must_be_a_mapping_or_a_function() -> None:
    service = sm.Service("cache")
    with pytest.raises(sm.ConfigurationError, match="env"):
        HotRestart(app, service, env=["A=1"])  # type: ignore[arg-type]
