"""Checkpointer: claiming a store whose other writer has stopped, by hand (claim())
or once its refused checkpoints keep finding the same snapshot (claim_after).

D2 is this process; D1, the other writer, commits to the same place and never reads
it (started cold, or a handoff's successor), so its commits go over whatever is there.
In most tests D1 is played in this process, to keep them fast; one test runs it in a
process of its own."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest
from restore_children.ledger import Ledger, ledger_service, state_after

from statemigrate import Checkpointer, ConfigurationError, MemoryStore, StoreSharedError, TmpfsStore
from statemigrate._runtime import _service
from statemigrate.stores import Claim, ObjectStore, Store, _base

# D1 in a process of its own: a write and a commit per line of its stdin, until its
# stdin closes.
CHILD_WRITER = """
import sys
sys.path.insert(0, sys.argv[3])
from restore_children.ledger import ledger_service
from statemigrate import TmpfsStore
from statemigrate.stores import ObjectStore
kind, place = sys.argv[1], sys.argv[2]
store = TmpfsStore(place) if kind == "tmpfs" else ObjectStore(place)
service, ledger = ledger_service()
for _ in sys.stdin:
    ledger.write()
    service.commit(store)
    print(ledger.count, flush=True)
"""

CLAIMED = "claim of "
TAKEN = "claiming the store (claim_after="


class OtherWriter(Protocol):
    pid: int
    count: int

    def commit(self) -> None:
        """One write, and a commit of it."""

    def stop(self) -> None:
        """The process exits."""


# What stores/_base.py records of a process's commits and reads: one record per
# process, which D1 played in this process must have of its own.
RECORD = (
    "_committed_places",
    "_committed_identities",
    "_first_seen",
    "_read_places",
    "_claimed_places",
)


class PlayedWriter:
    """D1 played in this process: while it commits, the stores' record of what a
    process committed and read is its own, and its snapshots' headers name a process
    of its own: a ``sleep`` standing for it, which runs until :meth:`stop`."""

    def __init__(self, kind: str, place: str) -> None:
        self.stand_in = subprocess.Popen(["sleep", "300"])
        self.pid = self.stand_in.pid
        self.count = 0
        self.store = open_place(kind, place)
        self.service, self.ledger = ledger_service()
        self.record = {name: type(getattr(_base, name))() for name in RECORD}

    def commit(self) -> None:
        ours = {name: getattr(_base, name) for name in RECORD}
        with pytest.MonkeyPatch.context() as patch:
            for name, value in self.record.items():
                patch.setattr(_base, name, value)
            patch.setattr(_service, "serving_pid", lambda: self.pid)
            self.count = self.ledger.write()
            self.service.commit(self.store)
        assert {name: getattr(_base, name) for name in RECORD} == ours

    def stop(self) -> None:
        if self.stand_in.poll() is None:
            self.stand_in.kill()
            self.stand_in.wait()


class ChildWriter:
    """D1 in a process of its own."""

    def __init__(self, kind: str, place: str) -> None:
        tests = str(Path(__file__).parent.parent)
        self.process = subprocess.Popen(
            [sys.executable, "-c", CHILD_WRITER, kind, place, tests],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.count = 0

        self.pid = self.process.pid

    def commit(self) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        self.count = int(self.process.stdout.readline())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.communicate("")


def open_place(kind: str, place: str) -> Store:
    return TmpfsStore(place) if kind == "tmpfs" else ObjectStore(place)


def restored(store: Store) -> object:
    service, ledger = ledger_service(started=False)
    assert service.start_from(store) is not None
    return ledger.export_state()


Refused = tuple[str, str, OtherWriter, Ledger, Checkpointer]


def refused_by(
    kind: str, tmp_path: Path, writer: type[PlayedWriter | ChildWriter]
) -> Iterator[Refused]:
    """D2, whose checkpoints D1 refuses: D1 commits after D2's start and is still
    running when they are handed over (stop it to play its exit).

    On an object store, D2 restores D1's checkpoint at its start and D1 commits once
    more (a rollout's surge: ``since="start"``); a tmpfs store does not keep that
    rule, so there D2 checkpoints once and D1 commits over it (``since="commit"``).
    D2 has written 7 times since."""
    if kind == "tmpfs":
        place = str(tmp_path / "store")
    else:
        (tmp_path / "bucket").mkdir()
        place = f"file://{tmp_path / 'bucket'}"
    other = writer(kind, place)
    try:
        store = open_place(kind, place)
        if kind == "object":
            other.commit()
            service, ledger = ledger_service(started=False)
            assert service.start_from(store) is not None
        else:
            service, ledger = ledger_service()
        checkpointer = Checkpointer(service, store, export="inline", claim_after=1e-6)
        if kind == "tmpfs":
            assert checkpointer.checkpoint_now().committed is not None
        other.commit()
        for _ in range(7):
            ledger.write()
        yield kind, place, other, ledger, checkpointer
    finally:
        other.stop()


@pytest.fixture(params=["object", "tmpfs"])
def refused(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Refused]:
    yield from refused_by(str(request.param), tmp_path, PlayedWriter)


def refuse(checkpointer: Checkpointer, kind: str, since: str = "") -> StoreSharedError:
    with pytest.raises(StoreSharedError) as refusal:
        checkpointer.checkpoint_now()
    assert refusal.value.since == (since or ("start" if kind == "object" else "commit"))
    return refusal.value


def test_a_claim_makes_this_process_the_writer_once_the_other_has_stopped(
    refused: Refused,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The refusal names claim() as the way out. A claim is of the snapshot there
    when it is made: one the other process commits after it is refused as before.
    Claimed again once that process has exited, the next checkpoint goes over its
    snapshot, and a restart restores this process's state, not the other's."""
    kind, place, other, ledger, checkpointer = refused
    checkpointer.claim_after = None
    assert "claim()" in str(refuse(checkpointer, kind))
    with caplog.at_level(logging.WARNING, logger="statemigrate"):
        early = checkpointer.claim()
    assert isinstance(early, Claim) and early.writer_pid == other.pid
    assert early.writer_running is True
    other.commit()  # it was still committing: the claim does not cover this one
    assert "since this one claimed the store" in str(refuse(checkpointer, kind, "claim"))
    other.stop()
    error = refuse(checkpointer, kind, "claim")
    assert (error.writer_pid, error.writer_running) == (other.pid, False)
    assert f"process {other.pid} has exited since" in str(error)
    assert restored(open_place(kind, place)) == state_after(other.count)

    with caplog.at_level(logging.WARNING, logger="statemigrate"):
        claim = checkpointer.claim()
    assert claim is not None
    assert (claim.writer_pid, claim.writer_host) == (other.pid, socket.gethostname())
    assert claim.writer_running is False
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith(CLAIMED)]
    assert len(lines) == 2 and f"committed by process {other.pid}" in lines[1]
    assert "which has exited" in lines[1] and (claim.replaces or "") in lines[1]
    assert checkpointer.checkpoint_now().committed is not None
    assert restored(open_place(kind, place)) == ledger.export_state()
    ledger.write()
    assert checkpointer.checkpoint_now().committed is not None
    assert TAKEN not in caplog.text


