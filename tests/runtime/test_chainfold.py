"""A checkpoint chain restored through a whole-data step: folded at the versions it was
written at, then migrated as the full snapshot it holds, all or nothing."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
from chain_releases import (
    REFUSED,
    RELEASES,
    SERVICE,
    cache_of,
    release1,
    write_chain,
)
from pydantic import BaseModel, ConfigDict, Field

import statemigrate as sm
from statemigrate._runtime._chain import chain_frame, split_chain
from statemigrate._snapshot._encode import SectionInput, encode_snapshot
from statemigrate._snapshot._format import open_snapshot
from statemigrate._snapshot._header import DeltaBase, Producer
from statemigrate.testing._exact import exact_differences

WHOLE_STEPS = ["drop_note", "int_keys"]


def restored(
    release: str, source: object, *, on_failure: str = "refuse", **options: Any
) -> tuple[sm.Service, Any]:
    """A service of ``release`` (a name of :data:`RELEASES`, or ``"1"``) started from
    ``source``, and its cache."""
    registry = release1() if release == "1" else RELEASES[release]()
    service = sm.Service(
        SERVICE, registry=registry, on_restore_failure=on_failure  # type: ignore[arg-type]
    )
    cache = service.register(cache_of(registry))
    service.start_from(source, **options)  # type: ignore[arg-type]
    return service, cache


def state_of(cache: Any) -> dict[str, Any]:
    """The live state, its dict as a dict (``exact_differences`` checks key order)."""
    fields = {"entries": dict(cache.entries)}
    if "note" in vars(cache):
        fields["note"] = cache.note
    return fields


@pytest.mark.parametrize("release", WHOLE_STEPS)
def test_a_chain_restores_through_a_whole_data_step_as_its_full_snapshot_does(
    release: str,
) -> None:
    """Release 1's chain (a base, then deltas that update, delete and add) restored by
    release 2, whose plan has a whole-data step, gives the state the full snapshot of
    the same state gives: the deltas applied, then every step run on the whole state."""
    written = write_chain()
    assert len(split_chain(written.chain)) == 3
    store = sm.MemoryStore()
    store.commit(written.chain)
    service, from_chain = restored(release, store, allow_lossy=True)
    _, from_full = restored(release, written.full, allow_lossy=True)
    assert exact_differences(state_of(from_full), state_of(from_chain)) == []
    keys = list(from_chain.entries)
    first = {"drop_note": "k1", "int_keys": 1}[release]
    assert keys[0] == first and from_chain.entries[first] == 101  # updated, k0 deleted
    assert len(keys) == 38 and keys[-1] in ("k40", 40)  # 40 - 3 deleted + 1 added
    assert service.status.state == "restored"
    newest = open_snapshot(split_chain(written.chain)[-1]).header
    assert service.status.snapshot_id == newest.snapshot_id


def test_the_fold_is_said_in_one_info_line(caplog: pytest.LogCaptureFixture) -> None:
    written = write_chain()
    with caplog.at_level(logging.INFO, logger="statemigrate"):
        restored("drop_note", written.chain, allow_lossy=True)
    folding = [r for r in caplog.records if "folding" in r.getMessage()]
    assert len(folding) == 1 and folding[0].levelno == logging.INFO
    message = folding[0].getMessage()
    assert "its full snapshot (gen 1) and 2 deltas" in message, message
    assert message.endswith("cache/default (step cache 1 -> 2 (drop note))"), message


def test_a_chain_whose_deltas_the_plan_migrates_is_not_folded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Without a whole-data step the deltas are applied as they are: no fold."""
    written = write_chain()
    with caplog.at_level(logging.INFO, logger="statemigrate"):
        service, from_chain = restored("1", written.chain)
    _, from_full = restored("1", written.full)
    assert "folding" not in caplog.text
    assert exact_differences(state_of(from_full), state_of(from_chain)) == []
    assert service.accepts_deltas


