"""A restore refused because a newer release wrote the snapshot: which component and
versions, and the way out a start-up names.

A release reads the versions it registers, and older ones through its upgrade steps;
the downgrade steps that bring a newer version back are the newer release's code. So
when a start-up (``Service.start_from``) meets a newer release's snapshot, whatever
the server, its error says what to do: start the release that wrote it, or rewrite
the snapshot for this one with ``statemigrate migrate`` run with the newer release's
registry.

The command names every component the snapshot holds at a version this release cannot
read (not only the first one the restore met), so that following it once is enough,
and the snapshot's own place when the start-up read it from a store (a tmpfs store's
file, an object store's generation) instead of ``SNAPSHOT``. ``--allow-lossy-for``
goes with a component whose way back loses data: one whose steps this release holds
and finds lossy, or one at a version it does not know (the newer release's downgrade
steps are out of its sight, and a downgrade usually drops what the upgrade added).
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import xxhash

from statemigrate._errors import (
    LossyMigrationError,
    NoMigrationPathError,
    RestoreError,
    StateMigrateError,
    UnknownComponentError,
)
from statemigrate._model._allowlossy import AllowLossy
from statemigrate._runtime._chain import is_chain, split_chain
from statemigrate._runtime._restore import Registered
from statemigrate._snapshot._format import Buffer, check_layout
from statemigrate._snapshot._header import SnapshotHeader
from statemigrate.stores._base import Store
from statemigrate.stores._tmpfs import CURRENT, UNRESTORED, TmpfsStore

__all__ = [
    "Fold",
    "NewerVersion",
    "fold_command",
    "folds",
    "newer_version",
    "snapshot_address",
    "with_way_out",
]

#: A word a shell reads back as it is: no quotes needed.
_PLAIN_WORD = re.compile(r"[\w@%+=:,./-][\w@%+=:,./#-]*")


@dataclass(frozen=True)
class NewerVersion:
    """A component's version written by a newer release, and the newest this reads."""

    component: str
    written: int
    readable: int


