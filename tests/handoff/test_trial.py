"""Trial generations across real processes: on trial after a handoff, revert, promote,
the health check, and kill -9 during the trial restarting the permanent generation."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from _store_helpers import scratch_dir
from cli_helpers import run
from handoff_children.harness import script, wait_for

from statemigrate import Service
from statemigrate._observe._instruments import Instrument, use_sink
from statemigrate.demo._procs import ChildGroup
from statemigrate.handoff import (
    HandoffReport,
    TrialRecord,
    TrialWatch,
    begin_trial,
    promote_trial,
    read_trial,
    request_revert,
)
from statemigrate.reference import KVCacheV3, build_registry

SERVER = [sys.executable, script("trial_server.py")]


@pytest.fixture
def place() -> Iterator[Path]:
    with scratch_dir() as path:
        yield path


class Cache:
    """A client of the line server: one connection per request."""

    def __init__(self, port: int) -> None:
        self.port = port

    def ask(self, line: str) -> str:
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as conn:
            conn.sendall(line.encode() + b"\n")
            answer = b""
            while not answer.endswith(b"\n"):
                chunk = conn.recv(4096)
                assert chunk, f"connection closed before an answer to {line!r}"
                answer += chunk
        return answer.decode().strip()

    def set(self, key: str, value: str) -> None:
        assert self.ask(f"SET {key} {value}") == "OK"

    def get(self, key: str) -> str | None:
        answer = self.ask(f"GET {key}")
        return None if answer == "NONE" else answer.removeprefix("VAL ")

    def info(self) -> dict[str, int]:
        info: dict[str, int] = json.loads(self.ask("INFO"))
        return info


def start(place: Path, release: int, *options: str) -> tuple[ChildGroup, Cache, int]:
    argv = [*SERVER, "--release", str(release), "--dir", str(place / "trial"), *options]
    group = ChildGroup(argv, reaper=True)
    ready = group.wait_event("ready", release=release, timeout=60)
    return group, Cache(int(ready["port"])), int(ready["pid"])


def record(place: Path) -> TrialRecord:
    found = read_trial(place / "trial")
    assert found is not None
    return found


def upgrade(group: ChildGroup, pid: int, place: Path) -> int:
    """SIGUSR2 to the release-1 process: it hands over to release 3, which goes on trial."""
    os.kill(pid, signal.SIGUSR2)
    ready = group.wait_event("ready", release=3, timeout=60)
    wait_for(
        lambda: (place / "trial").exists()
        and (found := read_trial(place / "trial")) is not None and found.on_trial,
        60, "the trial record",
    )
    return int(ready["pid"])


def test_after_a_handoff_the_successor_is_on_trial_and_revert_brings_the_old_one_back(
    place: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    group, cache, permanent_pid = start(place, 1)
    try:
        cache.set("a", "1")
        cache.set("b", "2")
        trial_pid = upgrade(group, permanent_pid, place)
        on_trial = record(place)
        assert on_trial.state == "trial"
        assert on_trial.trial is not None and on_trial.trial.pid == trial_pid
        assert on_trial.permanent.code_version == "release-1"
        assert on_trial.permanent.versions == {"kvcache": 1}
        assert "--release" in on_trial.permanent.argv and "1" in on_trial.permanent.argv
        assert cache.info()["release"] == 3
        cache.set("c", "written during the trial")  # release 1 can hold it
        wait_for(lambda: record(place).trial.code_version == "release-3",  # type: ignore[union-attr]
                 60, "the trial generation to describe itself")

        status = run(capsys, "trial", "status", "--dir", str(place / "trial"))
        assert status.code == 0 and "trial (release-3; pid" in status.out

        reverted = run(capsys, "trial", "revert", "--dir", str(place / "trial"))
        assert reverted.code == 0, reverted.err
        back = group.wait_event("ready", release=1, source="handoff", timeout=60)
        assert back["pid"] not in (permanent_pid, trial_pid)
        assert cache.info() == {"release": 1, "pid": back["pid"]}
        assert [cache.get(key) for key in "abc"] == ["1", "2", "written during the trial"]
        after = record(place)
        assert (after.state, after.outcome, after.trial) == ("permanent", "reverted", None)
        assert after.permanent.pid == back["pid"]
        group.wait_event("exit", pid=trial_pid, outcome="reverted", timeout=60)
    finally:
        group.kill()


def test_a_failed_revert_leaves_the_trial_serving_and_a_later_one_succeeds(
    place: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    refuse = place / "refuse"
    group, cache, permanent_pid = start(place, 1, "--refuse-file", str(refuse))
    try:
        cache.set("a", "1")
        trial_pid = upgrade(group, permanent_pid, place)
        refuse.touch()  # the permanent generation's program now fails to take over
        failed = run(capsys, "trial", "revert", "--dir", str(place / "trial"))
        assert failed.code == 1 and failed.out == "" and failed.err.count("\n") == 1
        assert "revert failed: SuccessorFailedError: handoff failed at" in failed.err
        assert cache.info() == {"release": 3, "pid": trial_pid}  # serves on, on trial
        cache.set("b", "2")
        still = record(place)
        assert (still.state, still.request) == ("trial", None)
        refuse.unlink()
        assert run(capsys, "trial", "revert", "--dir", str(place / "trial")).code == 0
        back = group.wait_event("ready", release=1, source="handoff", timeout=60)
        assert cache.info() == {"release": 1, "pid": back["pid"]}
        assert [cache.get(key) for key in "ab"] == ["1", "2"]
    finally:
        group.kill()


def test_a_revert_that_starts_another_release_says_so_and_fails(
    place: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The permanent command line reads its release from a file a deployment changed:
    the revert starts release 3 again, and the record and the command line say so."""
    chosen = place / "release"
    chosen.write_text("1")
    group, cache, permanent_pid = start(place, 1, "--release-file", str(chosen))
    try:
        cache.set("a", "1")
        trial_pid = upgrade(group, permanent_pid, place)
        chosen.write_text("3")  # the deployment now names the new release
        reverted = run(capsys, "trial", "revert", "--dir", str(place / "trial"))
        after = record(place)
        assert after.permanent.pid not in (None, trial_pid, permanent_pid)
        back = group.wait_event("ready", pid=after.permanent.pid, timeout=60)
        assert (back["release"], back["source"]) == (3, "handoff")
        assert cache.info() == {"release": 3, "pid": back["pid"]}
        assert cache.get("a") == "1"
        assert reverted.code == 1
        assert f"permanent (release-3; pid {back['pid']}; kvcache v3)" in reverted.out
        assert "release-1" not in reverted.out.split(";")[0]
        assert reverted.err.count("\n") == 1
        assert reverted.err.startswith("statemigrate: error: trial ")
        assert (
            "the revert brought back release-3 (kvcache v3), not the recorded permanent"
            " generation release-1 (kvcache v1)"
        ) in reverted.err
        assert (after.state, after.outcome) == ("permanent", "reverted")
        assert (after.permanent.code_version, dict(after.permanent.versions)) == (
            "release-3", {"kvcache": 3}
        )
        assert after.recorded is not None and after.recorded.code_version == "release-1"
        status = run(capsys, "trial", "status", "--dir", str(place / "trial"))
        assert status.code == 0 and "not the recorded permanent generation" in status.out
    finally:
        group.kill()


