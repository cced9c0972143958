"""Model-based test of a service: mutate, snapshot, corrupt, restore, fail; live == model."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from restore_children.components import (
    Counters,
    FailingKV,
    Failpoints,
    Fault,
    InjectedFault,
    build_registry,
    canonical,
    exports,
    validation_failpoint,
)

import statemigrate._runtime._restore as restore_module
from statemigrate import RestoreError, Service, SnapshotError

NOW = 1_000.0
keys = st.sampled_from(["a", "b", "c", "d"])
names = st.sampled_from(["x", "y", "z"])


@dataclass(frozen=True)
class Taken:
    """A snapshot the machine took, and what restoring it must give."""

    blob: bytes
    snapshot_id: str
    generation: int
    model: dict[str, Any]
    steps: int
    """How many migration steps restoring it runs (0 for a snapshot at live versions)."""


def lose(model: dict[str, Any], version: int) -> dict[str, Any]:
    """The model after a round trip through kvcache ``version`` (lossy downgrades)."""
    result = copy.deepcopy(model)
    for entry in result["kv"].values():
        entry["hits"] = 0
        if version == 1:
            entry["expires_at"] = None
    return result


class RestoreMachine(RuleBasedStateMachine):
    """One service (kvcache 3 and counters 2) against a plain model of its state.

    The model also tracks what the service must skip (the snapshot restored last) and
    refuse (a generation older than the last restored) so restores are checked exactly.
    """

    snapshots = Bundle("snapshots")

    def __init__(self) -> None:
        super().__init__()
        self.fail = Failpoints()
        registry = build_registry(self.fail)
        self.service = Service("stateful", registry=registry)
        self.kv = FailingKV(fail=self.fail)
        self.kv.clock = lambda: NOW
        self.counters = Counters(fail=self.fail)
        self.service.register(self.kv)
        self.service.register(self.counters)
        self.model: dict[str, Any] = {"kv": {}, "counts": {}}
        self.last_restored: str | None = None
        self.restored_generation: int | None = None
        self.generation = 0

    # --- mutations ------------------------------------------------------------------

    @rule(key=keys, value=st.text(max_size=3), ttl=st.none() | st.floats(1, 1e6))
    def set(self, key: str, value: str, ttl: float | None) -> None:
        self.kv.set(key, value, ttl=ttl)
        deadline = None if ttl is None else NOW + ttl
        self.model["kv"][key] = {"data": value, "expires_at": deadline, "hits": 0}

    @rule(key=keys)
    def get(self, key: str) -> None:
        entry = self.model["kv"].get(key)
        assert self.kv.get(key) == (None if entry is None else entry["data"])
        if entry is not None:
            entry["hits"] += 1

    @rule(key=keys)
    def delete(self, key: str) -> None:
        assert self.kv.delete(key) == (self.model["kv"].pop(key, None) is not None)

    @rule(name=names, by=st.integers(1, 1_000))
    def bump(self, name: str, by: int) -> None:
        self.counters.bump(name, by)
        self.model["counts"][name] = self.model["counts"].get(name, 0) + by

    # --- snapshots ------------------------------------------------------------------

    def _taken(self, *, version: int) -> Taken:
        targets = {} if version == 3 else {"kvcache": version}
        encoded, report = self.service.snapshot(targets=targets, allow_lossy=True)
        # Generations grow with every snapshot and never fall behind a restored one.
        assert report.generation == self.generation + 1
        self.generation = report.generation
        model = copy.deepcopy(self.model) if version == 3 else lose(self.model, version)
        steps = {3: 0, 2: 1, 1: 1}[version]  # back up: add_hits, or upgrade_1_to_3
        return Taken(encoded.to_bytes(), report.snapshot_id, report.generation, model, steps)

    @initialize(target=snapshots)
    def first_snapshot(self) -> Taken:
        return self._taken(version=3)

    @rule(target=snapshots)
    def snapshot(self) -> Taken:
        return self._taken(version=3)

    @rule(target=snapshots, version=st.sampled_from([1, 2]))
    def migrate(self, version: int) -> Taken:
        """Snapshot for older code (a downgrade written out, as a rollback would)."""
        return self._taken(version=version)

    # --- restores -------------------------------------------------------------------

    def _expect_restore(self, taken: Taken, *, allow_older: bool) -> None:
        if taken.snapshot_id == self.last_restored:
            assert self.service.restore(taken.blob, allow_older=allow_older).skipped
            return
        newest = self.restored_generation
        if newest is not None and taken.generation < newest and not allow_older:
            before = exports(self.service)
            with pytest.raises(RestoreError) as caught:
                self.service.restore(taken.blob)
            assert caught.value.phase == "verify"
            assert "older" in str(caught.value)
            assert exports(self.service) == before
            return
        report = self.service.restore(taken.blob, allow_older=allow_older)
        assert not report.skipped
        assert sum(len(c.steps) for c in report.components) == taken.steps
        self._restored(taken)

    def _restored(self, taken: Taken) -> None:
        self.model = copy.deepcopy(taken.model)
        self.last_restored = taken.snapshot_id
        self.restored_generation = taken.generation
        self.generation = max(self.generation, taken.generation)

    @rule(taken=snapshots, allow_older=st.booleans())
    def restore(self, taken: Taken, allow_older: bool) -> None:
        self._expect_restore(taken, allow_older=allow_older)

    @rule(taken=snapshots)
    def restore_twice(self, taken: Taken) -> None:
        self._expect_restore(taken, allow_older=True)
        once = exports(self.service)
        assert self.service.restore(taken.blob, allow_older=True).skipped
        assert exports(self.service) == once

    @rule(taken=snapshots, data=st.data())
    def corrupt(self, taken: Taken, data: st.DataObject) -> None:
        blob = bytearray(taken.blob)
        if data.draw(st.booleans(), label="truncate"):
            damaged = bytes(blob[: data.draw(st.integers(0, len(blob) - 1), label="length")])
        else:
            at = data.draw(st.integers(0, len(blob) - 1), label="at")
            blob[at] ^= 1 << data.draw(st.integers(0, 7), label="bit")
            damaged = bytes(blob)
        before = exports(self.service)
        with pytest.raises(RestoreError) as caught:
            self.service.restore(damaged, force=True, allow_older=True)
        assert caught.value.phase == "verify"
        assert isinstance(caught.value.__cause__, SnapshotError)
        assert exports(self.service) == before

    @rule(
        taken=snapshots,
        site=st.sampled_from(["step", "validate", "import"]),
        index=st.integers(0, 1),
        exc=st.sampled_from([ValueError, MemoryError, KeyboardInterrupt]),
        when=st.sampled_from(["before", "after"]),
        persistent=st.booleans(),
    )
    def fail_step(
        self,
        taken: Taken,
        site: Any,
        index: int,
        exc: type[BaseException],
        when: Any,
        persistent: bool,
    ) -> None:
        """A restore that fails anywhere leaves the service as it was."""
        if site == "step":
            if taken.steps == 0:
                return  # nothing to fail: a snapshot at the live versions runs no step
            index = 0
        fault = Fault(InjectedFault if site == "validate" and exc is ValueError else exc, when)
        before = exports(self.service)
        self.fail.arm(site, index, fault, persistent=persistent)
        try:
            with pytest.MonkeyPatch.context() as patch, validation_failpoint(patch, self.fail):
                with pytest.raises((RestoreError, KeyboardInterrupt)) as caught:
                    self.service.restore(taken.blob, force=True, allow_older=True)
        finally:
            self.fail.disarm()
        if isinstance(caught.value, RestoreError):
            phase = {"step": "migrate", "validate": "validate", "import": "apply"}[site]
            assert caught.value.phase == phase
        assert exports(self.service) == before, "a failed restore changed the live state"

    # --- the invariant --------------------------------------------------------------

    @invariant()
    def live_state_equals_the_model(self) -> None:
        entries = self.model["kv"]
        counts = self.model["counts"]
        assert exports(self.service) == {
            "kvcache/default": canonical({"entries": entries}),
            "counters/default": canonical({"counts": counts, "total": sum(counts.values())}),
        }


RestoreMachine.TestCase.settings = settings(stateful_step_count=50)
TestRestoreMachine = pytest.mark.slow(RestoreMachine.TestCase)


def test_negative_control_a_rollback_that_does_nothing_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With rollback disabled, the machine finds a failed restore that left a component
    changed (no shrinking: the first failure is enough)."""
    monkeypatch.setattr(restore_module, "_roll_back", lambda staged, before: ([], None))
    with pytest.raises(AssertionError, match="a failed restore changed the live state"):
        run_state_machine_as_test(
            RestoreMachine,
            settings=settings(
                max_examples=500,  # a ceiling; the fixed seed finds it in far fewer
                stateful_step_count=50,
                derandomize=True,
                database=None,
                phases=[Phase.generate],
            ),
        )