def test_the_checkpointer_claims_a_store_whose_other_writer_stopped_committing(
    refused: Refused,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Refusals that keep finding the same snapshot for claim_after: its writer has
    stopped committing, and the checkpointer claims the store by itself, naming that
    process; the next checkpoint goes over it. Not while this host sees that process
    running: idle, it is still alive."""
    kind, place, other, ledger, checkpointer = refused
    for _ in range(3):
        assert refuse(checkpointer, kind).writer_running is True
    assert TAKEN not in caplog.text
    other.stop()
    # Quiet since the first refusal: the snapshot is the same, and its writer gone.
    with caplog.at_level(logging.WARNING, logger="statemigrate"):
        assert refuse(checkpointer, kind).writer_running is False
    taken = [r.getMessage() for r in caplog.records if TAKEN in r.getMessage()]
    assert len(taken) == 1
    assert f"process {other.pid}'s on {socket.gethostname()}" in taken[0]
    assert checkpointer.checkpoint_now().committed is not None
    assert checkpointer.failures == 0
    assert restored(open_place(kind, place)) == ledger.export_state()


def test_the_checkpointer_never_claims_a_store_its_other_writer_commits_to(
    refused: Refused,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """While the other process keeps committing, each refusal finds a new snapshot:
    however long the refusals go on, the store is not claimed, and its latest
    snapshot stays the other's. The other on another host, whether it runs unknown
    here, is the case claim_after is for: played by saying so in each refusal."""
    kind, place, other, ledger, checkpointer = refused
    watch = checkpointer._quiet
    seen = watch.refused

    def from_another_host(exc: StoreSharedError) -> float | None:
        exc.writer_running = None
        return seen(exc)

    watch.refused = from_another_host  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="statemigrate"):
        for _ in range(4):
            refuse(checkpointer, kind)
            other.commit()
        assert TAKEN not in caplog.text
        assert restored(open_place(kind, place)) == state_after(other.count)
        # Once it stops, the same refusals claim it: they could all along.
        refuse(checkpointer, kind)
        refuse(checkpointer, kind)
    assert TAKEN in caplog.text
    assert checkpointer.checkpoint_now().committed is not None
    assert restored(open_place(kind, place)) == ledger.export_state()


def test_claim_after_none_never_claims_and_a_store_without_writers_has_none_to_claim() -> None:
    """claim_after=None: the refusals go on; a bad value is one ConfigurationError;
    a MemoryStore keeps no one writer, so there is nothing to claim."""
    service, _ = ledger_service()
    checkpointer = Checkpointer(service, MemoryStore(), export="inline", claim_after=None)
    assert checkpointer.claim_after is None
    assert checkpointer.claim() is None
    for bad in (0, -1.0, True, "10m"):
        with pytest.raises(ConfigurationError, match="claim_after"):
            Checkpointer(service, MemoryStore(), claim_after=bad)  # type: ignore[arg-type]
    assert Checkpointer(service, MemoryStore()).claim_after == 600.0


@pytest.mark.slow  # a process of its own, which imports a service
def test_a_new_pod_takes_over_from_an_old_pod_that_committed_after_its_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The rollout that overlapped, with D1 a process of its own: the new pod (D2)
    restores from the prefix, the old one (D1) commits once more and exits. D2's
    checkpoints, refused for that, claim the prefix once they keep finding D1's
    snapshot, and a restart restores D2's state."""
    for refused in refused_by("object", tmp_path, ChildWriter):
        kind, place, other, ledger, checkpointer = refused
        other.stop()
        with caplog.at_level(logging.WARNING, logger="statemigrate"):
            error = refuse(checkpointer, kind)
            assert (error.writer_pid, error.writer_running) == (other.pid, False)
            assert restored(open_place(kind, place)) == state_after(other.count)
            refuse(checkpointer, kind)
        assert f"process {other.pid}'s on {socket.gethostname()}" in caplog.text
        assert checkpointer.checkpoint_now().committed is not None
        assert restored(open_place(kind, place)) == ledger.export_state()
