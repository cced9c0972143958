"""Reading back a section that another schema wrote under the same version.

A snapshot records the fingerprint of the schema that wrote each section. When this
code's schema of that version has another fingerprint, the section was written by a
schema edited in place (a field renamed, a type narrowed, dict keys retyped), and
validation alone could change or drop data without an error: ignore a renamed field's
key, fill its successor from a default, merge the keys ``"007"`` and ``"7"`` into one
``7``. So the section is read back first: validated with this code's schema, exported
again and compared with what was written. Any difference refuses it, naming the first,
but for a number that comes back as an exactly equal number of a wider type (an int
written where this schema has a float: ``1`` as ``1.0``), which loses nothing and is
what a restore of the same fingerprint makes of it too.

A full section is read back whole (:func:`read_back_problem`); a delta's state is read
back the same way, and the keys it deletes one by one (:func:`delta_read_back_problem`),
since a deleted ``"007"`` read as ``7`` would delete another record.
"""

from __future__ import annotations

from typing import Any

import pydantic

from statemigrate._model._changes import key_codec
from statemigrate._model._compare import first_difference
from statemigrate._model._paths import format_path
from statemigrate._model._schema import SchemaVersion

__all__ = ["delta_read_back_problem", "read_back", "read_back_problem"]


def read_back_problem(schema: SchemaVersion, data: object, version: int) -> str | None:
    """Why this code's ``schema`` of ``version`` would not read back as written plain
    data that a different schema wrote under that version (their fingerprints differ),
    or None when it would.

    :func:`~statemigrate._runtime._rewrite.verify_snapshot` reports such a section.
    """
    return read_back(schema, data, version)[1]


def read_back(schema: SchemaVersion, data: object, version: int) -> tuple[Any, str | None]:
    """:func:`read_back_problem`, with the state ``schema`` validated the data into when
    it reads back as written: ``(state, None)`` or ``(None, problem)``. A restore
    refuses such a section, and keeps the state when no step runs after."""
    state, problem = schema.read_back(data)
    return (state, None) if problem is None else (None, _refusal(version, problem))


def delta_read_back_problem(
    schema: SchemaVersion, state: object, deleted: dict[str, list[Any]], version: int
) -> str | None:
    """:func:`read_back_problem` for a delta: its ``state`` (the records it writes,
    and the other fields whole), then the keys it ``deleted``, by record field."""
    problem = schema.misreads(state)
    if problem is None:
        problem = _deleted_keys_problem(schema, deleted)
    return None if problem is None else _refusal(version, problem)


def _deleted_keys_problem(schema: SchemaVersion, deleted: dict[str, list[Any]]) -> str | None:
    for name, keys in deleted.items():
        codec = key_codec(schema, name)
        try:
            again = codec.export(codec.validate(keys), schema=schema, field=name)
        except pydantic.ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            return f"a key deleted from record field {name!r} does not validate: {first['msg']}"
        difference = first_difference(keys, again, widening=True)
        if difference is not None:
            path, detail = difference
            return f"at deleted[{name!r}]{format_path(path).removeprefix('(root)')}: {detail}"
    return None


def _refusal(version: int, problem: str) -> str:
    return (
        f"the snapshot's version {version} was written by a different schema (its"
        f" fingerprint differs), and this code's version {version} would not read it"
        f" back as written: {problem}; give the changed schema a new version with a"
        " migration step, or restore with the release that wrote the snapshot"
    )
