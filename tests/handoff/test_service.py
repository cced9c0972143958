"""Service handoff: version handshake, refusals that keep the old one serving, v1 -> v3 -> v1."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

import statemigrate as sm
from statemigrate._errors import LossyMigrationError, NoMigrationPathError
from statemigrate.demo._procs import ChildGroup
from statemigrate.demo._run import _Http
from statemigrate.handoff import (
    HandoffError,
    Spawn,
    SuccessorFailedError,
    choose_targets,
    hand_over,
    send_handoff,
)
from statemigrate.reference import KVCacheV1, KVCacheV2, KVCacheV3, build_registry

REGISTRY = build_registry()
RELEASES = {1: KVCacheV1, 2: KVCacheV2, 3: KVCacheV3}
SERVER = [sys.executable, "-m", "statemigrate.demo._server"]


def service_of(release: int, entries: dict[str, str] | None = None) -> sm.Service:
    service = sm.Service("statemigrate-demo", registry=REGISTRY)  # as the demo server names it
    cache = RELEASES[release]()
    for key, value in (entries or {}).items():
        cache.set(key, value)
    service.register(cache)
    return service


def reachable(source: int, *, allow_lossy: bool) -> set[int]:
    found = set()
    for version in (1, 2, 3):
        try:
            REGISTRY.plan("kvcache", source, version, allow_lossy=allow_lossy)
        except (NoMigrationPathError, LossyMigrationError):
            continue
        found.add(version)
    return found


# --- the handshake, in process ------------------------------------------------------------


def test_a_release_declares_only_what_it_restores_without_loss() -> None:
    def declared(release: int, *, allow_lossy: bool = False) -> dict[str, list[int]]:
        return service_of(release).readable_versions(allow_lossy=allow_lossy)

    assert declared(1) == {"kvcache": [1]}
    assert declared(2) == {"kvcache": [1, 2]}
    assert declared(3) == {"kvcache": [1, 2, 3]}
    # Allowing loss on the reading side declares every version with a path.
    assert declared(1, allow_lossy=True) == {"kvcache": [1, 2, 3]}


@pytest.mark.slow
@given(
    live=st.sampled_from([1, 2, 3]),
    readable=st.sets(st.integers(min_value=0, max_value=5), max_size=6),
    allow_lossy=st.booleans(),
)
def test_the_chosen_version_is_one_both_sides_understand(
    live: int, readable: set[int], allow_lossy: bool
) -> None:
    """Property: the choice is the live version if the reader reads it, else the highest
    version the reader reads that the steps reach (lossy ones only when allowed); when
    there is none the refusal names the component and both sides' versions."""
    service = service_of(live)
    common = readable & reachable(live, allow_lossy=allow_lossy)
    if common:
        chosen = choose_targets(service, {"kvcache": sorted(readable)}, allow_lossy=allow_lossy)
        assert chosen == {"kvcache": live if live in readable else max(common)}
    else:
        with pytest.raises(HandoffError) as caught:
            choose_targets(service, {"kvcache": sorted(readable)}, allow_lossy=allow_lossy)
        assert caught.value.stage == "export"
        assert f"kvcache: this process has v{live}, successor reads" in caught.value.detail
        lossy_would_do = bool(readable & reachable(live, allow_lossy=True))
        cure = "pass allow_lossy={'kvcache'} (or True, for every component)"
        assert (cure in caught.value.detail) == lossy_would_do


def test_the_cure_keeps_the_components_already_allowed() -> None:
    """A process that already allows loss for some components is told an allow_lossy
    that names those as well as the blocked one: following the advice as written must
    not take an allowance away."""
    cases = [
        (live, version)
        for live in REGISTRY.versions("kvcache")
        for version in REGISTRY.versions("kvcache")
        if version not in reachable(live, allow_lossy=False)
        and version in reachable(live, allow_lossy=True)
    ]
    live, version = cases[0]
    with pytest.raises(HandoffError) as caught:
        choose_targets(service_of(live), {"kvcache": [version]}, allow_lossy={"other"})
    assert "pass allow_lossy={'kvcache', 'other'} (or True" in caught.value.detail


