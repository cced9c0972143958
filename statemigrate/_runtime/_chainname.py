"""A checkpoint chain named in the errors and log lines of its restore as ``statemigrate
inspect`` names it.

``inspect`` shows a chain by its newest piece's id: the snapshot the chain restores to.
A service restores a chain piece by piece (:mod:`statemigrate._runtime._chainrestore`),
and each piece's restore knows only itself: a failure named the base's id, or a
delta's, not the id ``inspect`` gives the chain. While a chain restores,
:func:`naming_chain` holds its name and the piece being restored, and :func:`named`
makes any piece's :class:`RestoreError` say both: ``restore of checkpoint chain
3fa2c1d09b7e gen 3 (base 9c01e4aa52d8 gen 1, 3 pieces) failed at piece 0 during
validate in ...``. The error is the one the service raises, logs, and puts in its
status and the metrics' reason.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from statemigrate._errors import RestoreError
from statemigrate._snapshot._header import SnapshotHeader

__all__ = ["ChainPieces", "chain_name", "named", "naming_chain"]


def chain_name(headers: Sequence[SnapshotHeader]) -> str:
    """``checkpoint chain <newest id> gen N (base <base id> gen M, P pieces)``, the
    ids shortened to 12 characters as the log lines give them: the newest piece's is
    the one ``inspect`` shows first, and its table the base's."""
    newest, base = headers[-1], headers[0]
    count = len(headers)
    return (
        f"checkpoint chain {newest.snapshot_id[:12]} gen {newest.generation}"
        f" (base {base.snapshot_id[:12]} gen {base.generation},"
        f" {count} piece{'' if count == 1 else 's'})"
    )


@dataclass(slots=True)
class ChainPieces:
    """The chain being restored, and the piece whose restore runs (``None``: none, or
    the chain folded into one snapshot)."""

    name: str
    piece: int | None = None

    def at(self, piece: int | None) -> None:
        """Say that piece ``piece`` (base first) is restored from now on."""
        self.piece = piece


_RESTORING: contextvars.ContextVar[ChainPieces | None] = contextvars.ContextVar(
    "statemigrate_restoring_chain", default=None
)


@contextmanager
def naming_chain(headers: Sequence[SnapshotHeader]) -> Iterator[ChainPieces]:
    """Name the chain with these headers (base first) in the failures of the restores
    made inside (see :func:`named`)."""
    pieces = ChainPieces(chain_name(headers))
    token = _RESTORING.set(pieces)
    try:
        yield pieces
    finally:
        _RESTORING.reset(token)


def named(error: RestoreError) -> RestoreError:
    """``error`` naming the chain being restored and its piece, when a chain is being
    restored and ``error`` names nothing yet; else ``error`` itself. The caller raises
    the copy in ``error``'s place, from ``error``'s cause."""
    chain = _RESTORING.get()
    if chain is None or error.restoring is not None:
        return error
    return RestoreError(
        error.phase,
        error.detail,
        component=error.component,
        step=error.step,
        rollback_failed=error.rollback_failed,
        rollback_unchecked=error.rollback_unchecked,
        restoring=chain.name,
        piece=chain.piece,
        way_out=error.way_out,
    )
