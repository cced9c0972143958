"""Matching a delta's record keys with the state's when a chain is composed offline.

A snapshot holds a record field's keys as text (or bytes). For most key types a value
has one text (an int, a UUID, an enum member), and a delta's key matches the state's
by its text. For some it has several: ``0.0`` and ``-0.0``, ``Decimal("1")`` and
``Decimal("1.0")``, one instant at two UTC offsets. A service validates keys before it
matches them, so ``del d[-0.0]`` deletes the key ``0.0`` there; composed by text alone,
the chain would keep it. :class:`KeyMatcher` gives the composer what a service does:
a key whose text the state lacks is validated against the field's key type and matched
with the state's key equal to it.

The index of a field's keys by value is built on first need (a key whose text the
state lacks), once per field and composition, and kept up to date after; fields keyed
by ``str``, and sections whose schema the registry does not hold as written, are
matched by text.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pydantic

from statemigrate._errors import StateMigrateError
from statemigrate._model._changes import KeyCodec, key_codec
from statemigrate._model._fingerprint import fingerprint_of
from statemigrate._model._schema import SchemaVersion

if TYPE_CHECKING:
    from statemigrate._model._registry import Registry

__all__ = ["FieldFor", "FieldKeys", "KeyMatcher", "RegistryOf"]

_NONE: Any = object()


class FieldKeys:
    """The keys of one record field of a composed state, matched by value where their
    text differs (see the module docstring)."""

    def __init__(self, records: dict[Any, Any], codec: KeyCodec | None) -> None:
        self.records = records
        self._codec = codec
        self._by_value: dict[Any, Any] | None = None

    def _value(self, plain: Any) -> Any:
        """The live key of ``plain``, or ``_NONE`` when it does not validate."""
        assert self._codec is not None
        try:
            return self._codec.validate([plain])[0]
        except (pydantic.ValidationError, TypeError, ValueError):
            return _NONE

    def _index(self) -> dict[Any, Any]:
        if self._by_value is None:
            self._by_value = {}
            for plain in self.records:
                value = self._value(plain)
                if value is not _NONE:
                    self._by_value[value] = plain
        return self._by_value

    def held(self, plain: Any) -> Any:
        """The state's key equal to ``plain`` (``plain`` itself when the state holds
        that text), or ``_NONE``."""
        if plain in self.records:
            return plain
        if self._codec is None:
            return _NONE
        value = self._value(plain)
        return _NONE if value is _NONE else self._index().get(value, _NONE)

    def set_all(self, records: Any) -> None:
        """:meth:`set` each of ``records`` (pairs), in order."""
        if self._codec is None:
            self.records.update(records)  # matched by text: the map's own update
            return
        for plain, record in records:
            self.set(plain, record)

    def set(self, plain: Any, record: Any) -> None:
        """Set a record in place: under the key the state holds, or last if new."""
        held = self.held(plain)
        if held is not _NONE:
            self.records[held] = record
            return
        self.records[plain] = record
        self._note(plain)

    def move(self, plain: Any, record: Any) -> None:
        """Set a record last, under ``plain``, removing the key equal to it first."""
        self.delete(plain)
        self.records[plain] = record
        self._note(plain)

    def delete(self, plain: Any) -> None:
        held = self.held(plain)
        if held is _NONE:
            return
        del self.records[held]
        if self._by_value is not None:
            value = self._value(held)
            if self._by_value.get(value, _NONE) == held:
                del self._by_value[value]

    def _note(self, plain: Any) -> None:
        if self._by_value is not None:
            value = self._value(plain)
            if value is not _NONE:
                self._by_value[value] = plain


class KeyMatcher:
    """Makes the :class:`FieldKeys` of a composition, one per record field, kept from
    piece to piece while the field's map of records stays the same object."""

    def __init__(self, registry: Registry | RegistryOf | None) -> None:
        self._registry_of: RegistryOf = (
            registry if callable(registry) else lambda component: registry
        )
        self._fields: dict[tuple[str, str, str], FieldKeys] = {}

    def field(
        self, section: tuple[str, str], version: int, fingerprint: str, name: str,
        records: dict[Any, Any],
    ) -> FieldKeys:
        where = (*section, name)
        known = self._fields.get(where)
        if known is not None and known.records is records:
            return known
        keys = FieldKeys(records, self._codec(section[0], version, fingerprint, name))
        self._fields[where] = keys
        return keys

    def _codec(self, component: str, version: int, fingerprint: str, name: str) -> KeyCodec | None:
        registry = self._registry_of(component)
        if registry is None:
            return None
        try:
            schema = registry.schema_for(component, version)
        except StateMigrateError:
            return None
        # The aliases' fingerprint costs a JSON Schema: computed only when it is asked.
        if fingerprint and fingerprint != schema.fingerprint and (
            fingerprint != _by_aliases(schema)
        ):
            return None  # another schema wrote it: its keys are not known here
        codec = key_codec(schema, name)
        return codec if codec.adapter is not None else None


def _by_aliases(schema: SchemaVersion) -> str:
    """The fingerprint of ``schema`` as releases that hashed fields' aliases computed
    it: the same key types, so a piece they wrote has keys known here too."""
    return fingerprint_of(schema.json_schema(by_alias=True))


RegistryOf = Callable[[str], "Registry | None"]
"""The registry that holds a component's schemas (``None``: match its keys by text)."""

FieldFor = Callable[[str, dict[Any, Any]], FieldKeys]
"""The :class:`FieldKeys` of a record field of one section, by name and map of records."""