# --- the handshake against a real successor -------------------------------------------------


def _stop_successor(pid: int | None) -> None:
    if pid is None:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    pidfd = os.pidfd_open(pid)
    try:
        import select

        if not select.select([pidfd], [], [], 30.0)[0]:
            os.kill(pid, signal.SIGKILL)
    finally:
        os.close(pidfd)
    os.waitpid(pid, 0)


class Hooks:
    """A server control that counts its calls."""

    def __init__(self) -> None:
        self.pauses = 0
        self.resumes = 0

    def pause(self) -> None:
        self.pauses += 1

    def resume(self) -> None:
        self.resumes += 1

    def stop_accepting(self) -> None:
        pass


@pytest.mark.slow
def test_no_common_version_is_refused_before_pausing_then_allowed_lossy() -> None:
    """A v3 process asked to hand over to release 1 (which reads v1 only) refuses
    before pausing anything, naming the versions; with allow_lossy it downgrades."""
    entries = {f"k{i}": f"value {i}" for i in range(50)}
    service = service_of(3, entries)
    before = service.components[0].obj.export_state()  # type: ignore[attr-defined]
    hooks = Hooks()
    with socket.create_server(("127.0.0.1", 0), backlog=128) as listener:
        with pytest.raises(HandoffError) as caught:
            hand_over(
                service,
                Spawn([*SERVER, "--release", "1"]),
                listeners={"http": listener},
                control=hooks,
            )
        error = caught.value
        assert error.stage == "export"
        assert not isinstance(error, SuccessorFailedError)  # we turned it away
        assert "kvcache: this process has v3, successor reads [1]" in error.detail
        assert "allow_lossy={'kvcache'} (or True, for every component)" in error.detail
        assert error.report is not None and error.report.reason == error.detail
        assert error.report.readable == {"kvcache": (1,)}
        assert error.report.successor_exit is not None  # stopped and reaped
        assert (hooks.pauses, hooks.resumes) == (0, 0)  # nobody was held
        assert service.components[0].obj.export_state() == before  # type: ignore[attr-defined]

        successor = None
        try:
            report = hand_over(
                service,
                Spawn([*SERVER, "--release", "1"]),
                listeners={"http": listener},
                control=hooks,
                allow_lossy=True,
            )
            successor = report.successor_pid
            assert report.ok and (hooks.pauses, hooks.resumes) == (1, 0)
            api = _Http(listener.getsockname()[1])
            state = api.json("GET", "/admin/export")
            assert state["release"] == 1
            assert state["entries"] == entries  # every value survived the downgrade
        finally:
            _stop_successor(successor)


def test_negative_control_an_exporter_ignoring_the_handshake_fails_late() -> None:
    """The broken variant exports its live v3 whatever the successor reads: the
    refusal then comes from the successor, after the writers were paused, which is
    exactly what the checks above rule out."""
    service = service_of(3, {"a": "1"})
    hooks = Hooks()
    with socket.create_server(("127.0.0.1", 0), backlog=128) as listener:
        with pytest.raises(HandoffError) as caught:
            send_handoff(
                Spawn([*SERVER, "--release", "1"]),
                listeners={"http": listener},
                export_state=lambda readable: service.snapshot()[0].to_bytes(),
                control=hooks,
            )
    assert caught.value.stage != "export"
    assert hooks.pauses == 1  # the check "nobody was held" fails for this variant
    assert "kvcache" in caught.value.detail


# --- across real processes: refusal under traffic, and v1 -> v3 -> v1 ---------------------


class Traffic:
    """One thread of PUT then GET on fresh keys; counts answers that are not right."""

    def __init__(self, api: _Http) -> None:
        self.api = api
        self.stop = threading.Event()
        self.ok = 0
        self.bad: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            try:
                put = self.api.call("PUT", f"/kv/t{n}", f"v{n}".encode())
                got = self.api.call("GET", f"/kv/t{n}")
            except OSError as exc:
                self.bad.append(repr(exc))
                continue
            if put[0] == 200 and got == (200, f"v{n}".encode()):
                self.ok += 1
            else:
                self.bad.append(f"{put} {got}")

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=60)


