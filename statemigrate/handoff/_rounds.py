"""The old process's pre-copy rounds: a full snapshot, then deltas, all while it serves.

A successor that announces ``precopy`` in HELLO gets its state in pieces before the
old process pauses anything:

* round 0, a full snapshot exported in a forked child (``mode="fork"``, see
  :mod:`statemigrate.handoff._fork`) or in this process (``"inline"``), which the
  successor restores at once (it does not serve yet) and acknowledges with APPLIED,
  saying whether it can apply deltas on top;
* rounds 1..k, each a delta of what changed since the previous piece, exported here,
  applied and acknowledged likewise, until what is left is small enough to move
  within :data:`FINAL_TARGET` (judged from the last round's pace), or
  :data:`MAX_ROUNDS` deltas were sent, or the rounds stop shrinking.

A delta round carries at most :data:`ROUND_RECORDS` records, those written longest
ago; the rest waits for the next round. Exporting a delta holds the serving process
(the GIL, the tracked dicts' locks) for a time that grows with its records, and the
first delta after a long round 0 may hold tens of thousands: in rounds of bounded
size, requests are served between them, while the successor applies each one. A
write made while a round is exported has a later mark than the records taken, so it
is in a later round or in the last piece, never lost. Rounds that leave records
behind (capped) do not count against :data:`MAX_ROUNDS`, but every round must leave
fewer records pending than the one before, or the rounds stop: writes that outpace
them end the pre-copy as before, with the rest in the last piece.

What comes next is not done here: the caller pauses the writers and sends the last
piece in SNAPSHOT as before, a delta, or a full snapshot when deltas cannot be used
(a component that cannot tell what changed, one the service caught changing a value
in place, during the rounds or at any time before in this process, or a successor whose
plan has a whole-data step): the fallback, reported with its reason.

Nothing in this module changes the state, and the writers are never held here: a
failure at any point leaves the old process serving exactly as before.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from statemigrate._errors import ChangeTrackingError, HandoffError, StoreError
from statemigrate.handoff._drive import Steps
from statemigrate.handoff._fork import export_forked
from statemigrate.handoff._protocol import (
    Applied,
    Channel,
    NoMessage,
    Piece,
    PieceKind,
    Received,
    expect_reply,
)
from statemigrate.handoff._report import Attempt, Round
from statemigrate.stores import MemfdStore
from statemigrate.stores._base import Buffer

__all__ = [
    "FINAL_TARGET",
    "MAX_CAPPED_ROUNDS",
    "MAX_ROUNDS",
    "PreCopyMode",
    "Pieces",
    "ROUND_RECORDS",
    "Rounds",
    "send_rounds",
]

logger = logging.getLogger("statemigrate.handoff")

PreCopyMode = Literal["fork", "inline"]
#: Payload of a piece: one buffer or several, in order.
Payload = Buffer | Iterable[Buffer]

#: Delta rounds at most before the pause, whatever is left.
MAX_ROUNDS = 8
#: The last piece should move within this many seconds (the pause's share of it).
FINAL_TARGET = 0.02
#: Below this many pending records another round is not worth its round trip.
MIN_FINAL = 256
#: Records one delta round carries at most while serving (a few milliseconds of
#: export); the rest goes in the next round.
ROUND_RECORDS = 2_000
#: Capped delta rounds (those that left records for the next) at most.
MAX_CAPPED_ROUNDS = 256


class Pieces(Protocol):
    """What the old process exports piece by piece (a service's ``PreCopySource``)."""

    def start(self) -> None:
        """Start recording changes; reserve the identity of the full snapshot.

        :attr:`deltas_possible` is known from here on.
        """

    def full(self) -> Payload:
        """The full snapshot (round 0); safe to call in a forked child."""

    def forked(self, size: int, seconds: float) -> None:
        """In this process: a forked child wrote :meth:`full`, of ``size`` bytes, in
        ``seconds`` from the fork to its exit; report it as a snapshot taken."""

    def pending(self) -> int:
        """Records changed since the last piece."""

    @property
    def deltas_possible(self) -> bool:
        """Whether deltas can be exported at all (every component tracks changes);
        it may turn false between rounds (a value changed in place was caught)."""

    def delta(self, *, limit: int | None = None) -> Payload:
        """A delta of what changed since the last piece, chained to it: at most
        ``limit`` records, those written longest ago (the rest stay pending)."""

    def close(self) -> None:
        """Stop recording changes."""


@dataclass(frozen=True, slots=True)
class Rounds:
    """How the old process runs pre-copy rounds for a successor that takes them.

    Attributes:
        open: called with what the successor reads, after the versions were
            chosen and before anything else: returns the pieces.
        mode: ``"fork"`` (round 0 exported in a forked child) or ``"inline"``.
        why_not: called when the pieces cannot give deltas: the reason, for the report.
    """

    open: Callable[[Mapping[str, Sequence[int]]], Pieces]
    mode: PreCopyMode = "fork"
    why_not: Callable[[Pieces], str] | None = None


def _commit(payload: Payload, *, stage: str) -> tuple[MemfdStore, int, int]:
    store = MemfdStore(name="statemigrate-precopy")
    try:
        ref = store.commit(payload)
    except (StoreError, TypeError) as exc:
        store.close()
        raise HandoffError(stage, f"cannot commit a pre-copy piece to a memfd: {exc}") from exc
    return store, ref.fd, ref.size


def _expect_applied(
    got: Received | NoMessage, number: int, *, timeout: float, stage: str
) -> Applied:
    applied = expect_reply(got, Applied, stage=stage, timeout=timeout)
    assert isinstance(applied, Applied)
    if applied.round != number:
        raise HandoffError(
            stage, f"protocol error: APPLIED names round {applied.round}, round {number} was sent"
        )
    return applied


def _send_piece(
    channel: Channel,
    attempt: Attempt,
    *,
    number: int,
    kind: PieceKind,
    fd: int,
    size: int,
    records: int,
    began: float,
    watch: int | None,
    timeout: float,
) -> Steps[Applied]:
    channel.send(Piece(round=number, kind=kind, size=size), [fd], stage="precopy")
    deadline = time.monotonic() + timeout
    # Round 0's wait covers the successor's restore: HandoffTimeouts.precopy bounds it,
    # not .ready (docs/precopy.md).
    what = "the successor's restore of round 0" if number == 0 else f"round {number} applied"
    got = yield from channel.receive(
        stage="precopy",
        deadline=deadline,
        watch=watch,
        waiting=f"{what} (HandoffTimeouts.precopy)",
    )
    applied = _expect_applied(got, number, timeout=timeout, stage="precopy")
    attempt.rounds.append(
        Round(
            number=number,
            kind=kind,
            size=size,
            records=applied.records or records,
            seconds=time.monotonic() - began,
        )
    )
    logger.info(
        "handoff: pre-copy round %d (%s): %d bytes, %d records, %.1f ms",
        number,
        kind,
        size,
        attempt.rounds[-1].records,
        attempt.rounds[-1].seconds * 1000,
    )
    return applied


def _send_payload(
    channel: Channel,
    attempt: Attempt,
    payload: Payload,
    *,
    number: int,
    kind: PieceKind,
    records: int,
    began: float,
    watch: int | None,
    timeout: float,
) -> Steps[Applied]:
    """Steps: commit ``payload`` to a memfd, send it as a piece, wait for APPLIED."""
    store, fd, size = _commit(payload, stage="precopy")
    with store:
        return (
            yield from _send_piece(
                channel,
                attempt,
                number=number,
                kind=kind,
                fd=fd,
                size=size,
                records=records,
                began=began,
                watch=watch,
                timeout=timeout,
            )
        )


def _round_zero(
    channel: Channel,
    attempt: Attempt,
    pieces: Pieces,
    *,
    mode: PreCopyMode,
    watch: int | None,
    timeout: float,
) -> Steps[Applied]:
    began = time.monotonic()
    if mode == "fork":
        exported = yield from export_forked(pieces.full, deadline=began + timeout, stage="precopy")
        attempt.fork_seconds = exported.fork_seconds
        # The child's own report of the snapshot died with it: count it here.
        pieces.forked(exported.size, exported.fork_seconds + exported.child_seconds)
        try:
            return (
                yield from _send_piece(
                    channel,
                    attempt,
                    number=0,
                    kind="full",
                    fd=exported.fd,
                    size=exported.size,
                    records=0,
                    began=began,
                    watch=watch,
                    timeout=timeout,
                )
            )
        finally:
            os.close(exported.fd)
    try:
        payload = pieces.full()
    except Exception as exc:
        raise HandoffError("precopy", f"exporting round 0 raised {exc!r}") from exc
    return (
        yield from _send_payload(
            channel,
            attempt,
            payload,
            number=0,
            kind="full",
            records=0,
            began=began,
            watch=watch,
            timeout=timeout,
        )
    )


def _delta_round(
    channel: Channel,
    attempt: Attempt,
    pieces: Pieces,
    number: int,
    *,
    watch: int | None,
    timeout: float,
) -> Steps[Applied]:
    began = time.monotonic()
    records = min(pieces.pending(), ROUND_RECORDS)
    try:
        payload = pieces.delta(limit=ROUND_RECORDS)
    except ChangeTrackingError:
        raise  # no delta is trusted any more: the caller falls back
    except Exception as exc:
        raise HandoffError("precopy", f"exporting delta round {number} raised {exc!r}") from exc
    return (
        yield from _send_payload(
            channel,
            attempt,
            payload,
            number=number,
            kind="delta",
            records=records,
            began=began,
            watch=watch,
            timeout=timeout,
        )
    )


def _small_enough(pending: int, last: Round) -> bool:
    """Whether ``pending`` records fit the pause, at the pace of the ``last`` delta round."""
    pace = last.records / last.seconds if last.seconds > 0 else float("inf")
    return pending <= pace * FINAL_TARGET


def _why_not(pieces: Pieces, why_not: Callable[[Pieces], str] | None, default: str) -> str:
    return why_not(pieces) if why_not is not None else default


def send_rounds(
    channel: Channel,
    attempt: Attempt,
    pieces: Pieces,
    *,
    mode: PreCopyMode,
    watch: int | None,
    timeout: float,
    why_not: Callable[[Pieces], str] | None = None,
) -> Steps[bool]:
    """Steps: pre-copy rounds while serving; return whether the last piece may be a delta.

    When it may not, ``attempt.fallback`` says why. Each wait for APPLIED lasts at
    most ``timeout`` seconds, and so does round 0's export in a child.

    Raises:
        HandoffError: stage ``precopy``: an export failed (its child's error, a
            signal, the deadline), or the successor failed, left, or answered out of
            turn (a :class:`~statemigrate.SuccessorFailedError` when it gave up).
    """
    # Recording starts here, and round 0 (forked at once) holds everything before.
    try:
        pieces.start()
    except Exception as exc:
        raise HandoffError("precopy", f"starting the pre-copy rounds raised {exc!r}") from exc
    if not pieces.deltas_possible:
        attempt.fallback = _why_not(pieces, why_not, "some component cannot tell what changed")
        return False
    applied = yield from _round_zero(
        channel, attempt, pieces, mode=mode, watch=watch, timeout=timeout
    )
    if not applied.deltas:
        attempt.fallback = f"the successor cannot apply deltas: {applied.why or 'no reason given'}"
        return False
    number = 0
    capped = 0
    previous: int | None = None
    while number - capped < MAX_ROUNDS and capped < MAX_CAPPED_ROUNDS:
        if not pieces.deltas_possible:
            break
        pending = pieces.pending()
        if pending <= MIN_FINAL or (number > 0 and _small_enough(pending, attempt.rounds[-1])):
            break
        if previous is not None and pending >= previous:
            break  # the writes outpace the rounds: the pause will not get shorter
        previous = pending
        number += 1
        if pending > ROUND_RECORDS:
            capped += 1
        try:
            applied = yield from _delta_round(
                channel, attempt, pieces, number, watch=watch, timeout=timeout
            )
        except ChangeTrackingError as exc:
            attempt.fallback = _why_not(pieces, why_not, f"delta round {number}: {exc}")
            return False
        if not applied.deltas:
            attempt.fallback = f"the successor stopped accepting deltas: {applied.why or '?'}"
            return False
    if not pieces.deltas_possible:
        # A value changed in place, caught since round 0 (by a checkpoint of the
        # service, say): the pieces sent may lack other such changes, and the full
        # snapshot in the pause replaces them.
        attempt.fallback = _why_not(pieces, why_not, "deltas are not possible")
        return False
    return True
