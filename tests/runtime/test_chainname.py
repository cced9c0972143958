"""A checkpoint chain whose restore fails is named as ``statemigrate inspect`` names it,
by its newest piece and its base, with the piece that failed: in the error raised, the
ERROR line logged and the status, whichever piece failed; a snapshot's failure is
worded as before."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import pytest
from _store_helpers import scratch_dir
from chain_releases import REFUSED, SERVICE, cache_of, refusing, write_chain
from pydantic import AfterValidator
from typing_extensions import TypedDict

import statemigrate as sm
from statemigrate._runtime._chain import chain_frame, split_chain
from statemigrate._runtime._chainread import open_chain
from statemigrate.cli._inspect import describe_chain

_refused = {"value": REFUSED}


def _refuse(value: int) -> int:
    if value == _refused["value"]:
        raise ValueError("refused for the test")
    return value


class CacheChecked(TypedDict):
    entries: dict[str, Annotated[int, AfterValidator(_refuse)]]
    note: str


def checked() -> sm.Registry:
    """Release 1 whose validation refuses the value ``_refused`` names: 0 is in the
    chain's base, :data:`REFUSED` only in its last delta."""
    registry = sm.Registry()
    registry.add_schema("cache", 1, CacheChecked)
    return registry


@pytest.fixture
def refused_in_base() -> Iterator[None]:
    _refused["value"] = 0
    yield
    _refused["value"] = REFUSED


def as_inspect_shows(chain: bytes) -> tuple[str, str, int]:
    """The newest piece's id, the base's, and the count of pieces, as ``inspect``
    prints them."""
    opened = open_chain(chain)
    statuses = [["digest ok"] * len(piece.header.sections) for piece in opened.pieces]
    info = describe_chain(opened, statuses)
    pieces = info["pieces"]
    return info["snapshot_id"], pieces[0]["snapshot_id"], len(pieces)


def expected_name(chain: bytes) -> str:
    newest, base, count = as_inspect_shows(chain)
    return (
        f"checkpoint chain {newest[:12]} gen {count} (base {base[:12]} gen 1, {count} pieces)"
    )


def failed_restore(
    chain: bytes, registry: sm.Registry, caplog: pytest.LogCaptureFixture
) -> tuple[sm.RestoreError, list[str]]:
    """The error of a restore of ``chain`` into a new service of ``registry``, and the
    ERROR lines it logged."""
    service = sm.Service(SERVICE, registry=registry)
    service.register(cache_of(registry))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="statemigrate"), pytest.raises(
        sm.RestoreError
    ) as info:
        service.restore(chain)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    return info.value, errors


def test_a_base_that_fails_names_the_chain_by_its_newest_piece(
    refused_in_base: None, caplog: pytest.LogCaptureFixture
) -> None:
    chain = write_chain().chain
    newest, base, _ = as_inspect_shows(chain)
    error, errors = failed_restore(chain, checked(), caplog)
    assert str(error).startswith(f"restore of {expected_name(chain)} failed at piece 0 during")
    assert newest[:12] in str(error) and base[:12] in str(error)
    assert (error.restoring, error.piece, error.phase) == (expected_name(chain), 0, "validate")
    assert error.component == "cache/default"
    assert "refused for the test" in error.detail
    assert errors == [str(error)]  # the one ERROR line is the error itself
    assert isinstance(error.__cause__, Exception) and "refused for the test" in str(
        error.__cause__
    )


def test_a_delta_that_fails_names_the_chain_and_the_piece(
    caplog: pytest.LogCaptureFixture,
) -> None:
    chain = write_chain(refused_value=True).chain
    error, errors = failed_restore(chain, checked(), caplog)
    assert str(error).startswith(f"restore of {expected_name(chain)} failed at piece 2 during")
    assert error.piece == 2
    assert errors == [str(error)]


def test_a_folded_chain_that_fails_names_the_chain(caplog: pytest.LogCaptureFixture) -> None:
    """Folded into one snapshot (a whole-data step), the chain has no piece to name."""
    chain = write_chain(refused_value=True).chain
    error, errors = failed_restore(chain, refusing(), caplog)
    assert str(error).startswith(f"restore of {expected_name(chain)} failed during migrate")
    assert error.piece is None
    assert errors == [str(error)]


def test_a_broken_chain_is_refused_naming_it(caplog: pytest.LogCaptureFixture) -> None:
    """Its base and last delta, the delta between them missing: refused at
    verification, named as ``inspect`` names the same bytes."""
    pieces = [bytes(piece) for piece in split_chain(write_chain().chain)]
    gapped = chain_frame([len(pieces[0]), len(pieces[2])]) + pieces[0] + pieces[2]
    newest, base, count = as_inspect_shows(gapped)
    error, errors = failed_restore(gapped, checked(), caplog)
    assert str(error).startswith(
        f"restore of checkpoint chain {newest[:12]} gen 3 (base {base[:12]} gen 1,"
        f" {count} pieces) failed during verify: checkpoint chain piece 1 does not follow"
    )
    assert errors == [str(error)]


def test_a_start_that_cannot_restore_the_chain_says_which_in_its_status(
    refused_in_base: None, caplog: pytest.LogCaptureFixture
) -> None:
    chain = write_chain().chain
    with scratch_dir() as path:
        store = sm.TmpfsStore(Path(path) / "store")
        store.commit(chain)
        service = sm.Service(SERVICE, registry=checked(), on_restore_failure="serve_cold")
        service.register(cache_of(checked()))
        with caplog.at_level(logging.INFO, logger="statemigrate"):
            assert service.start_from(store) is None
        store.close()
    reason = service.status.reason or ""
    assert reason.startswith(f"restore of {expected_name(chain)} failed at piece 0")
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [reason]


def test_a_snapshot_that_fails_is_worded_as_before(
    refused_in_base: None, caplog: pytest.LogCaptureFixture
) -> None:
    _refused["value"] = 7  # k7 is 7 in the full snapshot too (k0 is deleted there)
    full = write_chain().full
    error, errors = failed_restore(full, checked(), caplog)
    assert str(error).startswith("restore failed during validate in cache/default: ")
    assert error.restoring is None and error.piece is None
    snapshot_id = sm.open_snapshot(full).header.snapshot_id
    assert errors == [f"restore of {snapshot_id[:12]} failed: {error}"]


def test_the_error_keeps_its_inputs() -> None:
    error = sm.RestoreError(
        "apply",
        "it broke",
        component="cache/default",
        rollback_failed=["cache/default"],
        restoring="checkpoint chain abc gen 2 (base def gen 1, 2 pieces)",
        piece=1,
    )
    assert str(error) == (
        "restore of checkpoint chain abc gen 2 (base def gen 1, 2 pieces) failed at piece 1"
        " during apply in cache/default: it broke; rollback failed for cache/default"
    )

