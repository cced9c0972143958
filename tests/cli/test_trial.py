"""``statemigrate trial``: status, promote, revert and exec on records of every shape, and
one-line errors for a missing directory, a corrupt or unsafe record and refused acts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _store_helpers import scratch_dir
from cli_helpers import one_error_line, run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import statemigrate as sm
from statemigrate.handoff import (
    GenerationInfo,
    HandoffReport,
    TrialError,
    TrialRecord,
    begin_trial,
    promote_trial,
    read_trial,
    start_generation,
)
from statemigrate.handoff._trialrecord import locked, start_time, store_record
from statemigrate.reference import KVCacheV1, build_registry


@pytest.fixture
def trial_dir() -> Iterator[Path]:
    with scratch_dir() as path:
        directory = path / "trial"
        directory.mkdir(mode=0o700)
        yield directory


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def write(directory: Path, record: TrialRecord) -> None:
    with locked(directory) as (path, fd):
        store_record(path, fd, record)


def on_trial(pid: int, *, permanent_argv: tuple[str, ...] = ("permanent",)) -> TrialRecord:
    return TrialRecord(
        service="gateway",
        state="trial",
        permanent=GenerationInfo(argv=permanent_argv, code_version="r1", versions={"c": 1}),
        trial=GenerationInfo(argv=("trial",), pid=pid, pid_start=start_time(pid)),
        started_at=1.0,
    )


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["status", "promote", "revert"])
def test_a_missing_directory_is_one_line(
    action: str, trial_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = one_error_line(run(capsys, "trial", action, "--dir", str(trial_dir / "missing")))
    assert line.endswith("missing: cannot open it: No such file or directory")


def test_a_directory_without_a_record_is_one_line(
    trial_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = one_error_line(run(capsys, "trial", "status", "--dir", str(trial_dir)))
    assert line.endswith("no trial.json: no handoff began a trial here")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"{not json", "trial.json is corrupt: not JSON"),
        (b"\xff\xfe", "trial.json is corrupt: not JSON"),
        (b"[]", "trial.json is corrupt: not a JSON object"),
        (b'{"format": 1}', "trial.json is corrupt: field 'state' is missing"),
        (b'{"format": 2}', "trial.json is corrupt: format 2 is not 1"),
        (b'{"format": 1, "state": "maybe"}', "trial.json is corrupt: state 'maybe' is unknown"),
        (b'{"format": NaN}', "trial.json is corrupt: not JSON (NaN is not a number)"),
    ],
)
def test_a_corrupt_record_is_one_line(
    content: bytes, expected: str, trial_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record = trial_dir / "trial.json"
    record.write_bytes(content)
    record.chmod(0o600)
    line = one_error_line(run(capsys, "trial", "status", "--dir", str(trial_dir)))
    assert expected in line


def test_a_record_field_of_the_wrong_type_is_one_line(
    trial_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = on_trial(os.getpid()).to_plain()
    plain["trial"]["pid"] = "12"
    (trial_dir / "trial.json").write_text(json.dumps(plain))
    (trial_dir / "trial.json").chmod(0o600)
    line = one_error_line(run(capsys, "trial", "promote", "--dir", str(trial_dir)))
    assert "trial.json is corrupt: field 'pid' has the wrong type (str)" in line


def test_an_unsafe_record_or_directory_is_refused(
    trial_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(trial_dir, on_trial(os.getpid()))
    (trial_dir / "trial.json").chmod(0o644)
    line = one_error_line(run(capsys, "trial", "status", "--dir", str(trial_dir)))
    assert line.endswith(
        "trial.json has mode 0o644; a trial record file must be private to its owner (0600);"
        " refusing it"
    )
    (trial_dir / "trial.json").unlink()
    (trial_dir / "elsewhere.json").write_text("{}")
    (trial_dir / "trial.json").symlink_to(trial_dir / "elsewhere.json")
    line = one_error_line(run(capsys, "trial", "status", "--dir", str(trial_dir)))
    assert "cannot open trial.json" in line
    trial_dir.chmod(0o755)
    line = one_error_line(run(capsys, "trial", "status", "--dir", str(trial_dir)))
    assert line.endswith(
        f"trial {trial_dir}: has mode 0o755; the trial directory must be private to its"
        " owner (0700)"
    )


@pytest.mark.parametrize("action", ["status", "promote", "revert", "exec"])
def test_an_unsafe_record_is_named_as_the_trial_record_not_a_snapshot(
    action: str, trial_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each refusal of trial.json once called it a snapshot file."""
    write(trial_dir, on_trial(os.getpid()))
    record = trial_dir / "trial.json"
    rest = ["--", "true"] if action == "exec" else []
    record.chmod(0o644)
    line = one_error_line(run(capsys, "trial", action, "--dir", str(trial_dir), *rest))
    assert "a trial record file must be private to its owner (0600)" in line
    record.chmod(0o600)
    os.link(record, trial_dir / "another-name")
    line = one_error_line(run(capsys, "trial", action, "--dir", str(trial_dir), *rest))
    assert "trial.json has 2 hard links; a trial record file has exactly one" in line
    (trial_dir / "another-name").unlink()
    with open(record, "ab") as handle:
        handle.truncate((1 << 20) + 1)  # sparse: past the largest record read
    line = one_error_line(run(capsys, "trial", action, "--dir", str(trial_dir), *rest))
    assert f"trial.json has {(1 << 20) + 1} bytes, more than a trial record file may hold" in line
    assert "snapshot" not in line


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    content=st.one_of(
        st.binary(max_size=200),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
            lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
            max_leaves=12,
        ).map(lambda value: json.dumps(value).encode()),
        st.sampled_from(["state", "trial", "permanent", "pid", "argv", "versions"]).map(
            lambda key: _mutated(key)
        ),
    )
)
def test_any_record_bytes_give_a_record_or_trial_error(content: bytes, trial_dir: Path) -> None:
    """Property: whatever trial.json holds, reading it returns a record or raises
    TrialError; nothing foreign escapes."""
    record = trial_dir / "trial.json"
    record.write_bytes(content)
    record.chmod(0o600)
    try:
        found = read_trial(trial_dir)
    except TrialError as exc:
        assert exc.directory == str(trial_dir)
    else:
        assert isinstance(found, TrialRecord)


