"""Restoring at start-up: from an object store an unreadable pointer is waited for
once, and a kept unrestored generation is said after a restore; a newer release's
snapshot is refused with the way out."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import pytest
from _store_helpers.fault_server import hung_server
from restore_children.components import build_registry

from statemigrate import RestoreError, Service, StateMigrateError
from statemigrate.reference import KVCacheV1
from statemigrate.stores import ObjectStore, TmpfsStore

REGISTRY = build_registry()


def cache_service() -> Service:
    service = Service("svc", registry=REGISTRY, on_restore_failure="serve_cold")
    service.register(KVCacheV1())
    return service


def test_a_hung_store_is_waited_for_once(caplog: pytest.LogCaptureFixture) -> None:
    """The pointer names the latest snapshot and the one before it alike: when its
    read gets no answer, the start goes on cold without asking for it again (it used
    to wait a second deadline for the same pointer, for ``previous``)."""
    with hung_server() as server:
        store = ObjectStore(
            "s3://snapshots/app",
            config={
                "endpoint": server.endpoint,
                "access_key_id": "testing",
                "secret_access_key": "testing",
                "region": "us-east-1",
            },
            client_options={"allow_http": True},
            # The deadline of a request that is never answered, short so that the
            # test does not wait long; the test asserts no time.
            timeout=0.5,
            retries=0,
            warn_after=None,
        )
        service = cache_service()
        caplog.set_level(logging.INFO, logger="statemigrate")
        assert service.start_from(store) is None
        requests = list(server.request_lines)
    assert [line.split()[0] for line in requests] == ["GET"]
    assert requests[0].split()[1].endswith("/app/current")
    assert service.status.state == "cold_start"
    reason = service.status.reason or ""
    assert "the previous snapshot cannot be read either: nothing to fall back to" in reason


def test_a_restore_beside_an_unrestored_generation_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Rolling forward after a rollback that started cold: the start restores the cold
    state in ``current`` and warns, once, of the generation kept as unrestored, with
    the commands to inspect, restore and let it go (it used to say nothing)."""
    store = ObjectStore("memory://")
    store.commit(b"not a snapshot this release reads")
    cold = cache_service()
    assert cold.start_from(store) is None  # keeps generation 1 as unrestored
    cold.commit(store)
    cold.commit(store)
    caplog.clear()
    caplog.set_level(logging.INFO, logger="statemigrate")
    again = cache_service()
    assert again.start_from(store) is not None
    assert again.status.state == "restored"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    [warning] = warnings
    assert warning.startswith("memory:// still keeps generation 1 as unrestored")
    assert "`statemigrate inspect memory://#1 --verify`" in warning
    assert "`service.restore(store.ref(1))`" in warning
    assert "`statemigrate forget-unrestored memory://`" in warning


def test_the_snapshot_a_start_fell_back_to_stays_the_one_to_fall_back_to(
    tmp_path: Path,
) -> None:
    """The latest snapshot cannot be restored, the one before it is: the service goes
    on from that one. Its next checkpoint must keep that one as previous, not the
    latest that cannot be restored (kept aside as unrestored): a start after a
    checkpoint damaged in turn falls back to the state the service had."""
    store = TmpfsStore(tmp_path / "store")
    writer = cache_service()
    writer.commit(store)
    good = bytes(store.open())
    store.commit(b"not a snapshot")  # a damaged latest
    restarted = cache_service()
    assert restarted.start_from(store) is not None
    restarted.commit(store)
    assert bytes(store.open_previous()) == good
    store.commit(b"damaged again")
    assert cache_service().start_from(store) is not None  # from the good one
    store.close()


