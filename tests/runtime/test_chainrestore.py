"""A checkpoint chain restored into a service that restored before: judged by its newest
piece, restored whole when newer, and rolled back with the service's history when a
piece fails."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from chain_releases import REFUSED, SERVICE, CacheV1, cache_of, release1, write_chain
from pydantic import AfterValidator
from typing_extensions import TypedDict

import statemigrate as sm
from statemigrate._runtime._chain import split_chain
from statemigrate.testing._exact import exact_differences

_failing = {"on": False}


def _refuse_while_failing(value: int) -> int:
    if _failing["on"] and value == REFUSED:
        raise ValueError("refused for the test while failing")
    return value


class CacheChecked(TypedDict):
    entries: dict[str, Annotated[int, AfterValidator(_refuse_while_failing)]]
    note: str


def checked_release() -> sm.Registry:
    """Release 1 whose validation refuses :data:`REFUSED` while ``_failing`` is on: a
    failure that is gone when the restore is tried again."""
    registry = sm.Registry()
    registry.add_schema("cache", 1, CacheChecked)
    return registry


def service_of(registry: sm.Registry) -> tuple[sm.Service, Any]:
    service = sm.Service(SERVICE, registry=registry)
    return service, service.register(cache_of(registry))


def expected_state(chain: bytes) -> dict[str, Any]:
    service, cache = service_of(release1())
    service.restore(chain)
    return state_of(cache)


def state_of(cache: Any) -> dict[str, Any]:
    return {"entries": dict(cache.entries), "note": cache.note}


@pytest.fixture
def failing() -> Any:
    _failing["on"] = True
    yield
    _failing["on"] = False


def test_a_chain_that_failed_at_its_last_delta_restores_whole_when_tried_again(
    failing: None,
) -> None:
    """The base and the first delta were restored, then rolled back with the failure of
    the last: the service's history must say so. It claimed the first delta, and the
    retry applied the last delta alone to the empty cache (one entry of 38)."""
    written = write_chain(refused_value=True)
    service, cache = service_of(checked_release())
    with pytest.raises(sm.RestoreError, match="refused for the test"):
        service.restore(written.chain)
    assert state_of(cache) == {"entries": {}, "note": ""}
    _failing["on"] = False
    report = service.restore(written.chain)
    assert not report.skipped
    assert exact_differences(expected_state(written.chain), state_of(cache)) == []


def test_after_a_chain_rolled_back_its_base_is_no_replay(failing: None) -> None:
    """The rolled-back chain's generations are not the service's: its own base, older
    than the delta that failed, restores."""
    written = write_chain(refused_value=True)
    service, cache = service_of(checked_release())
    with pytest.raises(sm.RestoreError):
        service.restore(written.chain)
    base = bytes(split_chain(written.chain)[0])
    service.restore(base)
    assert len(cache.entries) == 40 and cache.note == "base"


def test_a_grown_chain_replaces_writes_made_since_the_shorter_one() -> None:
    """The service restored the chain one delta short, then wrote to its cache. The
    grown chain is newer: it restores whole, as a newer full snapshot does, where
    applying its new delta alone kept the local write and the entry it deleted."""
    written = write_chain()
    service, cache = service_of(release1())
    service.restore(written.shorter)
    cache.entries["local"] = 1
    cache.entries.pop("k5")
    report = service.restore(written.chain)
    assert report.delta and not report.skipped
    assert exact_differences(expected_state(written.chain), state_of(cache)) == []


def test_a_chain_grown_from_its_base_alone_replaces_writes_made_since() -> None:
    """An incremental checkpointer's first chain is its base alone. A service that
    restored it, then wrote, restores the grown chain whole: its base was skipped as
    restored already, and the delta applied on top of the local writes."""
    written = write_chain()
    assert len(split_chain(written.base_alone)) == 1
    service, cache = service_of(release1())
    service.restore(written.base_alone)
    cache.entries["local"] = 1
    cache.entries.pop("k5")
    service.restore(written.shorter)
    assert exact_differences(expected_state(written.shorter), state_of(cache)) == []


def test_a_chain_restored_again_with_force_restores_again() -> None:
    """``force`` asks for every component again, as it does of a snapshot: the chain
    restores whole over a local write (it was refused as a replay of its own base)."""
    written = write_chain()
    service, cache = service_of(release1())
    service.restore(written.chain)
    cache.entries["local"] = 1
    report = service.restore(written.chain, force=True)
    assert not report.skipped
    assert exact_differences(expected_state(written.chain), state_of(cache)) == []


def test_an_older_chain_is_still_a_replay() -> None:
    """A chain no newer than what the service restored (its shorter form, after the
    whole) is refused as a replay of its base, and nothing changes."""
    written = write_chain()
    service, cache = service_of(release1())
    service.restore(written.chain)
    before = state_of(cache)
    with pytest.raises(sm.RestoreError, match="a replay"):
        service.restore(written.shorter)
    assert exact_differences(before, state_of(cache)) == []


def test_a_chain_is_refused_when_a_components_state_cannot_be_read() -> None:
    """What each component holds is read before the chain, to put back if a piece
    fails; an export_state that raises there escaped raw. It is refused in ``apply``
    before any piece is applied, as a single snapshot's restore refuses it."""
    written = write_chain()
    registry = release1()
    registry.add_schema("broken", 1, CacheV1)

    @registry.migratable("broken", version=1)
    class Broken:
        def export_state(self) -> Any:
            raise RuntimeError("export boom")

        def import_state(self, state: Any) -> None:
            raise AssertionError("nothing is imported")

    service, cache = service_of(registry)
    service.register(Broken())
    with pytest.raises(sm.RestoreError) as caught:
        service.restore(written.chain)
    error = caught.value
    assert (error.phase, error.component) == ("apply", "broken/default")
    assert isinstance(error.__cause__, RuntimeError)
    assert "cannot read the current state, which a rollback would need" in str(error)
    assert state_of(cache) == {"entries": {}, "note": ""}
    assert service.status.state == "failed"
