"""A check that a service's components report every change they make.

Incremental checkpoints and pre-copy hand-overs send only the records a component
says changed: the keys a :class:`~statemigrate.TrackedDict` logged, or what a custom
component's change protocol returns. A change that escapes the log is lost without a
word: the restored state keeps the old value until the next full snapshot. The usual
way to miss one is a value changed in place (``cache[key]["hits"] += 1`` writes no key
of the tracked dict); a custom protocol may also forget a key.

:func:`check_change_tracking` runs the service's own code between a full snapshot and
a delta, as a checkpoint or a hand-over would, and compares the state the two restore
to with a full snapshot of the live state. It runs in the test's process and commits
nothing; hypothesis is not needed.
"""

from __future__ import annotations

from collections.abc import Callable

from statemigrate._errors import ChangeTrackingError, ConfigurationError
from statemigrate._model._compare import first_difference
from statemigrate._model._inplacewatch import exact_check
from statemigrate._model._paths import format_path
from statemigrate._runtime._chain import chain_frame
from statemigrate._runtime._chainread import composed_sections, open_chain
from statemigrate._runtime._service import Service
from statemigrate._snapshot._encode import EncodedSnapshot
from statemigrate._snapshot._format import open_snapshot

__all__ = ["check_change_tracking"]


def check_change_tracking(service: Service, change: Callable[[], object]) -> None:
    """Check that the deltas of ``service`` carry every change ``change()`` makes.

    Starts recording changes and takes a full snapshot, as the first piece of a
    checkpoint chain or a hand-over does; calls ``change()`` (code of the service that
    writes to its components, the way its requests do); takes the delta of what the
    components report changed; then compares the state that the full snapshot with
    the delta applied restores to against a full snapshot of the live state. The
    components are left as ``change`` left them.

    Raises:
        ChangeTrackingError: an ``AssertionError`` naming the component and the first
            path where the two states differ, with both values.
        ConfigurationError: no component of the service tracks changes, so every
            checkpoint and hand-over sends full snapshots and nothing can be missed;
            the message says why.
        StateMigrateError: as :meth:`Service.snapshot <statemigrate.Service.snapshot>`,
            or the delta itself (say, a ``TrackedDict`` replaced by another object).
    """
    # The sampled check of values changed in place would stop at the delta with less to
    # say than the comparison below: it stays out of the way.
    with exact_check(), service.precopy_source() as source:
        source.start()
        if source.why_no_deltas is not None:
            raise ConfigurationError(
                "check_change_tracking", f"{service.name!r} sends no deltas: {source.why_no_deltas}"
            )
        base = source.full()
        change()
        delta = source.delta()
    live, _ = service.snapshot()
    chain = open_chain(_chain_bytes(base, delta))
    truth = open_snapshot(live.to_bytes())
    expected = {
        info.key: truth.read_section(index) for index, info in enumerate(truth.header.sections)
    }
    registries = {entry.component: entry.registry for entry in service.components}
    for section in composed_sections(chain, registry=registries.get):
        key = f"{section.component}/{section.instance}"
        difference = first_difference(expected[key], section.data)
        if difference is not None:
            path, what = difference
            raise ChangeTrackingError(key, format_path(path), what)


def _chain_bytes(*pieces: EncodedSnapshot) -> bytes:
    """The pieces framed as a checkpoint chain, base first."""
    frame = chain_frame([piece.size for piece in pieces])
    return b"".join([frame, *(piece.to_bytes() for piece in pieces)])
