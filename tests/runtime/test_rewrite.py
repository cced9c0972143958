"""migrate_snapshot and verify_snapshot (``_runtime/_rewrite``): they refuse what a
restore refuses whatever the sections hold, a generation past counting."""

from __future__ import annotations

import pytest
from golden import reseal, split

import statemigrate as sm
from statemigrate._runtime._restoresource import GENERATION_LIMIT
from statemigrate._runtime._rewrite import verify_snapshot
from statemigrate.reference import KVCacheV3, build_registry


@pytest.mark.parametrize("generation", [GENERATION_LIMIT, GENERATION_LIMIT + 1])
def test_a_generation_a_restore_refuses_is_refused(generation: int) -> None:
    service = sm.Service("gateway", registry=build_registry())
    service.register(KVCacheV3())
    header, chunks = split(service.snapshot()[0].to_bytes())
    header["generation"] = generation
    forged = sm.open_snapshot(reseal(header, chunks))
    with pytest.raises(sm.RestoreError, match="beyond what counting snapshots reaches"):
        service.restore(reseal(header, chunks))
    said = f"snapshot generation {generation} is beyond what counting snapshots reaches"
    with pytest.raises(sm.SnapshotError, match=said) as refused:
        sm.migrate_snapshot(forged, {"kvcache": 3}, registry=build_registry())
    assert refused.value.kind == "invalid_header"
    with pytest.raises(sm.SnapshotError, match=said):
        verify_snapshot(forged, {}, registry=build_registry())
    header["generation"] = GENERATION_LIMIT - 1
    below = sm.open_snapshot(reseal(header, chunks))
    assert all(v.restores for v in verify_snapshot(below, {}, registry=build_registry()))
