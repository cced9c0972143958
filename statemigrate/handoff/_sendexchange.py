"""The old process's conversation with one successor, from HELLO to SERVING.

Whichever way the successor came (spawned, or connected over a socket), the
exchange is the same: HELLO and what it reads, the export prepared with nobody
held, the pre-copy rounds when both sides take them, the pause and the last piece
(with the listeners over a socket), then READY, COMMIT and SERVING. Each wait is a
step (:mod:`statemigrate.handoff._drive`); a failure is a :class:`HandoffError` for
the caller (:mod:`statemigrate.handoff._sendsuccessor`) to clean up after.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from statemigrate._errors import HandoffError, StoreError
from statemigrate._model._allowlossy import names_shown
from statemigrate._runtime._lossyexport import LossyExport
from statemigrate.handoff._drive import Steps, call_hook, settle
from statemigrate.handoff._fork import freeze_heap, thaw_heap
from statemigrate.handoff._options import HandoffTimeouts
from statemigrate.handoff._protocol import (
    Channel,
    Commit,
    Hello,
    Ready,
    Serving,
    SnapshotOffer,
    expect_reply,
)
from statemigrate.handoff._report import Attempt
from statemigrate.handoff._rounds import Payload, Pieces, Rounds, send_rounds
from statemigrate.stores import MemfdStore

if TYPE_CHECKING:
    # Only a service's handoff makes one: the bytes-level handoff loads no model layer.
    from statemigrate._runtime._latewrites import LateWrites

__all__ = ["Prepare", "Prepared", "exchange"]

logger = logging.getLogger("statemigrate.handoff")



@dataclass(frozen=True)
class Prepared:
    """What ``prepare`` chose for a successor: the function that builds the snapshot
    once the server is paused, the version each component is written at (empty when
    not known: bytes handed over without a service), the components written
    through lossy steps, and what watches their records once the last piece is taken
    (``None`` without a service)."""

    build: Callable[[], bytes]
    versions: Mapping[str, int] = field(default_factory=dict)
    lossy: tuple[LossyExport, ...] = ()
    late_writes: Callable[[], LateWrites] | None = None


#: ``prepare(readable)``: called with what the successor reads before anything is
#: paused. Raising :class:`HandoffError` turns the successor away with nobody held.
Prepare = Callable[[Mapping[str, Sequence[int]]], Prepared]


def exchange(
    channel: Channel,
    attempt: Attempt,
    *,
    peer_pid: int,
    watch: int | None,
    send_listeners: Mapping[str, socket.socket],
    prepare: Prepare,
    rounds: Rounds | None,
    timeouts: HandoffTimeouts,
) -> Steps[None]:
    """Steps: the conversation up to and including COMMIT; HandoffError on failure."""
    with attempt.phase("handshake"):
        deadline = time.monotonic() + timeouts.hello
        got = yield from channel.receive(stage="handshake", deadline=deadline, watch=watch)
        hello = expect_reply(got, Hello, stage="handshake", timeout=timeouts.hello)
    assert isinstance(hello, Hello)
    if hello.pid != peer_pid:
        raise HandoffError("handshake", f"HELLO names pid {hello.pid}, the peer is pid {peer_pid}")
    attempt.readable = dict(hello.readable)
    attempt.successor_versions = dict(hello.versions)
    attempt.successor_code_version = hello.code_version
    attempt.tells_pause = hello.held
    logger.info("handoff: successor pid %d can read %s", hello.pid, hello.readable)

    try:
        prepared = prepare(dict(hello.readable))
    except HandoffError as exc:
        # A refusal: nobody has been paused. The old process knows only its own
        # steps; what the successor would read through its lossy ones, it announced.
        if exc.stage == "export" and hello.lossy:
            raise HandoffError("export", exc.detail + lossy_hint(hello.lossy)) from exc
        raise
    except Exception as exc:
        raise HandoffError("export", f"preparing the export raised {exc!r}") from exc
    build = prepared.build
    attempt.versions = dict(prepared.versions)
    attempt.lossy = prepared.lossy
    pieces: Pieces | None = None
    frozen = False
    try:
        deltas = False
        if rounds is not None and hello.precopy:
            pieces = _open_pieces(rounds, hello)
            # No full collection of the heap while the rounds and the pause run: it
            # would stall serving, and the pause, for up to a second at a few million
            # objects. Objects made meanwhile are collected as usual.
            frozen = freeze_heap()
            with attempt.phase("precopy"):
                deltas = yield from send_rounds(
                    channel,
                    attempt,
                    pieces,
                    mode=rounds.mode,
                    watch=watch,
                    timeout=timeouts.precopy,
                    why_not=rounds.why_not,
                )
        yield from _paused_transfer(
            channel,
            attempt,
            build=_last_delta(pieces, build, attempt) if pieces is not None and deltas else build,
            final="snapshot" if pieces is None else "delta" if deltas else "full",
            send_listeners=send_listeners,
            late_writes=prepared.late_writes,
        )
    except BaseException:
        thaw_heap(frozen)
        raise
    finally:
        if pieces is not None:
            pieces.close()
    try:
        yield from _commit_steps(channel, attempt, hello, timeouts=timeouts, watch=watch)
    finally:
        thaw_heap(frozen)


def _commit_steps(
    channel: Channel,
    attempt: Attempt,
    hello: Hello,
    *,
    timeouts: HandoffTimeouts,
    watch: int | None,
) -> Steps[None]:
    """Steps: READY, COMMIT, and SERVING when the successor announced it."""
    with attempt.phase("ready"):
        deadline = time.monotonic() + timeouts.ready
        got = yield from channel.receive(
            stage="ready",
            deadline=deadline,
            watch=watch,
            waiting="the successor's READY (its restore; HandoffTimeouts.ready)",
        )
        ready = expect_reply(got, Ready, stage="ready", timeout=timeouts.ready)
    assert isinstance(ready, Ready)
    # Only the successor we talked to may take the state (its pid was checked at HELLO).
    if ready.pid != hello.pid:
        raise HandoffError(
            "ready",
            f"protocol error: READY names pid {ready.pid}, the successor is pid {hello.pid}",
        )
    channel.send(Commit(), stage="commit")
    attempt.committed = True
    if not hello.serving:
        # A successor of a release before SERVING owns the state from COMMIT on.
        attempt.confirmed = True
        return
    # Writers stay held until the successor confirms: if it dies before, the state
    # it got was never acknowledged on, and this process takes it back.
    with attempt.phase("serving"):
        deadline = time.monotonic() + timeouts.serving
        got = yield from channel.receive(stage="serving", deadline=deadline, watch=watch)
        expect_reply(got, Serving, stage="serving", timeout=timeouts.serving)
    attempt.confirmed = True


def _last_delta(
    pieces: Pieces, build: Callable[[], bytes], attempt: Attempt
) -> Callable[[], Payload]:
    """The last delta, or the full snapshot when the delta cannot be exported.

    A full snapshot supersedes the pieces the successor applied, so a delta that
    fails (a component that replaced its tracked collection, say) costs a longer
    pause rather than the handoff.
    """

    def last() -> Payload:
        try:
            return pieces.delta()
        except Exception as exc:
            attempt.fallback = f"the last delta failed: {exc}"
            attempt.final = "full"
            logger.warning("handoff: %s; sending the full snapshot", attempt.fallback)
            return build()

    return last


def lossy_hint(lossy: Mapping[str, Sequence[int]]) -> str:
    """What a refusal to export adds when the successor announced versions it reads only
    through steps declared lossy: those versions, and how to allow the loss."""
    reads = ", ".join(
        f"{name} v{', v'.join(str(v) for v in versions)}"
        for name, versions in sorted(lossy.items())
    )
    return (
        f"; the successor would read {reads} through steps declared lossy: pass"
        f" allow_lossy={names_shown(lossy)} (or True, for every component) to the successor's"
        " take_over (or its server adapter's run) to upgrade through them"
    )


def _open_pieces(rounds: Rounds, hello: Hello) -> Pieces:
    try:
        return rounds.open(dict(hello.readable))
    except HandoffError:
        raise
    except Exception as exc:
        raise HandoffError("precopy", f"preparing the pre-copy rounds raised {exc!r}") from exc


def _paused_transfer(
    channel: Channel,
    attempt: Attempt,
    *,
    build: Callable[[], Payload],
    final: Literal["snapshot", "delta", "full"],
    send_listeners: Mapping[str, socket.socket],
    late_writes: Callable[[], LateWrites] | None,
) -> Steps[None]:
    """Steps: pause, export the last piece (the only one without pre-copy), send it;
    from the piece on, the records written are watched (``attempt.late``)."""
    yield from settle()  # checkpoint commits under way end first, outside the pause
    with attempt.phase("export"):
        attempt.pausing()
        try:
            yield from call_hook("pause")
        except HandoffError:
            # The control's own word on why it cannot pause (a server adapter's writes
            # still running, stage ``writes``): it let the held writes go before.
            attempt.unpaused()
            raise
        except Exception as exc:
            raise HandoffError("pause", f"pause() raised {exc!r}") from exc
        attempt.paused = True
        try:
            data = build()
        except Exception as exc:
            what = "exporting the last delta" if final == "delta" else "export_state()"
            raise HandoffError("export", f"{what} raised {exc!r}") from exc
        if late_writes is not None:
            # A write from here on stays in this process: the old process tells once
            # the successor serves (writers the pause does not hold, _sendsuccessor).
            attempt.late = late_writes()
        if not isinstance(data, bytes | bytearray | memoryview) and final == "snapshot":
            raise HandoffError(
                "export", f"export_state() returned {type(data).__name__}, not bytes"
            )

    with attempt.phase("transfer"), MemfdStore(name="statemigrate-handoff") as store:
        try:
            ref = store.commit(data)
        except (StoreError, TypeError) as exc:
            raise HandoffError("transfer", f"cannot commit the snapshot to a memfd: {exc}") from exc
        fds = [ref.fd, *(sock.fileno() for sock in send_listeners.values())]
        offer = SnapshotOffer(
            size=ref.size,
            listeners=tuple(send_listeners),
            trace=attempt.span.traceparent() or "",
            fallback=attempt.fallback or "",
            # The successor outlives this process: it reports the whole pause.
            paused=attempt.held(),
            # The successor outlives this process too: it says what was lost, again.
            lossy={
                export.component: (
                    export.source, export.target, export.describe(" for the successor")
                )
                for export in attempt.lossy
            },
        )
        channel.send(offer, fds, stage="transfer")
        attempt.snapshot_size = offer.size
        attempt.final = attempt.final or final  # set already when the last delta failed
        if attempt.fallback:
            logger.info("handoff: full snapshot in the pause: %s", attempt.fallback)