def newer_version(exc: BaseException) -> NewerVersion | None:
    """The newer version a failed restore met and this release cannot read at all,
    following its causes; None when it failed for another reason (a lossy downgrade
    this release holds says ``allow_lossy`` itself)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, LossyMigrationError):
            return None  # this release holds the steps: allow_lossy is the way out
        if isinstance(seen, NoMigrationPathError):
            if seen.source > seen.target:
                return NewerVersion(seen.component, seen.source, seen.target)
            return None
        if isinstance(seen, UnknownComponentError) and seen.version is not None:
            known = [v for v in seen.known if isinstance(v, int)]
            if known and seen.version > max(known):
                return NewerVersion(seen.component, seen.version, max(known))
            return None
        seen = seen.__cause__ or seen.__context__
    return None


@dataclass(frozen=True)
class Fold:
    """A component a snapshot holds at a version this release cannot restore: what
    ``statemigrate migrate`` must bring back, and whether its way back loses data."""

    component: str
    written: int
    target: int
    lossy: bool


def folds(
    data: Buffer, entries: Sequence[Registered], allow_lossy: AllowLossy
) -> list[Fold] | None:
    """Every component of the snapshot (or chain) ``data`` that this release's
    ``entries`` cannot restore at the versions they run, with ``allow_lossy`` as the
    restore had it, in the snapshot's order; ``None`` when its header cannot be read
    (then the error's own component is all the way out can name)."""
    written: dict[str, int] = {}
    try:
        for header in _headers(data):
            for section in header.sections:
                written.setdefault(section.component, section.version)
    except StateMigrateError:
        return None
    running = {entry.component: entry for entry in entries}
    found: list[Fold] = []
    for component, version in written.items():
        entry = running.get(component)
        if entry is None:
            continue  # no component of this service: the restore's strictness decides
        target = entry.spec.version
        try:
            entry.registry.plan(component, version, target, allow_lossy=allow_lossy)
        except LossyMigrationError:
            found.append(Fold(component, version, target, lossy=True))
        except (NoMigrationPathError, UnknownComponentError):
            if version > target:  # an older version without a path is no newer release's
                found.append(Fold(component, version, target, lossy=True))
    return found


def _headers(data: Buffer) -> list[SnapshotHeader]:
    """The headers of ``data``'s snapshots, checked as far as a header can be without
    the key (a chain's pieces, base first)."""
    pieces = split_chain(data) if is_chain(data) else [memoryview(data)]
    return [check_layout(_reader(piece), len(piece)) for piece in pieces]


def _reader(piece: memoryview) -> Callable[[int, int], Buffer]:
    """Reads of ``piece``'s bytes, as :func:`check_layout` makes them."""
    return lambda start, size: piece[start : start + size]


def snapshot_address(store: Store, data: Buffer | None) -> str | None:
    """Where ``statemigrate migrate`` reads the snapshot ``data`` that a start-up
    refused from ``store``: a tmpfs store's ``unrestored`` file (where the start kept
    it, out of its checkpoints' way) or ``current``; an object store's generation
    (``s3://bucket/prefix#7``), when its pointer's current generation is ``data`` (the
    store's own numbering, which the snapshot's header does not hold), else its URL;
    ``None`` for a store the command line cannot read."""
    if isinstance(store, TmpfsStore):
        kept = os.path.join(store.directory, UNRESTORED)
        return kept if os.path.exists(kept) else os.path.join(store.directory, CURRENT)
    location = getattr(store, "location", None)
    if not isinstance(location, str):
        return None
    generation = _generation_holding(store, data)
    return location if generation is None else f"{location}#{generation}"


def _generation_holding(store: Store, data: Buffer | None) -> int | None:
    """The number of an object store's current generation when it holds ``data``
    (the checkpoints of a service that starts cold move ``current`` on, while that
    number keeps naming it); ``None`` when it cannot be told."""
    ref = getattr(store, "ref", None)
    if data is None or not callable(ref):
        return None
    try:
        entry = getattr(ref("current"), "entry", None)
    except StateMigrateError:
        return None
    if entry is None or getattr(entry, "xxh3_128", None) != xxhash.xxh3_128(data).hexdigest():
        return None
    generation = getattr(entry, "generation", None)
    return generation if isinstance(generation, int) else None


def with_way_out(
    error: RestoreError,
    found: Sequence[Fold] | None = None,
    *,
    address: str | None = None,
) -> RestoreError:
    """``error`` ending with the way out when a newer release wrote what it refused
    (an error that names one already is returned as it is); else ``error`` itself.
    The caller raises the copy in ``error``'s place, from ``error``'s cause.

    Args:
        error: the start-up's failed restore.
        found: every component to fold back (see :func:`folds`), when the snapshot's
            header could be read; else the error's own component alone is named.
        address: where the command line reads the snapshot, else ``SNAPSHOT``.
    """
    newer = newer_version(error)
    if newer is None or error.way_out is not None:
        return error
    named = list(found or ())
    if not any(fold.component == newer.component for fold in named):
        named.insert(0, Fold(newer.component, newer.written, newer.readable, lossy=True))
    if len(named) == 1:
        versions = (
            f"{newer.component!r} version {newer.written};"
            f" this release reads up to {newer.readable}"
        )
    else:
        versions = ", ".join(
            f"{fold.component!r} version {fold.written} (this release reads {fold.target})"
            for fold in named
        )
    hinted = RestoreError(
        error.phase,
        error.detail,
        component=error.component,
        step=error.step,
        rollback_failed=error.rollback_failed,
        rollback_unchecked=error.rollback_unchecked,
        restoring=error.restoring,
        piece=error.piece,
        way_out=(
            f"a newer release wrote it ({versions}): start the release that wrote it, or"
            " fold it back for this one with that release's registry:"
            f" `{fold_command(named, address)}` (docs/cli.md), and start from OUT"
        ),
    )
    hinted.__cause__ = error.__cause__
    return hinted.with_traceback(error.__traceback__)


def fold_command(found: Sequence[Fold], address: str | None = None) -> str:
    """The ``statemigrate migrate`` command that folds the components ``found`` back
    for this release, run with the newer release's registry; ``address`` is where the
    command line reads the snapshot, else ``SNAPSHOT``."""
    targets = " ".join(f"--to {fold.component}={fold.target}" for fold in found)
    lossy = "".join(f" --allow-lossy-for {fold.component}" for fold in found if fold.lossy)
    return (
        f"statemigrate migrate {_shell_word(address or 'SNAPSHOT')} -o OUT {targets}{lossy}"
        " --registry MODULE:NAME"
    )


def _shell_word(address: str) -> str:
    """``address`` as a shell reads it back: quoted only when it must be (a space, a
    quote), since a ``#`` inside a word starts no comment (``s3://bucket#7``)."""
    return address if _PLAIN_WORD.fullmatch(address) else shlex.quote(address)
