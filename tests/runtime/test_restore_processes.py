"""Releases in separate processes: a v1 snapshot restored by v3, and v3 rolled back to v1."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from statemigrate import StoreError, open_snapshot
from statemigrate.stores import TmpfsStore

CHILD = Path(__file__).resolve().parents[1] / "restore_children" / "kvcache_child.py"
SHM = "/dev/shm"
V1_STATE = {"entries": {"a": "1", "b": "2", "ü": "ß"}}


@pytest.fixture
def store_dir() -> Iterator[str]:
    """A private snapshot directory on tmpfs, removed afterwards."""
    if not os.path.isdir(SHM):
        pytest.skip("needs /dev/shm (tmpfs) to share snapshots between processes")
    scratch = tempfile.mkdtemp(dir=SHM, prefix="statemigrate-restore-")
    try:
        yield os.path.join(scratch, "snapshots")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def release(request: dict[str, Any], *, expect: int = 0) -> dict[str, Any]:
    """Run one release as a child process; return its JSON result."""
    child = subprocess.Popen(
        [sys.executable, str(CHILD)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = child.communicate(json.dumps(request), timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate(timeout=30)
    assert child.returncode == expect, err
    result: dict[str, Any] = json.loads(out)
    assert result["pid"] != os.getpid()
    return result


def latest_header(store_dir: str) -> Any:
    with TmpfsStore(store_dir) as store:
        return open_snapshot(store.open()).header


@pytest.mark.slow
def test_v1_snapshot_restores_in_a_v3_process_and_rolls_back_to_v1(store_dir: str) -> None:
    written = release({"version": 1, "store": store_dir, "state": V1_STATE, "commit": {}})
    assert written["snapshot"]["generation"] == 1
    header = latest_header(store_dir)
    assert (header.producer.pid, header.producer.code_version) == (written["pid"], "release-1")
    assert [s.version for s in header.sections] == [1]

    # Release 3, in a new process: restore, use the cache, and write a snapshot that
    # release 1 can read (the rollback), through the lossy downgrade.
    upgraded = release(
        {
            "version": 3,
            "store": store_dir,
            "restore": True,
            "ops": [["get", "a"], ["set", "c", "3", 3600.0]],
            "commit": {"kvcache": 1},
        }
    )
    assert upgraded["pid"] != written["pid"]
    (component,) = upgraded["restore"]["components"]
    assert (component["source_version"], component["target_version"]) == (1, 3)
    assert component["steps"] == ["kvcache 1 -> 3 (upgrade_1_to_3)"]
    assert set(upgraded["restore"]["timings"]) == {
        "read", "verify", "decode", "migrate", "validate", "apply",
    }  # fmt: skip
    entries = upgraded["export"]["entries"]
    assert entries["a"] == {"data": "1", "expires_at": None, "hits": 1}
    assert entries["b"] == {"data": "2", "expires_at": None, "hits": 0}
    assert entries["ü"] == {"data": "ß", "expires_at": None, "hits": 0}
    assert entries["c"]["data"] == "3" and entries["c"]["expires_at"] is not None
    (section,) = upgraded["snapshot"]["sections"]
    assert (section["version"], section["steps"]) == (1, ["kvcache 3 -> 1 (downgrade_3_to_1)"])
    assert upgraded["snapshot"]["generation"] == 2
    assert [s.version for s in latest_header(store_dir).sections] == [1]

    # Release 1 again, in a third process: the values are back, deadlines and hits gone.
    rolled_back = release({"version": 1, "store": store_dir, "restore": True})
    assert rolled_back["restore"]["components"][0]["steps"] == []
    assert rolled_back["restore"]["generation"] == 2
    assert rolled_back["export"] == {"entries": {**V1_STATE["entries"], "c": "3"}}


@pytest.mark.slow
def test_v1_process_refuses_a_v3_snapshot_without_allow_lossy(store_dir: str) -> None:
    state = {"entries": {"k": {"data": "v", "expires_at": 99.5, "hits": 4}}}
    release({"version": 3, "store": store_dir, "state": state, "commit": {}})
    refused = release(
        {"version": 1, "store": store_dir, "state": {"entries": {"mine": "x"}}, "restore": True},
        expect=3,
    )
    assert refused["error"] == {
        "phase": "migrate",
        "component": "kvcache/default",
        "cause": "LossyMigrationError",
        "export": {"entries": {"mine": "x"}},
    }
    allowed = release({"version": 1, "store": store_dir, "restore": True, "allow_lossy": True})
    assert allowed["export"] == {"entries": {"k": "v"}}
    assert allowed["restore"]["components"][0]["steps"] == ["kvcache 3 -> 1 (downgrade_3_to_1)"]


@pytest.mark.slow
def test_every_release_pair_agrees_across_processes(store_dir: str) -> None:
    """A v2 snapshot is read by v1 (lossy), v2 and v3; v3's view matches its upgrade."""
    state = {"entries": {"k": {"value": "v", "expires_at": 12.5}}}
    release({"version": 2, "store": store_dir, "state": state, "commit": None})
    # Nothing was committed (commit None): committing happens only when asked.
    with TmpfsStore(store_dir) as store, pytest.raises(StoreError, match="no snapshot"):
        store.open()
    release({"version": 2, "store": store_dir, "state": state, "commit": {}})
    views = {
        version: release(
            {"version": version, "store": store_dir, "restore": True, "allow_lossy": True}
        )["export"]
        for version in (1, 2, 3)
    }
    assert views == {
        1: {"entries": {"k": "v"}},
        2: state,
        3: {"entries": {"k": {"data": "v", "expires_at": 12.5, "hits": 0}}},
    }
