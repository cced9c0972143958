"""Reading a checkpoint chain without a service: its pieces verified and linked, and the
state it restores to composed into one full snapshot.

A service restores a chain (:mod:`statemigrate._runtime._chain`) by restoring its base
and then each delta into its live components. Tools that have no components, such as
the command line, read the same chain here: :func:`open_chain` opens every piece as
the service does (each piece's digest or MAC), :func:`chain_break` says whether the
pieces follow one another (the service asks it too), and :func:`compose_chain`
applies the deltas to the base's plain data.

Composing follows what applying a delta does to a live component
(:mod:`statemigrate._runtime._delta`), on plain data instead: for each section of a
delta, the records of each record field it names under ``deleted`` are set in that
field of the state so far (the last ``moved`` of them moved to its end, in their
order, as the writer's dict holds them), then the keys listed there are removed; every other field
of its partial state replaces the one so far, and a field it does not carry is
dropped, as the delta would delete the attribute. Sections a delta does not hold keep
their state. Record keys are matched in their plain form, as the snapshots hold them,
and, given the registry, by value where a key's text differs from the state's
(:mod:`statemigrate._runtime._chainkeys`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from itertools import islice
from typing import TYPE_CHECKING, Any

from statemigrate._errors import SnapshotError
from statemigrate._runtime._chain import split_chain
from statemigrate._runtime._chainkeys import FieldFor, FieldKeys, KeyMatcher, RegistryOf
from statemigrate._runtime._delta import DELTA_SHAPE, is_delta_section
from statemigrate._snapshot._encode import EncodedSnapshot, SectionInput, encode_snapshot
from statemigrate._snapshot._format import DecodeLimits, Snapshot, open_snapshot
from statemigrate._snapshot._header import SnapshotHeader
from statemigrate.stores import Buffer

if TYPE_CHECKING:
    from statemigrate._model._registry import Registry

__all__ = [
    "Chain",
    "applied_to_plain",
    "chain_break",
    "compose_chain",
    "composed_sections",
    "link_break",
    "open_chain",
    "piece_error",
]


@dataclass(frozen=True, slots=True)
class Chain:
    """A checkpoint chain whose pieces each passed their own digest (or MAC) check.

    Attributes:
        pieces: the snapshots, base first.
        starts: where each piece starts, in bytes from the start of the chain.
        size: the chain's length in bytes.
    """

    pieces: tuple[Snapshot, ...]
    starts: tuple[int, ...]
    size: int

    def located(self, index: int, exc: SnapshotError) -> SnapshotError:
        """``exc``, raised reading piece ``index``, as an error about the chain: its
        detail names the piece and its offset counts from the start of the chain."""
        return piece_error(exc, index, self.starts[index])

    def check_links(self) -> None:
        """Refuse a chain whose pieces do not follow one another (see :func:`chain_break`).

        Raises:
            SnapshotError: kind ``corrupt``, naming the piece and the base it names.
        """
        headers = [piece.header for piece in self.pieces]
        reason = chain_break(headers)
        if reason is None:
            return
        index = next(i for i in range(len(headers)) if link_break(headers, i) is not None)
        named = headers[index].base
        expected = (
            "a full snapshot" if index == 0
            else f"base {headers[index - 1].snapshot_id} generation {headers[index - 1].generation}"
        )
        actual = "a delta" if index == 0 else (
            "a full snapshot" if named is None
            else f"base {named.snapshot_id} generation {named.generation}"
        )
        raise SnapshotError(
            "corrupt", reason, expected=expected, actual=actual, offset=self.starts[index]
        )


def open_chain(
    data: Buffer, *, key: bytes | None = None, limits: DecodeLimits | None = None
) -> Chain:
    """Split a chain and open each piece, as a service does before restoring it.

    The links between the pieces are not checked here: :meth:`Chain.check_links`
    does that, so a chain with a broken link can still be shown.

    Raises:
        SnapshotError: the frame is damaged, or a piece is not a sound snapshot (the
            error names the piece; its offset counts from the start of the chain).
    """
    views = split_chain(data)
    start = len(memoryview(data)) - sum(len(view) for view in views)  # the frame's size
    pieces: list[Snapshot] = []
    starts: list[int] = []
    for view in views:
        starts.append(start)
        start += len(view)
    for index, view in enumerate(views):
        try:
            pieces.append(open_snapshot(view, key=key, limits=limits))
        except SnapshotError as exc:
            raise piece_error(exc, index, starts[index]) from exc
    return Chain(tuple(pieces), tuple(starts), start)


def piece_error(exc: SnapshotError, index: int, start: int) -> SnapshotError:
    """``exc``, raised reading piece ``index`` that starts ``start`` bytes into its
    chain, as an error about the chain: its detail names the piece and its offset
    counts from the start of the chain."""
    return SnapshotError(
        exc.kind,
        f"checkpoint chain piece {index}: {exc.detail}",
        offset=None if exc.offset is None else start + exc.offset,
        section=exc.section,
        chunk=exc.chunk,
        expected=exc.expected,
        actual=exc.actual,
    )


def link_break(headers: Sequence[SnapshotHeader], index: int) -> str | None:
    """Why piece ``index`` of a chain with these headers does not belong where it is,
    or ``None`` when it does: the first piece must be a full snapshot, and every later
    one a delta naming the piece before it (its id and generation) as its base."""
    base = headers[index].base
    if index == 0:
        return None if base is None else "checkpoint chain does not start with a full snapshot"
    before = headers[index - 1]
    if base is None or (base.snapshot_id, base.generation) != (
        before.snapshot_id,
        before.generation,
    ):
        return f"checkpoint chain piece {index} does not follow piece {index - 1}"
    return None


def chain_break(headers: Sequence[SnapshotHeader]) -> str | None:
    """Why the pieces with these headers, base first, are not one chain, or ``None``
    when they are (see :func:`link_break`); the links between deltas are checked first."""
    for index in [*range(1, len(headers)), 0]:
        reason = link_break(headers, index)
        if reason is not None:
            return reason
    return None


def composed_sections(
    chain: Chain, *, registry: Registry | RegistryOf | None = None
) -> list[SectionInput]:
    """The sections of the state that ``chain`` restores to: its base's sections, in
    the base's order and at its versions, with every delta applied to their plain data.

    With ``registry`` (or a function giving a component's registry), a record key
    whose text the state lacks is matched by value with the state's key equal to it,
    as a service matches keys (``-0.0`` deletes ``0.0``; see
    :mod:`statemigrate._runtime._chainkeys`); without it, by text alone.

    Raises:
        SnapshotError: a link is broken, a section does not decode, or a delta cannot
            be applied on plain data (kind ``invalid_data``, naming the piece and the
            section, and why: a section the base lacks, at another version, or not a
            delta's shape).
    """
    chain.check_links()
    matcher = KeyMatcher(registry)
    base = chain.pieces[0]
    infos = {(info.component, info.instance): info for info in base.header.sections}
    states: dict[tuple[str, str], Any] = {}
    for index, info in enumerate(base.header.sections):
        states[(info.component, info.instance)] = _read(chain, 0, index)
    for number, piece in enumerate(chain.pieces[1:], start=1):
        for index, info in enumerate(piece.header.sections):
            where = (info.component, info.instance)
            known = infos.get(where)
            if known is None:
                raise _refused(number, info.key, "the base has no such section")
            if info.version != known.version:
                raise _refused(
                    number, info.key,
                    f"the section is at version {info.version} and the base's at"
                    f" {known.version}; pieces at other versions are composed only by a"
                    " service, with the migrations",
                )
            fields = partial(matcher.field, where, info.version, known.fingerprint)
            states[where] = _applied(
                states[where], _read(chain, number, index), number, info.key, fields
            )
    return [
        SectionInput(info.component, info.instance, info.version, info.fingerprint,
                     states[(info.component, info.instance)])
        for info in base.header.sections
    ]


def compose_chain(
    chain: Chain,
    *,
    key: bytes | None = None,
    level: int = 1,
    registry: Registry | RegistryOf | None = None,
) -> EncodedSnapshot:
    """The full snapshot that ``chain`` restores to: its base with every delta applied
    (see :func:`composed_sections`).

    The snapshot carries the newest piece's id, generation, producer and meta: it
    holds the state that piece's id names.

    Args:
        chain: an opened chain; its links are checked here.
        key: the key to authenticate the new snapshot with, if any.
        level: the zstd compression level.
        registry: the schemas to match record keys by value with, or a function
            giving a component's (see :func:`composed_sections`).

    Raises:
        SnapshotError: as :func:`composed_sections` raises it.
    """
    sections = composed_sections(chain, registry=registry)
    newest = chain.pieces[-1].header
    return encode_snapshot(
        sections,
        producer=newest.producer,
        key=key,
        generation=newest.generation,
        meta=dict(newest.meta),
        level=level,
        snapshot_id=newest.snapshot_id,
    )


def _read(chain: Chain, number: int, index: int) -> Any:
    try:
        return chain.pieces[number].read_section(index)
    except SnapshotError as exc:
        raise chain.located(number, exc) from exc


def _refused(number: int | None, section: str, why: str) -> SnapshotError:
    what = "the delta" if number is None else f"checkpoint chain piece {number}"
    return SnapshotError("invalid_data", f"{what} cannot be composed: {why}", section=section)


def applied_to_plain(state: Any, delta: Any, section: str) -> dict[str, Any]:
    """``state``, a section's plain state, with ``delta``, a delta's section of the same
    component instance and version, applied as a chain is composed (record keys
    matched by their text).

    Raises:
        SnapshotError: kind ``invalid_data``, naming the section: ``delta`` is not a
            delta's shape, or does not fit ``state``.
    """
    return _applied(state, delta, None, section)


def _applied(
    state: Any, delta: Any, number: int | None, section: str, fields: FieldFor | None = None
) -> dict[str, Any]:
    """``state`` (a section's plain state so far) with the delta section ``delta`` applied."""
    if not is_delta_section(delta):
        raise _refused(number, section, DELTA_SHAPE)
    if type(state) is not dict:
        raise _refused(number, section, "the state it applies to is not a map of fields")
    partial: dict[str, Any] = delta["state"]
    deleted: dict[str, list[Any]] = delta["deleted"]
    result: dict[str, Any] = {}
    for name, value in state.items():
        if name in partial:
            result[name] = value  # replaced or updated below, in the state's order
    for name, value in partial.items():
        if name not in deleted:
            result[name] = value
            continue
        records = result.get(name)
        if type(records) is not dict or type(value) is not dict:
            raise _refused(
                number, section, f"record field {name!r} is not a map of records in both"
                " the delta and the state it applies to",
            )
        keys = _keys(fields, name, records)
        moved = delta.get("moved", {}).get(name, 0)
        items = iter(value.items())
        keys.set_all(islice(items, len(value) - moved))
        for key, record in items:  # inserted since the base: to the end, in order
            keys.move(key, record)
    for name, gone_keys in deleted.items():
        records = result.get(name)
        if type(records) is not dict:
            raise _refused(
                number, section, f"record field {name!r} has no map of records to delete from"
            )
        keys = _keys(fields, name, records)
        for gone in gone_keys:
            if isinstance(gone, list | dict):
                raise _refused(
                    number, section,
                    f"a deleted key of record field {name!r} is a"
                    f" {type(gone).__name__}, which a plain map cannot hold as a key",
                )
            keys.delete(gone)
    return result


def _keys(fields: FieldFor | None, name: str, records: dict[Any, Any]) -> FieldKeys:
    return FieldKeys(records, None) if fields is None else fields(name, records)