def test_a_restore_with_nothing_kept_says_nothing_more(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The warning is for a kept generation only: a plain restart logs no WARNING."""
    store = ObjectStore("memory://")
    cache_service().commit(store)
    caplog.set_level(logging.INFO, logger="statemigrate")
    assert cache_service().start_from(store) is not None
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_a_store_that_read_nothing_does_not_claim_to_keep_a_snapshot(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Wrong keys (or a missing bucket): nothing was read, so the start does not say it
    keeps "the snapshot that failed to restore" (it used to); the error says why."""
    from statemigrate import StoreError
    from statemigrate.stores._object_backend import Backend

    def denied(self: Backend, name: str, *, limit: int) -> object:
        raise StoreError("open", self.where(name), "access denied (AccessDenied)")

    monkeypatch.setattr(Backend, "get_small", denied)
    caplog.set_level(logging.INFO, logger="statemigrate")
    service = cache_service()
    assert service.start_from(ObjectStore("memory://")) is None
    assert service.status.state == "cold_start"
    assert "access denied" in (service.status.reason or "")
    assert "keeping the snapshot that failed to restore" not in caplog.text


def test_a_damaged_pointer_names_its_repair(caplog: pytest.LogCaptureFixture) -> None:
    """A damaged pointer starts the service cold and fails every checkpoint until it is
    deleted: the start's reason and the checkpoint's failure both say that deleting
    it is the repair (they used to name the damage alone)."""
    import obstore

    from statemigrate import Checkpointer, StoreError

    store = ObjectStore("memory://")
    cache_service().commit(store)
    obstore.put(store._backend.store, store._backend.key("current"), b'{"format": "statemig')
    service = cache_service()
    assert service.start_from(store) is None
    assert "delete it to repair" in (service.status.reason or "")
    caplog.set_level(logging.INFO, logger="statemigrate")
    with pytest.raises(StoreError, match="is not a valid pointer") as caught:
        Checkpointer(service, store, every=60.0).checkpoint_now(force=True)
    assert "delete it to repair" in str(caught.value)
    said = [r.getMessage() for r in caplog.records if "not a valid pointer" in r.getMessage()]
    assert all("delete it to repair" in line for line in said)


def _newer_release_s_commit(store: Any) -> None:
    from statemigrate.reference import KVCacheV2
    from statemigrate.reference import build_registry as full_registry

    newer = Service("svc", registry=full_registry())
    newer.register(KVCacheV2())
    newer.commit(store)


def _release_1() -> Any:
    """Release 1's registry: kvcache version 1 alone, which cannot read version 2."""
    from statemigrate import Registry
    from statemigrate.reference._schemas import COMPONENT, SCHEMAS

    registry = Registry()
    registry.add_schema(COMPONENT, 1, SCHEMAS[1])
    return registry


@pytest.mark.parametrize("policy", ["refuse", "serve_cold"])
def test_a_newer_release_s_snapshot_is_refused_with_the_way_out(
    policy: Literal["refuse", "serve_cold"],
) -> None:
    """The way out in the start-up's own error, whatever the server: start the release
    that wrote the snapshot, or fold it back with ``statemigrate migrate``."""
    from statemigrate.stores import MemoryStore

    store = MemoryStore()
    _newer_release_s_commit(store)
    older = Service("svc", registry=_release_1(), on_restore_failure=policy)
    older.register(KVCacheV1())
    way_out = (
        "; a newer release wrote it ('kvcache' version 2; this release reads up to 1):"
        " start the release that wrote it, or fold it back for this one with that"
        " release's registry: `statemigrate migrate SNAPSHOT -o OUT --to kvcache=1"
        " --allow-lossy-for kvcache --registry MODULE:NAME` (docs/cli.md), and start from OUT"
    )
    if policy == "refuse":
        with pytest.raises(RestoreError) as raised:
            older.start_from(store)
        message = str(raised.value)
        assert raised.value.way_out is not None
        assert isinstance(raised.value.__cause__, StateMigrateError)
    else:
        assert older.start_from(store) is None
        message = older.status.reason or ""
    assert message.endswith(way_out), message
    assert message.count("a newer release wrote it") == 1


def test_an_older_release_s_snapshot_that_fails_names_no_newer_release() -> None:
    from statemigrate.stores import MemoryStore

    store = MemoryStore()
    store.commit(b"not a snapshot")
    older = Service("svc", registry=REGISTRY)
    older.register(KVCacheV1())
    with pytest.raises(RestoreError) as raised:
        older.start_from(store)
    assert raised.value.way_out is None
    assert "newer release" not in str(raised.value)


def test_a_cold_start_after_a_failed_restore_says_the_way_out_at_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The state is not restored: the line that says so, with the way out, is a
    WARNING, seen where INFO is not logged. A start with no snapshot says it at INFO."""
    from statemigrate.stores import MemoryStore

    store = MemoryStore()
    _newer_release_s_commit(store)
    older = Service("svc", registry=_release_1(), on_restore_failure="serve_cold")
    older.register(KVCacheV1())
    caplog.set_level(logging.INFO, logger="statemigrate")
    assert older.start_from(store) is None
    (cold,) = [r for r in caplog.records if "starts cold" in r.getMessage()]
    assert cold.levelno == logging.WARNING and "statemigrate migrate" in cold.getMessage()
    caplog.clear()
    fresh = Service("svc", registry=_release_1(), on_restore_failure="serve_cold")
    fresh.register(KVCacheV1())
    assert fresh.start_from(MemoryStore()) is None
    (cold,) = [r for r in caplog.records if "starts cold" in r.getMessage()]
    assert cold.levelno == logging.INFO
