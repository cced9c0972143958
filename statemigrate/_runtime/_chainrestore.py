"""Restoring a checkpoint chain: its base, then each delta in order, as one transaction.

A chain is the state of its newest piece, so it is judged by that piece: restored
already when every component was restored from it; newer than what the service holds
when that piece's generation is above the last one restored. A newer chain restores
whole, its base included, though the base alone is older than what was restored (a
service that restored the same chain when it was shorter, say): applying only the
deltas it lacks would assume the service's state had not changed since, which nothing
can tell. A chain no newer is refused as a replay of its base, unless ``allow_older``.

A piece that fails puts back every component and the service's restore history as
they were before the chain: what a later restore decides from must not claim pieces
that were rolled back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from statemigrate._errors import RestoreError, SnapshotError
from statemigrate._model._allowlossy import AllowLossy
from statemigrate._model._component import component_state, import_component, importable_state
from statemigrate._runtime._chain import split_chain
from statemigrate._runtime._chainfold import fold_chain, fold_reasons
from statemigrate._runtime._chainname import naming_chain
from statemigrate._runtime._chainread import chain_break, open_chain
from statemigrate._runtime._history import STATE_CREATED_NS, SUMMARIES, RestoreHistory
from statemigrate._runtime._report import RestoreReport
from statemigrate._runtime._restore import Registered
from statemigrate._runtime._sources import Fetched
from statemigrate._snapshot._format import DecodeLimits
from statemigrate._snapshot._header import SnapshotHeader

__all__ = ["restore_chain"]

logger = logging.getLogger("statemigrate")


def restore_chain(
    data: bytes | bytearray | memoryview,
    source: object,
    options: Mapping[str, AllowLossy | None],
    *,
    restore: Callable[..., RestoreReport],
    entries: Sequence[Registered],
    key: bytes | None,
    limits: DecodeLimits,
    refused: Callable[..., RestoreError],
    history: RestoreHistory,
) -> RestoreReport:
    """Restore the checkpoint chain ``data`` (read from ``source``) into ``entries``.

    Every piece is verified, and each delta checked to name the piece before it as its
    base, before anything is applied. A chain whose deltas a component's plan cannot
    migrate (a whole-data step) is folded first, and its full state restored (see
    :mod:`statemigrate._runtime._chainfold`). The arguments are those of
    :func:`~statemigrate._runtime._startup.restore_stored`, with ``history`` the
    service's record of what it restored.
    """
    try:
        chain = open_chain(data, key=key, limits=limits)
    except SnapshotError as exc:  # it names the chain, and the piece
        raise refused(str(exc)) from exc
    headers = [piece.header for piece in chain.pieces]
    # From here on, a failure names the chain as `statemigrate inspect` does: by its
    # newest piece, and its base (see _chainname).
    with naming_chain(headers) as naming:
        broken = chain_break(headers)
        if broken is not None:
            raise refused(broken)
        began = time.perf_counter()
        pieces: list[bytes | memoryview] = list(split_chain(data))  # as opened above
        if _restored_already(headers[-1], entries, history, options):
            # Its newest piece says so (its base, older, would be refused as a replay),
            # with nothing folded or applied.
            pieces, reasons = pieces[-1:], []
        else:
            reasons = fold_reasons(
                headers, entries, allow_lossy=options.get("allow_lossy") or False
            )
        if reasons:
            # Deltas some component's plan cannot migrate: the chain is restored as the one
            # full snapshot it holds, composed as `statemigrate migrate` composes it.
            try:
                pieces = [fold_chain(chain, reasons, key=key, entries=entries)]
            except SnapshotError as exc:
                raise refused(str(exc), phase="decode") from exc
        earlier_options = dict(options)
        if _newer(headers[-1], history, options):
            # The base and the deltas before the newest are no replay, and the base puts
            # back every component, those restored from it before included (a service that
            # restored the chain when it was its base alone, and wrote since).
            earlier_options.update(allow_older=True, force=True)
        saved = history.copy()
        live = _live_states(entries, refused)
        # One line for the chain, not one per piece (a chain may hold hundreds): each
        # piece's own line goes to DEBUG, a failing piece's error stays at ERROR.
        quiet = SUMMARIES.set(logging.DEBUG)
        # A folded chain's one snapshot is composed now, from pieces taken long ago: its
        # report says when the newest of them was taken (how old the state restored is).
        taken = STATE_CREATED_NS.set(headers[-1].created_ns if reasons else None)
        # Which piece each restore is, in a failure's message (none for a folded chain).
        first = None if reasons else len(headers) - len(pieces)
        try:
            *earlier, last = pieces
            naming.at(first)
            base = restore(earlier[0], **earlier_options) if earlier else None
            for number, piece in enumerate(earlier[1:], start=1):
                naming.at(None if first is None else first + number)
                restore(piece, **earlier_options)
            naming.at(None if first is None else len(headers) - 1)
            # The chain's download is counted as the read of its last piece, whose timings
            # the report gives.
            if isinstance(source, Fetched):
                report = restore(Fetched(last, source.seconds, source.describe()), **options)
            else:
                report = restore(last, **options)
        except BaseException:
            # Each piece is all or nothing, the chain must be too: a delta that fails after
            # the base was applied puts back what was live before the chain, so a cold
            # start that follows is really cold, and a restore that follows starts over.
            for entry, state in live:
                import_component(
                    entry.obj,
                    importable_state(entry.obj, state, registry=entry.registry),
                    registry=entry.registry,
                )
            history.put_back(saved)
            raise
        finally:
            STATE_CREATED_NS.reset(taken)
            SUMMARIES.reset(quiet)
        seconds = time.perf_counter() - began
        logger.info("%s", _chain_summary(base or report, report, headers, len(data), seconds))
        return report if report.skipped else replace(report, chain=len(headers))


def _live_states(
    entries: Sequence[Registered], refused: Callable[..., RestoreError]
) -> list[tuple[Registered, Any]]:
    """What each component holds before the chain, to put back if a piece fails.

    Raises:
        RestoreError: in phase ``apply``, before any piece is applied: a component's
            ``export_state`` raised, so its state could not be put back (as a single
            snapshot's restore refuses it).
    """
    live = []
    for entry in entries:
        try:
            live.append((entry, component_state(entry.obj, registry=entry.registry)))
        except Exception as exc:
            raise refused(
                f"cannot read the current state, which a rollback would need:"
                f" {type(exc).__name__}: {exc}",
                phase="apply",
                component=entry.key,
            ) from exc
    return live


def _restored_already(
    newest: SnapshotHeader,
    entries: Sequence[Registered],
    history: RestoreHistory,
    options: Mapping[str, Any],
) -> bool:
    """Whether every registered component was last restored from the chain's newest
    piece (and ``force`` does not ask for them again)."""
    if not entries or options.get("force"):
        return False
    restored_from = history.restored_from
    return all(
        restored_from.get((entry.component, entry.instance)) == newest.snapshot_id
        for entry in entries
    )


def _newer(newest: SnapshotHeader, history: RestoreHistory, options: Mapping[str, Any]) -> bool:
    """Whether the chain's state is newer than the last one restored (or, with
    ``force``, as new): its older pieces are then no replay."""
    restored = history.restored_generation
    if restored is None:
        return True
    return newest.generation > restored or (
        bool(options.get("force")) and newest.generation == restored
    )


def _chain_summary(
    base: RestoreReport,
    last: RestoreReport,
    headers: Sequence[SnapshotHeader],
    size: int,
    seconds: float,
) -> str:
    """One line for a checkpoint chain restored: its pieces and generations, how long
    they took, and what restoring its full snapshot (``base``) did: the components,
    the steps that ran (its deltas run the same plans), the sections left aside."""
    chain = f"checkpoint chain {last.snapshot_id[:12]} gen {last.generation}"
    if last.skipped:
        return f"restore of {chain} skipped: already restored"
    deltas = len(headers) - 1
    steps = sum(len(c.steps) for c in base.components)
    text = (
        f"restored {chain}: a full snapshot (gen {headers[0].generation}) and {deltas}"
        f" delta{'' if deltas == 1 else 's'}, {size} bytes, {len(base.components)}"
        f" components, {steps} steps; {seconds * 1000:.1f} ms"
    )
    if base.unknown:
        text += f"; not claimed: {', '.join(base.unknown)}"
    if last.carried:
        text += f"; carried unchanged: {', '.join(last.carried)}"
    if base.missing:
        text += f"; not in snapshot: {', '.join(base.missing)}"
    return text