def test_a_chain_restores_into_a_component_that_now_imports_whole_states_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The new release gives the cache its own ``export_state``/``import_state`` and no
    records protocol: it cannot take a delta, so the chain is folded for it too."""
    written = write_chain()
    registry = release1()

    @registry.migratable("cache", version=1)
    class Custom:
        def __init__(self) -> None:
            self.state: Any = None

        def export_state(self) -> Any:
            return self.state

        def import_state(self, state: Any) -> None:
            self.state = state

    expected = sm.Service(SERVICE, registry=release1())
    full = expected.register(cache_of(release1()))
    expected.restore(written.full)
    service = sm.Service(SERVICE, registry=registry)
    custom = service.register(Custom())
    with caplog.at_level(logging.INFO, logger="statemigrate"):
        service.restore(written.chain)
    assert exact_differences(state_of(full), custom.state) == []
    assert "cache/default (its own import_state, no import_records)" in caplog.text


def test_restoring_a_folded_chain_twice_is_restoring_it_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    written = write_chain()
    service, cache = restored("int_keys", written.chain)
    once = state_of(cache)
    with caplog.at_level(logging.INFO, logger="statemigrate"):
        again = service.restore(written.chain)
    assert again.skipped
    assert "folding" not in caplog.text  # nothing composed for a restore skipped
    assert exact_differences(once, state_of(cache)) == []
    assert not service.accepts_deltas  # the plan has a whole-data step


def test_restoring_a_chain_twice_is_restoring_it_once() -> None:
    """Not folded: its base, older than the delta restored last, was refused as a
    replay the second time; the chain is now skipped as restored already."""
    written = write_chain()
    service, cache = restored("1", written.chain)
    once = state_of(cache)
    again = service.restore(written.chain)
    assert again.skipped
    assert exact_differences(once, state_of(cache)) == []


def test_a_step_that_fails_on_the_folded_state_leaves_every_component_as_it_was() -> None:
    """The step raises on a value only the chain's last delta wrote, so it fails on the
    folded state, after the fold: the restore fails in migrate, naming the step, and the
    live cache is exactly as it was, the same objects."""
    written = write_chain(refused_value=True)
    registry = RELEASES["refusing"]()
    service = sm.Service(SERVICE, registry=registry)
    cache = service.register(cache_of(registry))
    cache.entries.update({7: 1, 3: 2})
    cache.note = "live"
    entries = cache.entries
    before = state_of(cache)
    with pytest.raises(sm.RestoreError) as caught:
        service.restore(written.chain)
    error = caught.value
    assert (error.phase, error.step, error.rollback_failed) == (
        "migrate", "cache 1 -> 2 (int_keys)", ()
    )
    assert f"a value of {REFUSED}" in str(error)
    assert cache.entries is entries
    assert exact_differences(before, state_of(cache)) == []
    assert service.status.state == "failed"


def test_start_from_a_chain_that_fails_on_its_folded_state_starts_cold_and_keeps_it(
    tmp_path: Any,
) -> None:
    written = write_chain(refused_value=True)
    store = sm.TmpfsStore(tmp_path / "store")
    store.commit(written.chain)
    service, cache = restored("refusing", store, on_failure="serve_cold")
    assert service.status.state == "cold_start"
    assert len(cache.entries) == 0
    assert (tmp_path / "store" / "unrestored").read_bytes() == written.chain


def _piece(data: object, *, base: DeltaBase | None) -> bytes:
    schema = release1().schema_for("cache", 1)
    return encode_snapshot(
        [SectionInput("cache", "default", 1, schema.fingerprint, data)],
        producer=Producer.current(SERVICE),
        generation=1 if base is None else base.generation + 1,
        base=base,
    ).to_bytes()


def test_a_chain_that_cannot_be_folded_fails_in_decode_with_nothing_touched() -> None:
    """A sound, linked chain whose delta no plain state can take (a deleted key that is
    a list) fails before any piece is restored, naming the piece and the section."""
    base = _piece({"entries": {"k1": 1}, "note": ""}, base=None)
    header = open_snapshot(base).header
    link = DeltaBase(snapshot_id=header.snapshot_id, generation=header.generation)
    delta = _piece({"state": {"entries": {}, "note": ""}, "deleted": {"entries": [[1]]}}, base=link)
    chain = chain_frame([len(base), len(delta)]) + base + delta
    registry = RELEASES["int_keys"]()
    service = sm.Service(SERVICE, registry=registry)
    cache = service.register(cache_of(registry))
    cache.entries[5] = 5
    with pytest.raises(sm.RestoreError) as caught:
        service.restore(chain)
    assert caught.value.phase == "decode"
    assert "checkpoint chain piece 1 cannot be composed" in str(caught.value)
    assert "a deleted key of record field 'entries' is a list" in str(caught.value)
    assert "cache/default" in str(caught.value)
    assert dict(cache.entries) == {5: 5}
    assert service.status.state == "failed"


class _Prices(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    prices: dict[float, int]
    label: str = Field(alias="Label")


class _PricesTotalled(_Prices):
    total: int


def _prices_release(version: int) -> tuple[sm.Registry, type]:
    registry = sm.Registry()
    registry.add_schema("prices", 1, _Prices)
    if version == 2:
        registry.add_schema("prices", 2, _PricesTotalled)

        def add_total(state: dict[str, Any]) -> dict[str, Any]:
            return {**state, "total": sum(state["prices"].values())}

        registry.add_migration("prices", 1, 2, add_total, name="add_total")  # whole-data

    @registry.migratable("prices", version=version)
    class Prices:
        def __init__(self) -> None:
            self.prices: sm.TrackedDict[float, int] = sm.TrackedDict()
            self.label = ""
            self.total = 0

    return registry, Prices


def test_a_chain_fingerprinted_by_aliases_folds_with_its_keys_matched_by_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A release that hashed fields' aliases wrote the chain; its delta deletes the key
    ``-0.0``, which the base holds as ``0.0``. Folded by the next release, the key types
    are this schema's all the same: the deletion must match by value, not by text (the
    record came back)."""
    from statemigrate._model import _schema
    from statemigrate._model._jsonschema import validation_schema as by_name

    monkeypatch.setattr(
        _schema, "validation_schema", lambda adapter, by_alias=True: by_name(adapter, by_alias=True)
    )
    registry, holder = _prices_release(1)
    writer = sm.Service("prices", registry=registry)
    live = writer.register(holder())
    writer.start_cold("a new table")
    store = sm.MemoryStore()
    checkpointer = sm.Checkpointer(writer, store, quiesce=threading.Lock(), incremental=True)
    live.prices.update((float(i), i) for i in range(50))
    checkpointer.checkpoint_now()
    del live.prices[-0.0]
    checkpointer.checkpoint_now()
    chain = bytes(store.open())
    monkeypatch.undo()
    registry, holder = _prices_release(2)
    service = sm.Service("prices", registry=registry)
    folded = service.register(holder())
    service.restore(chain)
    assert 0.0 not in folded.prices and len(folded.prices) == 49
