"""Hypothesis strategies for the plain data of any registered schema version.

The strategies are derived from the pydantic *core schema* of a version (the structure
pydantic itself validates with), not from its JSON Schema and not from
:func:`hypothesis.strategies.from_type`:

- the JSON Schema forgets what is not JSON: the key type of ``dict[int, str]``, that a
  ``Decimal`` is not any string, that a set's items are hashable;
- ``from_type`` builds models through their constructor and knows nothing of
  ``Field(ge=0)`` or ``Field(pattern=...)``, so most generated values would fail
  validation, and it cannot see ``typing.TypedDict`` keys on Python < 3.12.

The core schema carries every field, alias, default, optional key, constraint and key
type, so the generated values are almost always valid. Each value is then validated and
exported by the version's own :class:`~statemigrate.SchemaVersion` and converted to
plain data, which is exactly what a snapshot section holds and what migration steps
receive. The rare value a constraint the builder does not model would break (a
``multiple_of`` on a float, a custom validator) is filtered out.

Two forms are drawn. The *plain* form (the default) is what steps see. The *state* form
is what a component holds: the validated model, dataclass or dict, whose values go
beyond plain data wherever the schema lets them, so that a snapshot round trip is
tested on what services really keep: dicts with int, enum or tuple keys, sets, tuples,
datetimes with and without a zone (fixed offsets, and ``ZoneInfo`` zones with their
daylight-saving changeover hours), decimals, secrets, instances of a model's
subclasses in a field typed as the model (the schema's own type is drawn as itself:
its subclasses are often its later versions), ``Any`` fields holding datetimes and tuples,
extra fields of ``extra="allow"`` models, and, now and then, integers beyond 64 bits
and strings holding a lone surrogate. Lone surrogates come in about one state in
:data:`_SURROGATE_STATES`, where each string has even odds of holding one: a snapshot
refuses such a state whole, so spreading them over every string would leave a
string-heavy schema few states to check. Which kind of state it is gets drawn once, at
the top, between two strategies built for the schema: one roll per state, not one per
string. Strings with whitespace at an end come the same way, in both forms: about one
state in :data:`~statemigrate.testing._spaced.SPACED_STATES` is a spaced one (see
``_spaced``), so four strategies are built, one for each kind of state.

Floats are finite unless the schema allows infinities, and never NaN (NaN is not equal
to itself, so no round trip could be checked). Special floats and decimals (``-0.0``,
the infinities, a decimal NaN where allowed) and non-empty collections of records are
drawn more often than hypothesis would draw them (see :mod:`._emphasis`).

An ``int`` field without a bound on a side now and then holds an integer beyond 64 bits
on that side, in both forms: the plain form holds it as its decimal text, as a snapshot
does and as a step receives it.

Most collections hold at most :data:`SMALL_SIZE` items and most strings are short, which
keeps a few hundred examples per step cheap; about one collection in
:data:`~statemigrate.testing._odds.LONG` is long, with more items, up to ``max_size``,
and about one string (or bytes value) in :data:`~statemigrate.testing._odds.LONG` holds
up to ``16 * max_size`` characters (within the schema's own bounds). A step that keeps
only the first few items of a list, or truncates a string, shows only on those.

This module holds the entry points. The core-schema walker is
:mod:`statemigrate.testing._builder`; the values drawn with no schema (plain data,
what ``Any`` holds) are in :mod:`statemigrate.testing._anyvalues`, the zones of datetimes
in :mod:`statemigrate.testing._zones`, the odds of the rare draws in
:mod:`statemigrate.testing._odds`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from hypothesis import strategies as st

from statemigrate._errors import ValidationError
from statemigrate._model._registry import Registry
from statemigrate._model._schema import SchemaVersion
from statemigrate.testing._anyvalues import SMALL_SIZE, plain_data
from statemigrate.testing._builder import REJECTED, Builder, Named
from statemigrate.testing._coverage import Coverage
from statemigrate.testing._odds import rarely
from statemigrate.testing._spaced import SPACED_STATES

__all__ = [
    "DEFAULT_MAX_SIZE",
    "SMALL_SIZE",
    "Form",
    "from_schema",
    "plain_data",
    "states",
    "strategies_for",
]

Form = Literal["plain", "state"]
"""What a strategy draws: plain data (what steps see) or validated states."""

DEFAULT_MAX_SIZE = 16
"""Largest number of items in a generated collection, unless the schema needs more;
strings get up to sixteen times as many characters."""

_SURROGATE_STATES = 8  # about one state in this many may hold lone surrogates


def from_schema(
    schema: SchemaVersion, *, max_size: int = DEFAULT_MAX_SIZE, form: Form = "plain"
) -> st.SearchStrategy[Any]:
    """Return a strategy for plain data, or for states, that are valid at ``schema``.

    With ``form="plain"`` every value ``x`` it draws satisfies ``schema.validate(x)``
    and is the plain form a state exports to, so it can be handed to a migration step
    or encoded into a snapshot as it is. With ``form="state"`` it draws what
    ``schema.validate`` returns (a model or dataclass instance, or a dict), holding the
    rich values listed in the module documentation; that is what a component holds and
    what a snapshot round trip must give back exactly. Draw a fresh value (or copy it)
    for each use: steps may mutate.

    Args:
        schema: the schema version.
        max_size: the largest number of items in a generated collection (most hold
            at most :data:`SMALL_SIZE`); long strings get up to sixteen times as many
            characters.
        form: ``"plain"`` or ``"state"``.

    Raises:
        hypothesis.errors.ResolutionFailed: the schema holds something no strategy can
            be derived for (a plain validator function, an arbitrary class); pass your
            own strategy for that version to :func:`~statemigrate.testing.check_migrations`.
    """
    return from_schema_counted(schema, Draws(), max_size=max_size, form=form)


@dataclass
class Draws:
    """How many values a schema's strategy drew, and how many of them validation
    refused (each drawn again): a check reads it after its run, to say when most
    were refused and what was checked leans to the few it accepts."""

    drawn: int = 0
    refused: int = 0
    coverage: Coverage = field(default_factory=Coverage)

    @property
    def mostly_refused(self) -> bool:
        return self.refused * 2 > self.drawn


def from_schema_counted(
    schema: SchemaVersion, draws: Draws, *, max_size: int, form: Form
) -> st.SearchStrategy[Any]:
    """:func:`from_schema`, counting its draws and refusals into ``draws``."""
    if max_size < 0:
        raise ValueError(f"max_size must be >= 0, not {max_size}")
    if form not in ("plain", "state"):
        raise ValueError(f"form must be 'plain' or 'state', not {form!r}")
    where = f"{schema.component} version {schema.version}"

    def build(*, surrogates: bool, spaced: bool) -> st.SearchStrategy[Any]:
        return Builder(
            schema.adapter.core_schema,
            max_size=max_size,
            where=where,
            rich=form == "state",
            surrogates=surrogates,
            spaced=spaced,
            exact=frozenset({schema.type}),
            coverage=draws.coverage,
        ).build()

    def kind_of_state(*, spaced: bool) -> st.SearchStrategy[Any]:
        drawn = build(surrogates=False, spaced=spaced)
        if form == "state":
            # Whether this state is one of the few whose strings may hold lone
            # surrogates is drawn once, here, rather than at every string: a choice
            # per string made every example cost more, and a snapshot refuses such a
            # state whole.
            drawn = rarely(drawn, build(surrogates=True, spaced=spaced), every=_SURROGATE_STATES)
        return drawn

    # So is whether its strings may have whitespace at an end: a choice per string
    # made a failing dict shrink to its one entry that fails less often.
    raw = rarely(
        kind_of_state(spaced=False), kind_of_state(spaced=True), every=SPACED_STATES
    )
    raw = Named(_begun(raw, draws.coverage), f"from_schema({where}, form={form!r})")

    def normalize(value: object) -> object:
        draws.drawn += 1
        try:
            state = schema.validate(value)
            result = state if form == "state" else schema.export(state, walk=True)
        except (ValidationError, TypeError):
            # The builder approximated a constraint or a validator; draw again.
            draws.refused += 1
            draws.coverage.end(kept=False)
            return REJECTED
        draws.coverage.end(kept=True)
        return result

    return raw.map(normalize).filter(lambda value: value is not REJECTED)


def _begun(raw: st.SearchStrategy[Any], coverage: Coverage) -> st.SearchStrategy[Any]:
    """``raw``, each draw of which is a new state for the coverage."""

    @st.composite
    def begun(draw: st.DrawFn) -> Any:
        coverage.begin()
        return draw(raw)

    return begun()


def states(
    registry: Registry,
    component: str,
    version: int,
    *,
    max_size: int = DEFAULT_MAX_SIZE,
    form: Form = "plain",
) -> st.SearchStrategy[Any]:
    """Return a strategy for plain data (or states) valid at ``version`` of ``component``.

    Raises:
        UnknownComponentError: the version is not registered.
        hypothesis.errors.ResolutionFailed: see :func:`from_schema`.
    """
    return from_schema(registry.schema_for(component, version), max_size=max_size, form=form)


def strategies_for(
    registry: Registry,
    *,
    components: Iterable[str] | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
    form: Form = "plain",
) -> dict[tuple[str, int], st.SearchStrategy[Any]]:
    """Return a strategy per ``(component, version)`` of every registered schema.

    Raises:
        UnknownComponentError: a component in ``components`` has no schema.
        hypothesis.errors.ResolutionFailed: see :func:`from_schema`.
    """
    names = components if components is not None else registry.components()
    result: dict[tuple[str, int], st.SearchStrategy[Any]] = {}
    for name in names:
        for version in registry.versions(name):
            result[(name, version)] = states(
                registry, name, version, max_size=max_size, form=form
            )
    return result
