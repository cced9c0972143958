"""Trial generations in the server adapters: the option's checks, the revert run on
the event loop, and end to end the example caches upgraded v1 -> v2 on trial, then
reverted by ``statemigrate trial revert`` under a load that never retries (aiohttp,
uvicorn, hypercorn), with a SIGTERM during the revert, and a revert refused after a
promote."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import run
from integrations.loadclient import Tally, ask, load, lost_writes, read_value, wait_for_requests
from integrations.test_aiohttp import (
    _SERVING,
    KEYS,
    Deployment,
    _release,
    _wait_gone,
    deployed,
)
from integrations.test_asgi import (
    DEADLINE,
    alive,
    deploy,
    free_port,
    hand_over,
    read_release,
    server_options,
    started,
    wait_until,
)

import statemigrate as sm
from statemigrate.handoff import (
    HandoffError,
    HandoffReport,
    TrialError,
    TrialRecord,
    read_trial,
    request_revert,
    revert_trial,
)
from statemigrate.handoff._trial import wait_for_trial_end
from statemigrate.integrations import Trial
from statemigrate.integrations._gate import HeldStops
from statemigrate.integrations._trial import Moved, TrialRunner
from statemigrate.integrations.asgi import HotRestart
from statemigrate.reference import KVCacheV3, build_registry

# -- the option ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("directory", ""),
        ("permanent_after", -1.0),
        ("permanent_after", float("nan")),
        ("permanent_after", True),
        ("health", "yes"),
        ("argv", []),
        ("argv", "python app.py"),
        ("poll", 0),
    ],
)
def test_a_bad_trial_option_is_a_configuration_error(field: str, value: Any) -> None:
    options: dict[str, Any] = {"directory": "/run/cache/trial", field: value}
    with pytest.raises(sm.ConfigurationError) as caught:
        Trial(**options)
    assert caught.value.option == field
    assert "\n" not in str(caught.value)


def test_the_adapters_refuse_a_trial_that_is_not_a_trial() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    with pytest.raises(sm.ConfigurationError, match="trial"):
        HotRestart(app, sm.Service("cache"), trial="/run/cache/trial")  # type: ignore[arg-type]


# -- the runner, in one process --------------------------------------------------------------


@pytest.fixture
def on_trial_here(tmp_path: Path) -> tuple[TrialRunner, Path]:
    """A record that names this process as the generation on trial."""
    service = sm.Service("loop", code_version="release-3", registry=build_registry())
    service.register(KVCacheV3())
    trial = tmp_path / "trial"
    runner = TrialRunner(Trial(directory=trial, argv=["permanent"], poll=0.01), service)
    runner.begin(HandoffReport(outcome="ready", transport="spawn", successor_pid=os.getpid()))
    return runner, trial


def test_a_revert_runs_on_the_loop_and_the_trial_ends_once_the_state_moved(
    on_trial_here: tuple[TrialRunner, Path],
) -> None:
    runner, trial = on_trial_here
    calls: list[tuple[tuple[str, ...], bool, bool]] = []

    async def scenario() -> TrialRecord:
        loop_thread = threading.get_ident()
        drained = asyncio.Event()

        async def revert(argv: tuple[str, ...], moved: Moved) -> None:
            calls.append((argv, threading.get_ident() == loop_thread, runner.reverting()))
            moved(HandoffReport(outcome="ready", transport="spawn", successor_pid=os.getpid()))
            await drained.wait()  # the drain: the trial ended before it

        runner.watch_on_loop(revert)
        ended = await asyncio.to_thread(revert_trial, trial, timeout=DEADLINE)
        drained.set()
        await runner.stop_async()
        return ended

    ended = asyncio.run(scenario())
    assert (ended.state, ended.outcome) == ("permanent", "reverted")
    # On the loop, with the record saying `reverting` (a stop signal then waits).
    assert calls == [(("permanent",), True, True)]
    assert not runner.reverting()


def test_a_revert_whose_handoff_fails_leaves_the_process_on_trial(
    on_trial_here: tuple[TrialRunner, Path],
) -> None:
    runner, trial = on_trial_here

    async def scenario() -> None:
        async def revert(argv: tuple[str, ...], moved: Moved) -> None:
            raise HandoffError("spawn", "the permanent program would not start")

        runner.watch_on_loop(revert)
        with pytest.raises(TrialError, match="would not start"):
            await asyncio.to_thread(revert_trial, trial, timeout=DEADLINE)
        await runner.stop_async()

    asyncio.run(scenario())
    record = read_trial(trial)
    assert record is not None and record.state == "trial" and record.trial is not None
    assert record.trial.pid == os.getpid()


def test_a_stop_while_a_handoff_is_about_to_start_waits_for_it() -> None:
    starting = [True]
    stops = HeldStops(lambda: starting[0])
    done: list[str] = []

    async def scenario() -> None:
        stops.stop(lambda: done.append("stopped"))
        assert done == []  # the revert's handoff has not entered handing_over yet
        starting[0] = False
        async with stops.handing_over():
            assert done == []
        assert done == ["stopped"]
        stops.stop(lambda: done.append("at once"))
        assert done == ["stopped", "at once"]

    asyncio.run(scenario())


# -- end to end -----------------------------------------------------------------------------


def on_trial(directory: Path, pid: int) -> TrialRecord:
    """The record once the old process put ``pid`` on trial and it described itself."""
    found: list[TrialRecord] = []

    def ready() -> bool:
        record = read_trial(directory) if directory.exists() else None
        if record is None or not record.on_trial or record.trial is None:
            return False
        found[:] = [record]
        return record.trial.pid == pid and bool(record.trial.versions)

    wait_until(f"generation {pid} on trial", ready)
    return found[0]


def reverted_record(directory: Path) -> TrialRecord:
    record = read_trial(directory)
    assert record is not None
    assert (record.state, record.outcome) == ("permanent", "reverted"), record.summary()
    assert record.reason == "revert requested by the operator"
    return record


def assert_nothing_noticed(port: int, tally: Tally) -> None:
    assert tally.acknowledged
    assert tally.failures() == {"refused": 0, "reset": 0, "timed_out": 0, "non_2xx": 0}
    assert lost_writes(port, tally) == []
    assert [read_value(port, f"k{i}") for i in range(KEYS)] == [f"v{i}" for i in range(KEYS)]


def switch_to_trial(deployment: Deployment, directory: Path) -> tuple[int, TrialRecord]:
    """Hot-restart ``deployment`` into release 2; its pid and record once it is on trial."""
    deployment.switch_to(2)
    _, _, pid = deployment.generations()[-1]
    return pid, on_trial(directory, pid)


@pytest.mark.slow
def test_aiohttp_reverts_a_trial_under_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trial = tmp_path / "trial"
    with deployed(tmp_path, "--trial-dir", str(trial)) as (deployment, port):
        # Fresh connections: a revert under keep-alive load is the SIGTERM test's below.
        with load(port, clients=4, keep_alive=False, keys=KEYS) as tally:
            wait_for_requests(tally, 300)
            trial_pid, record = switch_to_trial(deployment, trial)
            assert record.permanent.versions == {"kvcache": 1}
            assert record.trial is not None and record.trial.versions == {"kvcache": 2}
            assert _release(port) == 2
            wait_for_requests(tally, 300)

            reverted = run(capsys, "trial", "revert", "--dir", str(trial))
            assert reverted.code == 0, reverted.err
            deployment.wait_line(_SERVING, 3)
            _wait_gone(trial_pid)
            wait_for_requests(tally, 300)
        print(f"\naiohttp trial revert: {tally.line()}")
        assert_nothing_noticed(port, tally)
        assert _release(port) == 1
        generations = deployment.generations()
        assert [release for release, _, _ in generations] == [1, 2, 1]
        assert reverted_record(trial).permanent.pid == generations[-1][2]


@pytest.mark.slow
def test_aiohttp_refuses_a_revert_after_a_promote(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trial = tmp_path / "trial"
    with deployed(tmp_path, "--trial-dir", str(trial)) as (deployment, port):
        assert ask(port, "PUT", "/cache/k0", "v0")[0] == 204
        trial_pid, _ = switch_to_trial(deployment, trial)
        promoted = run(capsys, "trial", "promote", "--dir", str(trial))
        assert promoted.code == 0, promoted.err
        refused = run(capsys, "trial", "revert", "--dir", str(trial))
        assert refused.code != 0
        assert "revert refused" in refused.err and refused.err.count("\n") == 1
        record = read_trial(trial)
        assert record is not None and (record.state, record.outcome) == ("permanent", "promoted")
        assert record.permanent.pid == trial_pid
        assert _release(port) == 2
        assert [release for release, _, _ in deployment.generations()] == [1, 2]


@pytest.mark.slow
def test_asgi_reverts_a_trial_under_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # One server: the revert asked on the command line is the same for both, and each
    # hands over to a trial and reverts it under load in the SIGTERM test below.
    server = "uvicorn"
    port = free_port()
    trial = tmp_path / "trial"
    argv = ["app.py", "--port", str(port), *server_options(server), "--trial-dir", str(trial)]
    with started(tmp_path, argv, port) as generations:
        with load(port, clients=4, keep_alive=True, keys=KEYS) as tally:
            wait_for_requests(tally, 300)
            permanent_pid = generations.serving()
            hand_over(generations, port, 2, tally)
            trial_pid = generations.serving()
            record = on_trial(trial, trial_pid)
            assert record.permanent.pid == permanent_pid
            assert record.permanent.versions == {"kvcache": 1}

            reverted = run(capsys, "trial", "revert", "--dir", str(trial))
            assert reverted.code == 0, reverted.err
            wait_until("the trial generation to exit", lambda: not alive(trial_pid))
            back = generations.serving()
            assert back != trial_pid
            assert read_release(port) == 1
            wait_for_requests(tally, 300)
        print(f"\n{server} trial revert: {tally.line()}")
        assert_nothing_noticed(port, tally)
        assert reverted_record(trial).permanent.pid == back


@pytest.mark.slow
def test_asgi_refuses_a_revert_after_a_promote(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    trial = tmp_path / "trial"
    argv = ["app.py", "--port", str(port), "--trial-dir", str(trial)]
    with started(tmp_path, argv, port) as generations:
        assert ask(port, "PUT", "/cache/k0", "v0")[0] == 204
        old = generations.serving()
        deploy(tmp_path, 2)
        os.kill(old, signal.SIGUSR2)
        wait_until("the old process to exit", lambda: not alive(old))
        trial_pid = generations.serving()
        on_trial(trial, trial_pid)
        assert run(capsys, "trial", "promote", "--dir", str(trial)).code == 0
        refused = run(capsys, "trial", "revert", "--dir", str(trial))
        assert refused.code != 0 and "revert refused" in refused.err
        assert generations.serving() == trial_pid
        assert read_release(port) == 2
        record = read_trial(trial)
        assert record is not None and record.outcome == "promoted"


def revert_then_sigterm(trial: Path, trial_pid: int) -> TrialRecord:
    """Ask for a revert, and send SIGTERM to the trial process while it hands back, as
    a service manager stopping the service would."""
    request_revert(trial)
    wait_until(
        "the revert to begin",
        lambda: (found := read_trial(trial)) is not None and found.state != "trial",
    )
    os.kill(trial_pid, signal.SIGTERM)
    record = wait_for_trial_end(trial, timeout=DEADLINE)
    assert (record.state, record.outcome) == ("permanent", "reverted"), record.summary()
    return record


@pytest.mark.slow
def test_aiohttp_sigterm_during_a_revert_waits_for_it(tmp_path: Path) -> None:
    trial = tmp_path / "trial"
    with deployed(tmp_path, "--trial-dir", str(trial)) as (deployment, port):
        with load(port, clients=4, keep_alive=True, keys=KEYS) as tally:
            wait_for_requests(tally, 300)
            trial_pid, _ = switch_to_trial(deployment, trial)
            record = revert_then_sigterm(trial, trial_pid)
            deployment.wait_line(_SERVING, 3)
            _wait_gone(trial_pid)
            wait_for_requests(tally, 300)
        assert_nothing_noticed(port, tally)
        assert record.permanent.pid == deployment.generations()[-1][2]
        assert _release(port) == 1


@pytest.mark.slow
@pytest.mark.parametrize("server", ["uvicorn", "hypercorn"])
def test_asgi_sigterm_during_a_revert_waits_for_it(tmp_path: Path, server: str) -> None:
    port = free_port()
    trial = tmp_path / "trial"
    argv = ["app.py", "--port", str(port), *server_options(server), "--trial-dir", str(trial)]
    with started(tmp_path, argv, port) as generations:
        with load(port, clients=4, keep_alive=True, keys=KEYS) as tally:
            wait_for_requests(tally, 300)
            hand_over(generations, port, 2, tally)
            trial_pid = generations.serving()
            on_trial(trial, trial_pid)
            record = revert_then_sigterm(trial, trial_pid)
            wait_until("the trial generation to exit", lambda: not alive(trial_pid))
            wait_for_requests(tally, 300)
        assert_nothing_noticed(port, tally)
        assert record.permanent.pid == generations.serving()
        assert read_release(port) == 1