def start_server(release: int) -> tuple[ChildGroup, _Http]:
    group = ChildGroup([*SERVER, "--release", str(release)], reaper=True)
    ready = group.wait_event("ready", generation=1, timeout=60)
    return group, _Http(int(ready["port"]))


@pytest.mark.slow
def test_refused_rollback_leaves_the_old_process_serving() -> None:
    group, api = start_server(3)
    try:
        api.json("POST", "/batch", json.dumps({"x": "1", "y": "2"}).encode())
        with Traffic(api) as traffic:
            before = traffic.ok
            result = api.json("POST", "/admin/upgrade?to=1")  # no allow_lossy
            after_refusal = traffic.ok
            group.wait_event("failed", generation=2, timeout=60)  # the successor gave up
            while traffic.ok < after_refusal + 20 and not traffic.bad:
                threading.Event().wait(0.01)
        assert result["ok"] is False
        assert result["stage"] == "export"
        assert "kvcache: this process has v3, successor reads [1]" in result["reason"]
        assert "allow_lossy={'kvcache'} (or True, for every component)" in result["reason"]
        assert traffic.bad == []
        assert traffic.ok > before
        stats = api.json("GET", "/stats")
        assert (stats["generation"], stats["release"]) == (1, 3)
        assert group.find("exit") is None  # the old process never stopped
    finally:
        group.kill()


@pytest.mark.slow
def test_upgrade_then_rollback_then_upgrade_loses_nothing() -> None:
    """v1 -> v3 -> v1 -> v3 across real processes: entry by entry, every value that the
    lossy downgrade keeps is equal; what it drops (hits, expiry) is gone, as declared."""
    group, api = start_server(1)
    try:
        filled = {f"key:{i}": f"value {i} " + "z" * (i % 17) for i in range(400)}
        api.json("POST", "/batch", json.dumps(filled).encode())

        v3 = api.json("POST", "/admin/upgrade?to=3")
        assert v3["ok"] and v3["steps"] == []  # release 3 reads v1: no export step
        ready = group.wait_event("ready", generation=2, timeout=60)
        assert ready["steps"] == ["kvcache 1 -> 3 (upgrade_1_to_3)"]
        state3 = api.json("GET", "/admin/export")
        assert state3["release"] == 3
        assert {k: e["data"] for k, e in state3["entries"].items()} == filled
        # Give release 3 something to lose: hits, an expiry, and new writes.
        for i in range(0, 400, 7):
            assert api.call("GET", f"/kv/key:{i}")[0] == 200
        assert api.call("PUT", "/kv/key:1?ttl=3600", b"with expiry")[0] == 200
        assert api.call("PUT", "/kv/new:3", b"written by release 3")[0] == 200
        state3 = api.json("GET", "/admin/export")["entries"]
        assert state3["key:7"]["hits"] == 1 and state3["key:1"]["expires_at"] is not None

        back = api.json("POST", "/admin/upgrade?to=1&allow_lossy=1")
        assert back["ok"] and back["steps"] == ["kvcache 3 -> 1 (downgrade_3_to_1)"]
        assert back["readable"] == {"kvcache": [1]}
        group.wait_event("ready", generation=3, timeout=60)
        state1 = api.json("GET", "/admin/export")
        assert state1["release"] == 1
        assert state1["entries"] == {k: e["data"] for k, e in state3.items()}
        assert api.call("PUT", "/kv/new:1", b"written by release 1 again")[0] == 200

        again = api.json("POST", "/admin/upgrade?to=3")
        assert again["ok"]
        group.wait_event("ready", generation=4, timeout=60)
        final = api.json("GET", "/admin/export")["entries"]
        expected = dict(state1["entries"], **{"new:1": "written by release 1 again"})
        assert {k: e["data"] for k, e in final.items()} == expected
        assert all(e["hits"] == 0 and e["expires_at"] is None for e in final.values())
        exits = [group.wait_event("exit", generation=g, timeout=60) for g in (1, 2, 3)]
        assert all(e["handed_over"] for e in exits)
    finally:
        group.kill()
