"""The zoo's table: each schema under its component name, with the strategy of its states.

A state is what a component holds: the validated model, dataclass or dict. Most states
come from the testing kit's state strategies (``from_schema(..., form="state")``),
which reach aliases, extra fields, int and tuple keys, subclass instances, rich values
in ``Any`` and the rest; the few schemas about one hard value (integers beyond 64 bits,
lone surrogates) draw it in every example with a strategy of their own, and one
dataclass is drawn by ``hypothesis.strategies.from_type`` as a user might.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from statemigrate import Registry
from statemigrate._model._schema import SchemaVersion
from statemigrate.testing import from_schema
from zoo import models, records


@dataclass(frozen=True)
class Entry:
    """One zoo schema.

    Attributes:
        name: the component name it is registered under (version 1).
        type: the schema type.
        draw: a strategy for its states, or ``None`` for the testing kit's.
    """

    name: str
    type: object
    draw: Callable[[], st.SearchStrategy[Any]] | None = None

    def states(self, schema: SchemaVersion) -> st.SearchStrategy[Any]:
        """The strategy of this schema's states."""
        return self.draw() if self.draw is not None else from_schema(schema, form="state")


def _big_ints() -> st.SearchStrategy[int]:
    return st.one_of(
        st.integers(min_value=2**64, max_value=2**200),
        st.integers(min_value=-(2**200), max_value=-(2**63) - 1),
        st.integers(min_value=2**63, max_value=2**64 - 1),
        st.integers(-(2**63), 2**63 - 1),
    )


def _big_int_states() -> st.SearchStrategy[Any]:
    return st.builds(
        models.BigInts,
        counter=_big_ints(),
        balances=st.dictionaries(st.text(max_size=3), _big_ints(), max_size=3),
    )


def _surrogate_text() -> st.SearchStrategy[str]:
    lone = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
    return st.tuples(st.text(max_size=3), lone, st.text(max_size=3)).map("".join)


def _surrogate_states() -> st.SearchStrategy[Any]:
    return st.builds(
        models.Texts,
        text=_surrogate_text(),
        words=st.lists(_surrogate_text() | st.text(), max_size=3),
        by_text=st.dictionaries(_surrogate_text(), _surrogate_text(), max_size=3),
    )


def _points() -> st.SearchStrategy[Any]:
    return st.from_type(records.Point)


ZOO: tuple[Entry, ...] = (
    # scalars and their kin
    Entry("basic", models.Basic),
    Entry("enums", models.Enums),
    Entry("literals", models.Literals),
    Entry("times", models.Times),
    Entry("numbers", models.Numbers),
    Entry("identifiers", models.Identifiers),
    Entry("collections", models.Collections),
    Entry("big-ints", models.BigInts, _big_int_states),
    Entry("surrogates", models.Texts, _surrogate_states),
    # aliases and extra fields
    Entry("alias-required", models.AliasRequired),
    Entry("alias-by-name", models.AliasByName),
    Entry("alias-validation-only", models.AliasValidationOnly),
    Entry("alias-serialization-only", models.AliasSerializationOnly),
    Entry("alias-generated", models.AliasGenerated),
    Entry("extra-allow", models.ExtraAllow),
    Entry("extra-forbid", models.ExtraForbid),
    # serialization
    Entry("computed-forbid", models.ComputedForbid),
    Entry("field-serializer", models.FieldSerialized),
    Entry("plain-serializer", models.PlainSerialized),
    Entry("excluded-required", models.ExcludedRequired),
    Entry("excluded-optional", models.ExcludedOptional),
    Entry("secrets", models.Secrets),
    # unions
    Entry("tagged-union", models.Tagged),
    Entry("untagged-union", models.Untagged),
    # structure
    Entry("nested", models.Nested),
    Entry("polymorphic", models.Polymorphic),
    Entry("any", models.AnyHolder),
    Entry("optionals", models.Optionals),
    Entry("constrained", models.Constrained),
    Entry("keyed-dicts", models.KeyedDicts),
    Entry("tree", models.Tree),
    Entry("chain", models.Chain),
    # validators
    Entry("validators-idempotent", models.Normalized),
    Entry("validator-not-idempotent", models.Stamped),
    Entry("model-validator", models.Ranged),
    Entry("before-validator", models.Split),
    # configurations
    Entry("strict", models.Strict),
    Entry("frozen-keys", models.FrozenSet),
    Entry("generic", models.IntBox),
    Entry("root-model", models.Ledger),
    # dataclasses
    Entry("dataclass-from-type", records.Point, _points),
    Entry("dataclass-nested", records.Timeline),
    Entry("dataclass-init-false", records.Totalled),
    Entry("pydantic-dataclass", records.PydanticRecord),
    Entry("pydantic-dataclass-alias", records.PydanticAliased),
    # TypedDicts and bare types
    Entry("typeddict", records.Row),
    Entry("typeddict-rich", records.RichRow),
    Entry("typeddict-alias", records.AliasedRow),
    Entry("typeddict-cache", records.Sessions),
    Entry("bare-int-keys", dict[int, list[datetime.datetime]]),
    Entry("bare-models", list[models.Leaf]),
    Entry("bare-rows", dict[str, records.RichRow]),
)

BY_NAME = {entry.name: entry for entry in ZOO}


class Holder:
    """A component that holds the state it is given, as a service's object would."""

    def __init__(self, state: Any = None) -> None:
        self.state = state

    def export_state(self) -> Any:
        return self.state

    def import_state(self, state: Any) -> None:
        self.state = state


def registry_for(name: str) -> tuple[Registry, type[Holder]]:
    """A registry holding zoo schema ``name`` as version 1, and its component class.

    Raises:
        StateMigrateError: the library refuses the schema at registration.
    """
    registry = Registry()
    registry.add_schema(name, 1, BY_NAME[name].type)
    holder: type[Holder] = registry.migratable(name, version=1)(
        type(f"Holder_{name}", (Holder,), {})
    )
    return registry, holder
