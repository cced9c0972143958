"""The command line started without a stdout (``>&-``): one line, no work, no traceback."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import statemigrate as sm
from statemigrate.cli._main import main
from statemigrate.reference import KVCacheV1, build_registry

REGISTRY = ["--registry", "statemigrate.reference:build_registry"]
CHILD_TIMEOUT = 120  # seconds; a bound on a hang, never a measurement
CLOSED = "statemigrate: error: stdout is closed;"


@pytest.fixture
def v1(tmp_path: Path) -> Path:
    service = sm.Service("streams", registry=build_registry())
    cache = service.register(KVCacheV1())
    cache.set("alpha", "one")
    encoded, _ = service.snapshot()
    path = tmp_path / "v1.smsnap"
    path.write_bytes(encoded.to_bytes())
    return path


def _no_stdout(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """sys.stdout as Python sets it when fd 1 is closed at start-up; stderr captured.

    Called in the test itself: pytest's capture sets both streams again after the
    fixtures' set-up.
    """
    err = io.StringIO()
    monkeypatch.setattr(sys, "stdout", None)
    monkeypatch.setattr(sys, "stderr", err)
    return err


@pytest.fixture
def work_done(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The commands' first acts, recorded: none may happen without a stdout."""
    from statemigrate.cli import _inspect, _registry, _source
    from statemigrate.demo import _run

    done: list[str] = []

    def recorder(name: str) -> Any:
        def record(*args: Any, **kwargs: Any) -> Any:
            done.append(name)
            raise AssertionError(f"{name} ran without a stdout")

        return record

    monkeypatch.setattr(_source, "read_snapshot_source", recorder("read"))
    monkeypatch.setattr(_inspect, "read_key_option", recorder("inspect"))
    monkeypatch.setattr(_registry, "registry_from", recorder("registry"))
    monkeypatch.setattr(_run, "run_demo", recorder("demo"))
    return done


@pytest.mark.parametrize(
    "argv",
    [
        ["inspect", "{v1}"],
        ["inspect", "{v1}", "--json"],
        ["migrate", "{v1}", "-o", "{out}", "--to", "kvcache=3", *REGISTRY],
        ["verify", "{v1}", *REGISTRY],
        ["plan", "kvcache", "--from", "1", "--to", "3", *REGISTRY],
        ["graph", "kvcache", *REGISTRY],
        ["list", "file://{tmp}"],
        ["schemas", "check", *REGISTRY],
        ["check", *REGISTRY],
        ["demo", "--entries", "10"],
        ["trial", "status", "--dir", "{tmp}"],
    ],
)
def test_every_printing_command_refuses_a_closed_stdout_before_any_work(
    argv: list[str],
    v1: Path,
    tmp_path: Path,
    work_done: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "out.smsnap"
    filled = [arg.format(v1=v1, out=out, tmp=tmp_path) for arg in argv]
    no_stdout = _no_stdout(monkeypatch)
    code = main(filled)
    # verify's status 1 is its answer "would not restore": no answer is 2.
    assert code == (2 if argv[0] == "verify" else 1)
    lines = no_stdout.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(CLOSED), lines[0]
    assert work_done == []
    assert not out.exists()


def test_an_error_with_stderr_closed_too_is_silent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """print(file=None) writes to stdout: with stderr closed, the error line must not
    land on stdout among the output."""
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", None)
    assert main(["inspect", str(tmp_path / "missing")]) == 1
    assert out.getvalue() == ""


def _closed_stdout(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m statemigrate ARGV >&-`` as a shell would run it."""
    env = {k: v for k, v in os.environ.items() if k != "STATEMIGRATE_KEY_FILE"}
    return subprocess.run(
        ["sh", "-c", 'exec "$@" >&-', "sh", sys.executable, "-m", "statemigrate", *argv],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,  # the shell closes the child's stdout before the exec
        text=True,
        timeout=CHILD_TIMEOUT,
        check=False,
    )


@pytest.mark.parametrize("command", ["inspect", "migrate"])
def test_a_closed_stdout_in_a_real_process(command: str, v1: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.smsnap"
    argv = [str(v1)] + (
        ["-o", str(out), "--to", "kvcache=3", *REGISTRY] if command == "migrate" else []
    )
    proc = _closed_stdout(command, *argv, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith(CLOSED) and proc.stderr.count("\n") == 1, proc.stderr
    assert not out.exists()  # migrate wrote nothing it could not report
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v1.smsnap"]


def test_trial_exec_launches_without_a_stdout(tmp_path: Path) -> None:
    """A launcher runs what its service manager gave it, even with no stdout."""
    trial = tmp_path / "trial"
    trial.mkdir(mode=0o700)
    marker = tmp_path / "ran"
    command = [sys.executable, "-c", f"open({str(marker)!r}, 'w').write('ran')"]
    proc = _closed_stdout("trial", "exec", "--dir", str(trial), "--", *command, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert marker.read_text() == "ran"