def test_revert_is_refused_after_promote(
    place: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    group, cache, permanent_pid = start(place, 1)
    try:
        cache.set("a", "1")
        trial_pid = upgrade(group, permanent_pid, place)
        promoted = run(capsys, "trial", "promote", "--dir", str(place / "trial"))
        assert promoted.code == 0, promoted.err
        made = record(place)
        assert (made.state, made.outcome) == ("permanent", "promoted")
        assert made.permanent.pid == trial_pid

        refused = run(capsys, "trial", "revert", "--dir", str(place / "trial"))
        assert refused.code == 1 and refused.out == ""
        assert refused.err.count("\n") == 1
        assert "revert refused: no generation is on trial; the last trial ended promoted" in (
            refused.err
        )
        assert cache.info() == {"release": 3, "pid": trial_pid}  # still the promoted one
        assert cache.get("a") == "1"
    finally:
        group.kill()


def restart_through_the_launcher(
    place: Path, *options: str
) -> tuple[ChildGroup, dict[str, Any]]:
    """What the service manager does after the main process died: start the service's
    command (the trial's release) through ``statemigrate trial exec``."""
    argv = [
        sys.executable, "-m", "statemigrate", "trial", "exec", "--dir", str(place / "trial"),
        "--", *SERVER, "--release", "3", "--dir", str(place / "trial"), *options,
    ]
    group = ChildGroup(argv, reaper=True)
    ready = group.wait_event("ready", timeout=60)
    return group, ready


def test_kill_9_during_the_trial_restarts_the_permanent_generation_with_its_state(
    place: Path,
) -> None:
    group, cache, permanent_pid = start(place, 1)
    try:
        cache.set("a", "1")
        cache.set("b", "2")
        trial_pid = upgrade(group, permanent_pid, place)
        cache.set("c", "3")  # never committed anywhere: lost with the trial process
        os.kill(trial_pid, signal.SIGKILL)
        assert group.wait(60) is not None  # the reaper is done: nobody serves
    finally:
        group.kill()
    again, ready = restart_through_the_launcher(place)
    try:
        assert (ready["release"], ready["after_crash"], ready["source"]) == (1, True, "permanent")
        cache = Cache(int(ready["port"]))
        assert [cache.get(key) for key in "abc"] == ["1", "2", None]
        after = record(place)
        assert (after.state, after.outcome) == ("permanent", "crashed")
        assert after.permanent.pid == ready["pid"]
    finally:
        again.kill()


@pytest.mark.parametrize(
    "verbs",
    [("CHECKPOINT",), ("CHAIN", "CHAIN")],  # a full snapshot; an incremental base and delta
    ids=["full", "incremental"],
)
def test_kill_9_during_the_trial_restores_its_checkpoint_downgraded(
    place: Path, verbs: tuple[str, ...]
) -> None:
    checkpoints = ["--checkpoints", str(place / "checkpoints")]
    group, cache, permanent_pid = start(place, 1, *checkpoints)
    keys = "cd"[: len(verbs)]
    try:
        cache.set("a", "1")
        trial_pid = upgrade(group, permanent_pid, place)
        for key, verb in zip(keys, verbs, strict=True):
            cache.set(key, key.upper())
            assert cache.ask(verb) == "OK"  # committed at release 3's version
        os.kill(trial_pid, signal.SIGKILL)
        assert group.wait(60) is not None
    finally:
        group.kill()
    again, ready = restart_through_the_launcher(place, *checkpoints)
    try:
        assert (ready["release"], ready["source"]) == (1, "checkpoint")
        cache = Cache(int(ready["port"]))
        assert [cache.get(key) for key in "a" + keys] == ["1", *keys.upper()]
    finally:
        again.kill()


def test_the_health_check_promotes_after_n_seconds(place: Path) -> None:
    healthy = place / "healthy"
    healthy.touch()
    options = ["--permanent-after", "0.3", "--healthy-file", str(healthy)]
    group, cache, permanent_pid = start(place, 1, *options)
    try:
        trial_pid = upgrade(group, permanent_pid, place)
        wait_for(lambda: not record(place).on_trial, 60, "the trial to end")
        ended = record(place)
        assert (ended.outcome, ended.permanent.pid) == ("promoted", trial_pid)
        assert ended.reason == "served 0.3 s"
        assert cache.info() == {"release": 3, "pid": trial_pid}
    finally:
        group.kill()


def test_a_failed_health_check_reverts(place: Path) -> None:
    options = ["--permanent-after", "0.3", "--healthy-file", str(place / "absent")]
    group, cache, permanent_pid = start(place, 1, *options)
    try:
        cache.set("a", "1")
        trial_pid = upgrade(group, permanent_pid, place)
        back = group.wait_event("ready", release=1, source="handoff", timeout=60)
        wait_for(lambda: not record(place).on_trial, 60, "the trial to end")
        ended = record(place)
        assert ended.outcome == "reverted"
        assert ended.reason == "health check failed after 0.3 s: the health check returned False"
        assert cache.info() == {"release": 1, "pid": back["pid"]}
        assert cache.get("a") == "1"
        group.wait_event("exit", pid=trial_pid, outcome="reverted", timeout=60)
    finally:
        group.kill()


class Gauges:
    """A metrics sink keeping the values of ``statemigrate_trial``."""

    def __init__(self) -> None:
        self.values: list[tuple[float, tuple[str, ...]]] = []

    def record(self, instrument: Instrument, value: float, labels: Sequence[str]) -> None:
        if instrument.name == "statemigrate_trial":
            self.values.append((value, tuple(labels)))


def test_the_trial_gauge_is_1_while_this_process_is_on_trial(place: Path) -> None:
    service = Service("gateway", code_version="r3", registry=build_registry())
    service.register(KVCacheV3())
    gauges = Gauges()
    previous = use_sink(gauges)
    try:
        report = HandoffReport(outcome="ready", transport="spawn", successor_pid=os.getpid())
        watch = TrialWatch(place / "trial", service, revert=print, health=None, poll=1.0)
        assert watch.check() is None and gauges.values == [(0.0, ("gateway",))]  # no trial
        begin_trial(place / "trial", service, report, argv=["permanent"])
        assert watch.check() is None  # on trial: describes itself
        assert watch.on_trial and gauges.values[-1] == (1.0, ("gateway",))
        assert record(place).trial.versions == {"kvcache": 3}  # type: ignore[union-attr]
        promote_trial(place / "trial")
        assert watch.check() == "promoted"
        assert gauges.values == [(0.0, ("gateway",)), (1.0, ("gateway",)), (0.0, ("gateway",))]
    finally:
        use_sink(previous)


def test_a_failed_health_check_whose_revert_fails_is_not_retried_at_every_poll(
    place: Path,
) -> None:
    """Each revert starts a process: after one that failed, the trial waits for the
    operator, whose request is still acted on."""
    service = Service("gateway", code_version="r3", registry=build_registry())
    service.register(KVCacheV3())
    attempts: list[tuple[str, ...]] = []

    def revert(argv: tuple[str, ...]) -> None:
        attempts.append(argv)
        if len(attempts) == 1:
            raise RuntimeError("the permanent program would not start")

    report = HandoffReport(outcome="ready", transport="spawn", successor_pid=os.getpid())
    begin_trial(place / "trial", service, report, argv=["permanent"], permanent_after=0)
    watch = TrialWatch(place / "trial", service, revert=revert, health=lambda: False, poll=1.0)
    results = [watch.check() for _ in range(5)]
    assert results == [None] * 5 and attempts == [("permanent",)]
    failed = record(place)
    assert (failed.state, failed.reason) == (
        "trial", "revert failed: RuntimeError: the permanent program would not start"
    )
    request_revert(place / "trial")
    assert watch.check() == "reverted" and len(attempts) == 2
    assert record(place).outcome == "reverted"
