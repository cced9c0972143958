"""The warning that a snapshot's or delta's schema fingerprint differs from this code's:
its wording, and logging it once per component in a restore made of many pieces.

A checkpoint chain of a hundred deltas, or a take-over's pre-copy rounds, restore the
same component from pieces written by the same schema: the difference is one fact,
warned of once (the first piece), with the count of the pieces that repeated it logged
at the end of the restore (:func:`warning_once_each`).

The wording says what the fingerprints allow to be said. A fingerprint that equals this
schema's as releases before the Python types were recorded computed it (dict key types
and the rest, see :mod:`statemigrate._model._jsonschema`) has two causes that the
fingerprint cannot tell apart: an earlier release wrote the snapshot, or a schema that
lacked those types (``dict[str, X]`` where this code says ``dict[int, X]``) did. The
warning names both; the read-back check that follows tells whether the data is read
back as written. The same holds for a fingerprint computed over the fields' aliases, as
releases before field names were hashed computed it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from statemigrate._model._fingerprint import canonical_json_schema, fingerprint_of
from statemigrate._model._jsonschema import unrecorded_details, without_details
from statemigrate._model._schema import SchemaVersion

__all__ = ["earlier_release_note", "warn_fingerprint_differs", "warning_once_each"]

logger = logging.getLogger("statemigrate")

_Key = tuple[str, int, str]
"""What one warning is about: the component, the version, and the fingerprint the piece
carries (a delta's and a full snapshot's alike: a take-over's pre-copy deltas and its
snapshot of the pause come from one schema)."""

# The warnings of the restore under way, by what they are about, counting the pieces
# that repeated each; None outside a restore of several pieces. Process-wide like the
# restore observer's pieces, since a take-over's pieces need not all be restored on
# the thread (or in the context) that began it.
_lock = threading.Lock()
_repeats: dict[_Key, int] | None = None
_depth = 0


@contextmanager
def warning_once_each() -> Iterator[None]:
    """Within, each fingerprint warning is logged once: the first piece's. The pieces
    that repeated one are counted and logged at INFO on leaving. Nested uses are one,
    the outermost."""
    global _repeats, _depth
    with _lock:
        _depth += 1
        if _repeats is None:
            _repeats = {}
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            done = _repeats if _depth == 0 else None
            if done is not None:
                _repeats = None
        for (key, version, _), count in sorted((done or {}).items()):
            if count:
                logger.info(
                    "%s: %d more piece(s) of this restore carried the same schema"
                    " fingerprint for version %d as the one warned of above",
                    key, count, version,
                )


def warn_fingerprint_differs(
    kind: Literal["snapshot", "delta"], key: str, schema: SchemaVersion, fingerprint: str
) -> None:
    """Warn that a ``kind`` of component ``key`` carries ``fingerprint``, which differs
    from this code's ``schema`` of the same version, before its read-back check; once
    per restore of several pieces (see :func:`warning_once_each`)."""
    what: _Key = (key, schema.version, fingerprint)
    with _lock:
        if _repeats is not None and what in _repeats:
            _repeats[what] += 1
            seen = True
        else:
            if _repeats is not None:
                _repeats[what] = 0
            seen = False
    section = "section" if kind == "snapshot" else "delta"
    if seen:
        logger.debug(
            "%s: %s schema fingerprint for version %d differs from this code's (warned of"
            " once in this restore); checking that this code reads the %s back as written",
            key, kind, schema.version, section,
        )
        return
    logger.warning(
        "%s: %s schema fingerprint for version %d differs from this code's%s;"
        " checking that this code reads the %s back as written",
        key, kind, schema.version, earlier_release_note(schema, fingerprint), section,
    )


def earlier_release_note(schema: SchemaVersion, fingerprint: str) -> str:
    """A clause for the fingerprint warning when ``fingerprint`` is this ``schema``'s
    without the Python types pydantic's JSON Schema leaves out, as releases before they
    were recorded computed it; else empty. Costs a fingerprint, only when the
    fingerprints differ.

    Two causes give that fingerprint and it cannot tell them apart, so the clause
    names both: an earlier release wrote the snapshot (with this schema or one that
    differs from it in those types alone), or a schema without those types wrote it.
    """
    live = schema.json_schema()
    bare = canonical_json_schema(without_details(live))
    if fingerprint == fingerprint_of(bare):
        lines = unrecorded_details(bare, live) or []
        return (
            f" and equals it as computed without the Python types this schema records"
            f" ({'; '.join(lines)}): either a release that did not record such types wrote"
            f" the snapshot, or a schema of version {schema.version} without them did"
        )
    aliased = schema.json_schema(by_alias=True)
    if aliased == live:
        return ""  # no alias: nothing else to tell
    if fingerprint in (
        fingerprint_of(aliased), fingerprint_of(canonical_json_schema(without_details(aliased)))
    ):
        return (
            " and equals it as computed with its fields' aliases in place of their names:"
            " either a release that hashed aliases wrote the snapshot, or a schema of"
            f" version {schema.version} whose fields had other names under the same"
            " aliases did"
        )
    return ""