def _mutated(key: str) -> bytes:
    """A valid record with one field, wherever it occurs, replaced by a wrong value."""

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: ([1, "x"] if k == key else walk(v)) for k, v in value.items()}
        return value

    return json.dumps(walk(on_trial(os.getpid()).to_plain())).encode()


# --- acts refused ----------------------------------------------------------------------------


def test_promote_without_a_trial_is_refused(
    trial_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(trial_dir, on_trial(os.getpid()))
    promote_trial(trial_dir)
    line = one_error_line(run(capsys, "trial", "promote", "--dir", str(trial_dir)))
    assert line.endswith(
        "no generation is on trial: the last trial ended promoted (promoted by the operator)"
    )


def test_revert_and_promote_of_a_dead_trial_are_refused(
    trial_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pid = dead_pid()
    write(trial_dir, on_trial(pid))
    for action in ("revert", "promote"):
        line = one_error_line(run(capsys, "trial", action, "--dir", str(trial_dir)))
        assert line.endswith(
            f"the trial process (pid {pid}) is gone; restart the service to run the permanent"
            " generation"
        )
    status = run(capsys, "trial", "status", "--dir", str(trial_dir))
    assert status.code == 0
    assert "a restart runs the permanent generation" in status.out
    plain = json.loads(run(capsys, "trial", "status", "--json", "--dir", str(trial_dir)).out)
    assert (plain["state"], plain["trial_alive"], plain["trial"]["pid"]) == ("trial", False, pid)


def test_an_unknown_action_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    line = one_error_line(run(capsys, "trial", "bless", "--dir", "x"), code=2)
    assert "invalid choice: 'bless'" in line


# --- exec: the launcher ------------------------------------------------------------------------


def launch(directory: Path, *command: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "statemigrate", "trial", "exec", "--dir", str(directory)]
    return subprocess.run(
        [*argv, "--", *command], capture_output=True, text=True, timeout=120, check=False
    )


def say(word: str) -> tuple[str, ...]:
    return (sys.executable, "-c", f"print({word!r})")


def test_exec_runs_the_permanent_generation_only_after_a_crash_during_the_trial(
    trial_dir: Path,
) -> None:
    assert launch(trial_dir / "none", *say("given")).stdout == "given\n"  # no directory
    write(trial_dir, on_trial(dead_pid(), permanent_argv=say("permanent")))
    crashed = launch(trial_dir, *say("given"))
    assert crashed.returncode == 0, crashed.stderr
    assert crashed.stdout.splitlines()[-1] == "permanent"
    assert "died during its trial" in crashed.stdout
    promote_after = on_trial(os.getpid(), permanent_argv=say("permanent"))
    write(trial_dir, promote_after)
    refused = launch(trial_dir, *say("given"))  # the trial (this test) runs: no second start
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.strip().endswith(
        f"generation pid {os.getpid()} is on trial and running; refusing to start another"
    )
    promote_trial(trial_dir)
    assert launch(trial_dir, *say("given")).stdout == "given\n"


def test_exec_without_a_command_is_one_line(
    trial_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = one_error_line(run(capsys, "trial", "exec", "--dir", str(trial_dir), "--"), 2)
    assert line.endswith("no command given after --")


@pytest.mark.parametrize("command", [[""], ["", "arg"]])
def test_exec_of_an_empty_command_is_one_line(
    command: list[str], trial_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """execvp('') raises ValueError, not OSError: refused before it is called."""
    argv = ["trial", "exec", "--dir", str(trial_dir), "--", *command]
    line = one_error_line(run(capsys, *argv), 2)
    assert line.endswith("the command given after -- is an empty string")


def test_exec_of_an_empty_recorded_command_is_one_line(
    trial_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A trial that died with a permanent generation recorded with an empty program."""
    write(trial_dir, on_trial(dead_pid(), permanent_argv=("",)))
    line = one_error_line(run(capsys, "trial", "exec", "--dir", str(trial_dir), "--", "given"))
    assert line.endswith("the command to run is empty: ['']")


# --- the library side, in process ----------------------------------------------------------------


def service_of(entries: dict[str, str], *, code_version: str = "r1") -> sm.Service:
    service = sm.Service("gateway", code_version=code_version, registry=build_registry())
    cache = service.register(KVCacheV1())
    for key, value in entries.items():
        cache.set(key, value)
    return service


def test_a_generation_on_trial_handing_over_keeps_the_permanent_generation(
    trial_dir: Path,
) -> None:
    """A trial process that hands over again passes its trial on; the permanent
    generation (and its state) stays the one before the first trial."""
    permanent = service_of({"a": "1"})
    this = os.getpid()
    report = HandoffReport(outcome="ready", transport="spawn", successor_pid=this)
    first = begin_trial(trial_dir, permanent, report, argv=["permanent"])
    assert first.trial is not None and first.trial.pid == this
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        report = HandoffReport(outcome="ready", transport="spawn", successor_pid=child.pid)
        second = begin_trial(trial_dir, service_of({"b": "2"}), report, argv=["trial"])
        assert second.permanent == first.permanent
        assert second.snapshot_id == first.snapshot_id
        assert second.trial is not None and second.trial.pid == child.pid
    finally:
        child.kill()
        child.wait()
    # The second trial process is gone: a start is the permanent generation's.
    restarted = service_of({})
    start = start_generation(trial_dir, restarted)
    assert (start.after_crash, start.source) == (True, "permanent")
    assert restarted.components[0].obj.entries == {"a": "1"}  # type: ignore[attr-defined]
    # The trial's own code must not come up in its place after a crash.
    write(trial_dir, on_trial(dead_pid()))
    with pytest.raises(TrialError) as refused:
        start_generation(trial_dir, service_of({}, code_version="r3"))
    assert refused.value.detail == (
        "the trial generation died; this is code version 'r3', the permanent generation is"
        " 'r1': start it with statemigrate trial exec"
    )


def test_a_revert_nobody_picks_up_is_withdrawn(
    trial_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No watcher runs in the process on trial (this one): the revert times out with
    one line, and the request does not linger to fire later."""
    write(trial_dir, on_trial(os.getpid()))
    line = one_error_line(run(capsys, "trial", "revert", "--wait", "0.2", "--dir", str(trial_dir)))
    assert line.endswith("the trial generation did not hand back within 0.2 s (trial)")
    left = read_trial(trial_dir)
    assert left is not None and (left.state, left.request) == ("trial", None)
