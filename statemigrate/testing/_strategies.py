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
string.

Floats are finite unless the schema allows infinities, and never NaN (NaN is not equal
to itself, so no round trip could be checked). Special floats and decimals (``-0.0``,
the infinities, a decimal NaN where allowed) and non-empty collections of records are
drawn more often than hypothesis would draw them (see :mod:`._emphasis`).

An ``int`` field without a bound on a side now and then holds an integer beyond 64 bits
on that side, in both forms: the plain form holds it as its decimal text, as a snapshot
does and as a step receives it.

Most collections hold at most :data:`SMALL_SIZE` items and most strings are short, which
keeps a few hundred examples per step cheap; about one collection in :data:`_LONG` is
long, with more items, up to ``max_size``, and about one string (or bytes value) in
:data:`_LONG` holds up to ``16 * max_size`` characters (within the schema's own bounds).
A step that keeps only the first few items of a list, or truncates a string, shows
only on those.
"""

from __future__ import annotations

import datetime
import functools
import math
import pathlib
import zoneinfo
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import pydantic
from hypothesis import strategies as st
from hypothesis.errors import ResolutionFailed

from statemigrate._errors import ValidationError
from statemigrate._model._coreschema import schema_refs
from statemigrate._model._registry import Registry
from statemigrate._model._schema import SchemaVersion
from statemigrate.testing._emphasis import (
    EMPTY,
    SPECIAL,
    RecordCollections,
    decimal_specials,
    float_specials,
)
from statemigrate.testing._tags import tag_key, with_tag
from statemigrate.testing._typedleaves import file_system_paths, plain_function_values, urls

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

SMALL_SIZE = 4
"""Most generated collections hold at most this many items (or ``max_size``, if less):
the long ones come about once in :data:`_LONG` draws."""

_INT_MIN = -(2**63)
_INT_MAX = 2**63 - 1
_UINT_END = 2**64  # the first integer msgpack cannot hold
_SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
_RARELY = 16  # a value the state form draws "now and then" comes about once in this many
_LONG = 8  # about one collection, string or bytes value in this many is drawn long
_TEXT_PER_ITEM = 16  # a long string's characters at most, per item of max_size
_PATTERN = 8  # a long string repeats a drawn one of at most this many characters
_SURROGATE_STATES = 8  # about one state in this many may hold lone surrogates
_SUBCLASSES = 8  # subclasses of one model whose instances the state form draws, at most
_REJECTED = object()
_ABSENT = object()  # an optional field drawn as left out


def _plain_leaves() -> st.SearchStrategy[Any]:
    """The scalars of plain data: ``None``, bools, 64-bit ints, finite floats, str, bytes."""
    return (
        st.none()
        | st.booleans()
        | st.integers(_INT_MIN, _INT_MAX)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text()
        | st.binary()
    )


def plain_data(*, max_size: int = SMALL_SIZE) -> st.SearchStrategy[Any]:
    """Any plain data: ``None``, bools, 64-bit ints, finite floats, str, bytes, and
    lists and str-keyed dicts of them, with at most ``max_size`` items each."""
    return st.recursive(
        _plain_leaves(),
        lambda inner: (
            st.lists(inner, max_size=max_size)
            | st.dictionaries(st.text(), inner, max_size=max_size)
        ),
        max_leaves=4 * max_size,
    )


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

    def build(*, surrogates: bool) -> st.SearchStrategy[Any]:
        return _Builder(
            schema.adapter.core_schema,
            max_size=max_size,
            where=where,
            rich=form == "state",
            surrogates=surrogates,
            exact=frozenset({schema.type}),
        ).build()

    raw = build(surrogates=False)
    if form == "state":
        # Whether this state is one of the few whose strings may hold lone surrogates
        # is drawn once, here, rather than at every string: a choice per string made
        # every example cost more, and a snapshot refuses such a state whole.
        raw = _rarely(raw, build(surrogates=True), every=_SURROGATE_STATES)
    raw = _Named(raw, f"from_schema({where}, form={form!r})")

    def normalize(value: object) -> object:
        draws.drawn += 1
        try:
            state = schema.validate(value)
            return state if form == "state" else schema.export(state, walk=True)
        except (ValidationError, TypeError):
            # The builder approximated a constraint or a validator; draw again.
            draws.refused += 1
            return _REJECTED

    return raw.map(normalize).filter(lambda value: value is not _REJECTED)


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


def _rich_values(
    *, max_size: int = SMALL_SIZE, surrogates: bool = False
) -> st.SearchStrategy[Any]:
    """Values a field typed ``Any`` may hold in a live state: plain data and datetimes,
    dates, times, timedeltas, decimals, UUIDs, tuples, sets, int-keyed dicts, now and
    then an integer beyond 64 bits, and with ``surrogates`` a string with a lone
    surrogate."""
    # The same branches either way, so both kinds of state draw alike otherwise.
    surrogate = _one_in_two(st.none(), _with_surrogate(0, None)) if surrogates else st.none()
    leaves = (
        _plain_leaves()
        | st.datetimes(timezones=_zones(None))
        | st.dates()
        | st.times(timezones=_zones(None))
        | st.timedeltas()
        | st.decimals(allow_nan=False, allow_infinity=False)
        | st.uuids()
        | _rarely(st.none(), _big_ints(above=True, below=True))
        | surrogate
    )
    hashable = (
        st.integers(_INT_MIN, _INT_MAX) | st.text() | st.datetimes() | st.decimals(allow_nan=False)
    )
    # The leaves come first as well as inside containers: a field typed ``Any`` holding
    # one datetime is as common as one holding a list; so is a tuple of leaves, which
    # a snapshot refuses under ``Any`` (it would come back a list).
    return leaves | st.lists(leaves, min_size=1, max_size=max_size).map(tuple) | st.recursive(
        leaves,
        lambda inner: (
            st.lists(inner, max_size=max_size)
            | st.lists(inner, max_size=max_size).map(tuple)
            | st.sets(hashable, max_size=max_size)
            | st.dictionaries(st.text(), inner, max_size=max_size)
            | st.dictionaries(st.integers(_INT_MIN, _INT_MAX), inner, max_size=max_size)
        ),
        max_leaves=4 * max_size,
    )


class _Named(st.SearchStrategy[Any]):
    """``inner``, shown by a short name. hypothesis shows the strategy a filter
    retries (a drawn value normalize refused, such as an int past 64 bits where the
    export refuses one), and the full form of a schema's strategy runs to tens of
    kilobytes: hypothesis warns of it, and under ``filterwarnings = error`` the check
    failed as unable to generate states. So every filter over a strategy that may be
    large filters a named one."""

    def __init__(self, inner: st.SearchStrategy[Any], name: str) -> None:
        super().__init__()
        self.inner = inner
        self.name = name

    def do_draw(self, data: Any) -> Any:
        return data.draw(self.inner)

    def __repr__(self) -> str:
        return self.name


@st.composite
def _rarely(
    draw: st.DrawFn,
    common: st.SearchStrategy[Any],
    rare: st.SearchStrategy[Any],
    *,
    every: int = _RARELY,
) -> Any:
    """``common``, and about once in ``every`` draws ``rare``; shrinks to ``common``.

    A composite rather than a ``flatmap``, rolling with ``sampled_from`` rather than
    ``integers`` (a lazy strategy, one more level on every draw): this runs for most
    values of every example, so each level it saves is a saving per value."""
    if draw(_roll(every)) == every - 1:
        return draw(rare)
    return draw(common)


@st.composite
def _of_length(
    draw: st.DrawFn,
    lengths: st.SearchStrategy[int],
    by_length: Mapping[int, st.SearchStrategy[Any]],
) -> Any:
    """A value of ``by_length[n]``, for ``n`` drawn from ``lengths``."""
    return draw(by_length[draw(lengths)])


def _with_specials(common: st.SearchStrategy[Any], specials: list[Any]) -> st.SearchStrategy[Any]:
    """``common``, and about once in :data:`~statemigrate.testing._emphasis.SPECIAL`
    draws one of ``specials``; shrinks to ``common``."""
    return _rarely(common, st.sampled_from(specials), every=SPECIAL) if specials else common


def _skewed(low: int, high: int) -> st.SearchStrategy[int]:
    """Sizes from ``low`` to ``high``, the smaller ones likelier (the least of two
    uniform draws: a third of the way up on average), as cheap examples are."""
    return st.tuples(st.integers(low, high), st.integers(low, high)).map(min)


@functools.cache
def _roll(every: int) -> st.SearchStrategy[int]:
    """0 to ``every - 1`` at even odds, shrinking to 0; one strategy per count."""
    return st.sampled_from(range(every))


def _one_in_two(
    common: st.SearchStrategy[Any], rare: st.SearchStrategy[Any]
) -> st.SearchStrategy[Any]:
    """``common`` or ``rare`` at even odds; shrinks to ``common``."""
    return _rarely(common, rare, every=2)


def _big_ints(*, above: bool, below: bool) -> st.SearchStrategy[int]:
    """Integers no 64-bit msgpack integer holds, beyond the unbounded sides."""
    sides = []
    if above:
        sides.append(st.integers(min_value=_UINT_END))
    if below:
        sides.append(st.integers(max_value=_INT_MIN - 1))
    return st.one_of(sides)


def _with_surrogate(low: int, high: int | None) -> st.SearchStrategy[str]:
    """Strings of ``low`` to ``high`` characters holding at least one lone surrogate."""
    room = None if high is None else max(0, high - 1)
    return st.tuples(st.text(max_size=room), _SURROGATES, st.text(max_size=room)).map(
        lambda parts: parts[0] + parts[1] + parts[2]
    ).filter(lambda text: low <= len(text) and (high is None or len(text) <= high))


_NAMED_ZONES = ("America/New_York", "Europe/London", "Australia/Lord_Howe")
"""Zones with daylight saving, Lord Howe's a changeover of half an hour."""

_NAMED_ZONE_YEARS = (datetime.datetime(1990, 1, 1), datetime.datetime(2100, 1, 1))
"""The wall times drawn under a named zone: from 1990, where each of them has had
offsets of whole minutes for decades (their local mean times had seconds)."""


@functools.cache
def _named_zones() -> list[zoneinfo.ZoneInfo]:
    """The named zones this machine's time zone database holds (none without one)."""
    found = []
    for name in _NAMED_ZONES:
        try:
            found.append(zoneinfo.ZoneInfo(name))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            continue
    return found


_CHANGEOVER_YEARS = (2024, 2046)  # one by the zone's table, one past it (its rule)


@functools.cache
def _changeover_times() -> tuple[datetime.datetime, ...]:
    """Wall times each named zone skips or repeats in :data:`_CHANGEOVER_YEARS`, at
    quarter hours: where a datetime's UTC offset depends on its fold (PEP 495)."""
    found = []
    for zone in _named_zones():
        for year in _CHANGEOVER_YEARS:
            noon = datetime.datetime(year, 1, 1, 12, tzinfo=zone)
            for _ in range(366):
                following = noon + datetime.timedelta(days=1)
                if following.utcoffset() != noon.utcoffset():
                    for quarter in range(96):
                        wall = noon + datetime.timedelta(minutes=15 * quarter)
                        if wall.utcoffset() != wall.replace(fold=1).utcoffset():
                            found.append(wall)
                noon = following
    return tuple(found)


def _pick(index: int, *choices: datetime.datetime) -> datetime.datetime:
    return choices[index]


def _in_changeover(
    wall: datetime.datetime, *, fold: int, seconds: int, microsecond: int
) -> datetime.datetime:
    """``wall`` moved on within its quarter hour, with ``fold``."""
    moved = wall + datetime.timedelta(seconds=seconds)
    return moved.replace(fold=fold, microsecond=microsecond)


def _zones(constraint: object) -> st.SearchStrategy[datetime.tzinfo | None]:
    """The zones a datetime or time may carry under pydantic's ``tz_constraint``."""
    offsets = st.integers(-1439, 1439).map(
        lambda minutes: datetime.timezone(datetime.timedelta(minutes=minutes))
    )
    if constraint == "naive":
        return st.none()
    if constraint == "aware":
        return st.just(datetime.UTC) | offsets
    if isinstance(constraint, int):
        return st.just(datetime.timezone(datetime.timedelta(seconds=constraint)))
    return st.none() | st.just(datetime.UTC) | offsets


# --- the core-schema walker --------------------------------------------------------------

Node = Mapping[str, Any]


class _Builder:
    """Turns one pydantic core schema into a strategy for values it validates."""

    def __init__(
        self,
        root: Node,
        *,
        max_size: int,
        where: str,
        rich: bool = False,
        surrogates: bool = False,
        exact: frozenset[object] = frozenset(),
        subclasses: dict[type, st.SearchStrategy[Any]] | None = None,
    ) -> None:
        self.root = root
        self.max_size = max_size
        self.small = min(max_size, SMALL_SIZE)
        self.where = where
        self.rich = rich  # drawing the state form: values beyond plain data
        # Drawing one of the few states whose strings may hold lone surrogates (state
        # form only): each string then holds one at even odds.
        self.surrogates = rich and surrogates
        # Models drawn as themselves only: the schema's own type is what a component of
        # that version holds, while its subclasses are often the schema's later versions.
        self.exact = exact
        self.refs: dict[str, Node] = {}
        self.deferred: dict[str, st.SearchStrategy[Any]] = {}
        self.built: dict[str, st.SearchStrategy[Any]] = {}
        # Shared with the builders of subclasses, so a model whose subclass refers back
        # to it is built once.
        self.subclasses = {} if subclasses is None else subclasses
        # Every schema that carries a ``ref``, so references can find it.
        for ref, node in schema_refs(root).items():
            self.refs.setdefault(ref, node)
        self.record_collections = RecordCollections(self.refs)
        self.kinds: dict[str, Callable[[Node], st.SearchStrategy[Any]]] = {
            "any": self._any,
            "none": lambda node: st.none(),
            "bool": lambda node: st.booleans(),
            "int": self._int,
            "float": self._float,
            "decimal": self._decimal,
            "str": self._str,
            "bytes": self._bytes,
            "date": self._date,
            "time": lambda node: st.times(timezones=_zones(node.get("tz_constraint"))),
            "datetime": self._datetime,
            "timedelta": lambda node: st.timedeltas(),
            "uuid": lambda node: st.uuids(version=node.get("version")),
            "url": urls,
            "multi-host-url": urls,
            "literal": lambda node: st.sampled_from(list(node["expected"])),
            "enum": lambda node: st.sampled_from(list(node["members"])),
            "list": self._list,
            "set": lambda node: self._list(node, unique=True),
            "frozenset": lambda node: self._list(node, unique=True),
            "deque": self._list,
            "tuple": self._tuple,
            # A tuple of the fields' values, in order: validation makes the NamedTuple.
            "named-tuple": lambda node: st.tuples(
                *[self.build(field["schema"]) for field in node["fields"]]
            ),
            "dict": self._dict,
            # Drawn as dicts: validation makes the OrderedDict or the Counter.
            "ordered-dict": self._dict,
            "counter": self._dict,
            "nullable": lambda node: st.none() | self.build(node["schema"]),
            "union": self._union,
            "tagged-union": self._tagged_union,
            "typed-dict": self._typed_dict,
            "model-fields": self._model_fields,
            "dataclass-args": self._dataclass_args,
            "chain": lambda node: self.build(node["steps"][0]),
            # The lax schema says what validation accepts; where it is a plain function
            # (IP addresses, say), the strict one still names the type.
            "lax-or-strict": lambda node: self._first(node["lax_schema"], node["strict_schema"]),
            "json-or-python": lambda node: self._first(node["python_schema"], node["json_schema"]),
            "model": self._model,
            "definition-ref": self._ref,
            "complex": lambda node: st.complex_numbers(allow_nan=False, allow_infinity=False),
            "is-instance": self._instance,
            "function-plain": self._plain_function,
        }
        # Wrappers whose inner schema describes the input well enough; a "before" or
        # "wrap" validator may accept more, but never needs more than its inner schema.
        for kind in (
            "default",
            "function-after",
            "function-before",
            "function-wrap",
            "custom-error",
            "dataclass",
            "definitions",
        ):
            self.kinds[kind] = lambda node: self.build(node["schema"])
        self.kinds["function-after"] = self._after

    def _after(self, node: Node) -> st.SearchStrategy[Any]:
        # A path that pydantic tests against the file system: its inner schema, any
        # path, would draw names that mostly fail the test.
        paths = file_system_paths(node, self.where)
        return paths if paths is not None else self.build(node["schema"])

    def _plain_function(self, node: Node) -> st.SearchStrategy[Any]:
        values = plain_function_values(node)
        if values is None:
            raise ResolutionFailed(
                f"cannot derive a strategy for {self.where}: a plain validator function"
                " (PlainValidator, or a type's own validation) takes inputs no schema"
                " describes; pass a strategy for this version explicitly"
            )
        return values

    def build(self, node: Node | None = None) -> st.SearchStrategy[Any]:
        node = self.root if node is None else node
        kind = node.get("type")
        handler = self.kinds.get(kind) if isinstance(kind, str) else None
        if handler is None:
            raise ResolutionFailed(
                f"cannot derive a strategy for {self.where}: pydantic schema of type"
                f" {kind!r} is not supported; pass a strategy for this version explicitly"
            )
        return handler(node)

    def _first(self, *nodes: Node) -> st.SearchStrategy[Any]:
        """The strategy of the first of ``nodes`` one can be derived for."""
        error: ResolutionFailed | None = None
        for node in nodes:
            try:
                return self.build(node)
            except ResolutionFailed as exc:
                error = error or exc
        assert error is not None
        raise error

    def _ref(self, node: Node) -> st.SearchStrategy[Any]:
        ref = node["schema_ref"]
        if ref not in self.refs:
            raise ResolutionFailed(f"{self.where}: unresolved schema reference {ref!r}")
        if ref not in self.deferred:
            # Deferred, so a recursive type refers to itself instead of recursing here.
            self.deferred[ref] = st.deferred(lambda: self._by_ref(ref))
        return self.deferred[ref]

    def _by_ref(self, ref: str) -> st.SearchStrategy[Any]:
        if ref not in self.built:
            self.built[ref] = self.build(self.refs[ref])
        return self.built[ref]

    # --- scalars ---

    def _any(self, node: Node) -> st.SearchStrategy[Any]:
        # Kept small: an Any value nests containers of its own, and its shape is
        # not what a step is written against.
        if self.rich:
            return _rich_values(max_size=self.small, surrogates=self.surrogates)
        return plain_data(max_size=self.small)

    def _int(self, node: Node) -> st.SearchStrategy[int]:
        low = _bound(node, "ge", "gt", 1, _INT_MIN)
        high = _bound(node, "le", "lt", -1, _INT_MAX)
        step = node.get("multiple_of")
        if isinstance(step, int) and step > 0:
            return st.integers(-(-low // step), high // step).map(lambda k: k * step)
        common = st.integers(low, high)
        above = all(node.get(key) is None for key in ("le", "lt"))
        below = all(node.get(key) is None for key in ("ge", "gt"))
        if above or below:
            # Python ints have no bound; a state may hold one msgpack cannot. Its plain
            # form is its decimal text, which is what a step receives: drawn in both
            # forms, so a step doing arithmetic on it fails its check, not a restore.
            return _rarely(common, _big_ints(above=above, below=below))
        return common

    def _float(self, node: Node) -> st.SearchStrategy[float]:
        low = node.get("ge", node.get("gt"))
        high = node.get("le", node.get("lt"))
        allow_inf = node.get("allow_inf_nan", True) and low is None and high is None
        result = st.floats(
            min_value=low,
            max_value=high,
            exclude_min="gt" in node,
            exclude_max="lt" in node,
            allow_nan=False,
            allow_infinity=bool(allow_inf),
        )
        step = node.get("multiple_of")
        if step:
            result = result.filter(lambda x: math.isclose(x / step, round(x / step)))
        return _with_specials(result, float_specials(node, allow_infinity=bool(allow_inf)))

    def _decimal(self, node: Node) -> st.SearchStrategy[Any]:
        places = node.get("decimal_places")
        finite = st.decimals(
            min_value=node.get("ge", node.get("gt")),
            max_value=node.get("le", node.get("lt")),
            places=places if isinstance(places, int) else None,
            allow_nan=False,
            allow_infinity=False,
        )
        return _with_specials(finite, decimal_specials(node))

    def _str(self, node: Node) -> st.SearchStrategy[str]:
        low = node.get("min_length") or 0
        high = node.get("max_length")
        pattern = node.get("pattern")
        if isinstance(pattern, str):
            # pydantic searches for the pattern; a full match is one such string, and
            # drawing only those spares hypothesis padding text around every match.
            matching = st.from_regex(pattern, fullmatch=True)
            return matching.filter(lambda s: len(s) >= low and (high is None or len(s) <= high))
        text = self._long_or_short(st.text, low, high)
        if self.surrogates and (high is None or high > 0):
            # A Python str may hold a lone surrogate, which UTF-8 cannot encode.
            return _one_in_two(text, _with_surrogate(low, high))
        return text

    def _bytes(self, node: Node) -> st.SearchStrategy[bytes]:
        return self._long_or_short(
            st.binary, node.get("min_length") or 0, node.get("max_length")
        )

    def _long_or_short(
        self, make: Callable[..., st.SearchStrategy[Any]], low: int, high: int | None
    ) -> st.SearchStrategy[Any]:
        """A str or bytes strategy: short as hypothesis draws them, and about once in
        :data:`_LONG` draws of a length up to ``16 * max_size`` (a truncation shows)."""
        longest = max(low, _TEXT_PER_ITEM * self.max_size)
        if high is not None:
            longest = min(high, longest)
        short = make(min_size=low, max_size=longest)
        if longest <= max(low, 1):
            return short
        # A few characters repeated to the length: drawing each of hundreds of characters
        # would cost more than the rest of an example, and a truncation shows either way.
        long = st.tuples(make(min_size=1, max_size=_PATTERN), st.integers(max(low, 1), longest))
        return _rarely(short, long.map(_repeated), every=_LONG)

    def _date(self, node: Node) -> st.SearchStrategy[datetime.date]:
        low, high = node.get("ge", node.get("gt")), node.get("le", node.get("lt"))
        return st.dates(
            min_value=low if isinstance(low, datetime.date) else datetime.date.min,
            max_value=high if isinstance(high, datetime.date) else datetime.date.max,
        )

    def _datetime(self, node: Node) -> st.SearchStrategy[datetime.datetime]:
        constraint = node.get("tz_constraint")
        fixed = st.datetimes(timezones=_zones(constraint))
        zones = _named_zones() if constraint in (None, "aware") else []
        if not zones:
            return fixed
        named = st.datetimes(*_NAMED_ZONE_YEARS, timezones=st.sampled_from(zones))
        # hypothesis meets a changeover now and then only: these are all in one, the
        # skipped hour or the repeated one with either fold.
        changeovers = st.builds(
            _in_changeover,
            st.sampled_from(_changeover_times()),
            fold=st.integers(0, 1),
            seconds=st.integers(0, 15 * 60 - 1),
            microsecond=st.integers(0, 999_999),
        )
        # All three drawn, one picked: the pick shrinks to the fixed offsets while the
        # draws stay valid, where a one_of's shrinker often cannot leave its branch.
        return st.builds(_pick, st.integers(0, 2), fixed, named, changeovers)

    # --- containers ---

    def _sizes(self, node: Node) -> tuple[int, int]:
        low = node.get("min_length") or 0
        high = node.get("max_length")
        cap = max(low, self.max_size)
        return low, cap if high is None else min(high, cap)

    def _sized(
        self,
        low: int,
        high: int,
        make: Callable[[int, int], st.SearchStrategy[Any]],
        exactly: Callable[[int], st.SearchStrategy[Any]],
    ) -> st.SearchStrategy[Any]:
        """``make(low, top)`` with ``top`` the small size (most draws), and about once
        in :data:`_LONG` draws ``exactly(n)``, n items from above the small size up to
        ``high``: long collections are rare, so most examples stay cheap."""
        top = min(high, max(low, self.small))
        short = make(low, top)
        if high <= top:
            return short
        # One strategy per length, made here: made per draw, as a flatmap would, each
        # long collection paid for building and checking a new strategy.
        by_length = {n: exactly(n) for n in range(top + 1, high + 1)}
        return _rarely(short, _of_length(_skewed(top + 1, high), by_length), every=_LONG)

    def _filled(
        self,
        node: Node,
        low: int,
        high: int,
        make: Callable[[int, int], st.SearchStrategy[Any]],
        exactly: Callable[[int], st.SearchStrategy[Any]],
    ) -> st.SearchStrategy[Any]:
        """:meth:`_sized`; for a collection of records, non-empty in all but about one
        draw in :data:`~statemigrate.testing._emphasis.EMPTY` (that one as hypothesis
        draws it)."""
        drawn = self._sized(low, high, make, exactly)
        if low > 0 or high == 0 or not self.record_collections.holds_records(node):
            return drawn
        return _rarely(self._sized(1, high, make, exactly), drawn, every=EMPTY)

    def _list(self, node: Node, *, unique: bool = False) -> st.SearchStrategy[list[Any]]:
        items = node.get("items_schema")
        inner = self.build(items) if items is not None else plain_data(max_size=self.small)
        low, high = self._sizes(node)
        if unique:
            # A long one is drawn as a list with repeats dropped, so a type with few
            # values (bool items) cannot make n distinct items unsatisfiable.
            return self._filled(
                node,
                low,
                high,
                lambda a, b: st.lists(inner, min_size=a, max_size=b, unique_by=_unique_key),
                lambda n: st.lists(inner, min_size=n, max_size=n).map(_distinct),
            )
        return self._filled(
            node,
            low,
            high,
            lambda a, b: st.lists(inner, min_size=a, max_size=b),
            lambda n: st.lists(inner, min_size=n, max_size=n),
        )

    def _tuple(self, node: Node) -> st.SearchStrategy[tuple[Any, ...]]:
        items = [self.build(item) for item in node.get("items_schema", [])]
        variadic = node.get("variadic_item_index")
        if variadic is None:
            return st.tuples(*items)
        low, high = self._sizes(node)
        fixed = len(items) - 1
        room = max(0, high - fixed)
        # The middle's least size makes the tuple's: no filter, whose retries made
        # hypothesis print the strategy, tens of kilobytes for a tuple of models.
        middle = self._sized(
            min(max(0, low - fixed), room),
            room,
            lambda a, b: st.lists(items[variadic], min_size=a, max_size=b),
            lambda n: st.lists(items[variadic], min_size=n, max_size=n),
        )
        result = st.tuples(st.tuples(*items[:variadic]), middle, st.tuples(*items[variadic + 1 :]))
        return result.map(lambda parts: (*parts[0], *parts[1], *parts[2]))

    def _dict(self, node: Node) -> st.SearchStrategy[dict[Any, Any]]:
        keys_node = node.get("keys_schema")
        values_node = node.get("values_schema")
        keys = self.build(keys_node) if keys_node is not None else st.text()
        values = self.build(values_node) if values_node is not None else plain_data(max_size=2)
        low, high = self._sizes(node)
        # A long one is drawn as pairs, later keys winning: keys of few values (bool,
        # a Literal) cannot make n distinct keys unsatisfiable.
        return self._filled(
            node,
            low,
            high,
            lambda a, b: st.dictionaries(keys, values, min_size=a, max_size=b),
            lambda n: st.lists(st.tuples(keys, values), min_size=n, max_size=n).map(dict),
        )

    def _union(self, node: Node) -> st.SearchStrategy[Any]:
        # Choices no strategy can be derived for are left out, as long as one remains.
        # So are instance checks beside other choices (``SecretStr`` accepts an instance
        # of itself or a str): from_type builds instances without validating them.
        choices = [c[0] if isinstance(c, tuple) else c for c in node["choices"]]
        if any(choice.get("type") != "is-instance" for choice in choices):
            choices = [choice for choice in choices if choice.get("type") != "is-instance"]
        built: list[st.SearchStrategy[Any]] = []
        error: ResolutionFailed | None = None
        for choice in choices:
            try:
                built.append(self.build(choice))
            except ResolutionFailed as exc:
                error = error or exc
        if not built and error is not None:
            raise error
        return st.one_of(built)

    def _tagged_union(self, node: Node) -> st.SearchStrategy[Any]:
        # Each member with its tag, even where the member has a default for it: pydantic
        # reads the tag to pick the member, and a value drawn without one would fail.
        discriminator = node.get("discriminator")
        members = []
        for tag, choice in node["choices"].items():
            member = self.build(choice)
            key = tag_key(choice, discriminator, self.refs)
            if key is not None:
                member = member.map(functools.partial(with_tag, key=key, tag=tag))
            members.append(member)
        return st.one_of(members)

    def _instance(self, node: Node) -> st.SearchStrategy[Any]:
        if isinstance(node["cls"], type) and issubclass(node["cls"], pathlib.PurePath):
            # from_type knows no paths beyond the empty one.
            return st.text().map(node["cls"])
        try:
            return st.from_type(node["cls"])
        except Exception as exc:  # from_type raises several hypothesis errors
            raise ResolutionFailed(
                f"cannot derive a strategy for {self.where}: no strategy for"
                f" {node['cls']!r}; pass a strategy for this version explicitly"
            ) from exc

    # --- records ---

    def _record(
        self, fields: Iterable[tuple[str, Node, bool]]
    ) -> st.SearchStrategy[dict[str, Any]]:
        required: dict[str, st.SearchStrategy[Any]] = {}
        optional: dict[str, st.SearchStrategy[Any]] = {}
        mostly_present = False
        for key, schema, needed in fields:
            if not needed and self.record_collections.holds_records(schema):
                # Left out, its default (most often empty) would hold no record.
                required[key] = _rarely(self.build(schema), st.just(_ABSENT), every=EMPTY)
                mostly_present = True
            else:
                (required if needed else optional)[key] = self.build(schema)
        record = st.fixed_dictionaries(required, optional=optional)
        return record.map(_without_absent) if mostly_present else record

    def _model(self, node: Node) -> st.SearchStrategy[Any]:
        fields = node["schema"]
        record = self.build(fields)
        config = node.get("config") or {}
        extra = fields.get("extra_behavior", config.get("extra_fields_behavior"))
        if extra == "allow" and fields.get("type") == "model-fields":
            record = self._with_extras(record, fields)
        cls = node.get("cls")
        if not self.rich or not isinstance(cls, type) or cls in self.exact:
            return record
        # A field typed as a model also takes instances of its subclasses, and keeps
        # them as they are: a state holds whatever the service put there.
        subclasses = [self._instances_of(sub) for sub in _model_subclasses(cls)]
        return st.one_of(record, *subclasses) if subclasses else record

    def _with_extras(self, record: st.SearchStrategy[Any], fields: Node) -> st.SearchStrategy[Any]:
        taken = set(fields["fields"])
        taken.update(_data_key(name, field) for name, field in fields["fields"].items())
        taken.update(item.get("property_name") for item in fields.get("computed_fields") or ())
        values_node = fields.get("extras_schema")
        values = self.build(values_node) if values_node is not None else self._any(fields)
        extras = st.dictionaries(
            st.text().filter(lambda key: key not in taken), values, max_size=self.small
        )
        return st.tuples(record, extras).map(lambda pair: {**pair[1], **pair[0]})

    def _instances_of(self, cls: type[pydantic.BaseModel]) -> st.SearchStrategy[Any]:
        if cls not in self.subclasses:
            # Deferred: the subclass's own fields may refer back to this model.
            self.subclasses[cls] = st.deferred(lambda: self._build_instances(cls))
        return self.subclasses[cls]

    def _build_instances(self, cls: type[pydantic.BaseModel]) -> st.SearchStrategy[Any]:
        builder = _Builder(
            cls.__pydantic_core_schema__,
            max_size=self.max_size,
            where=self.where,
            rich=self.rich,
            surrogates=self.surrogates,
            exact=self.exact | {cls},
            subclasses=self.subclasses,
        )
        try:
            raw = builder.build()
        except ResolutionFailed:
            return st.nothing()

        def instance(value: object) -> object:
            try:
                return cls.model_validate(value, by_name=True, by_alias=False)
            except pydantic.ValidationError:
                return _REJECTED

        # Named: hypothesis prints the strategy a filter retries, and the fields of a
        # model (a list of tagged events, say) ran to 70 kB, for a warning each time.
        named = _Named(raw, f"fields of {cls.__qualname__}")
        return named.map(instance).filter(lambda value: value is not _REJECTED)

    def _typed_dict(self, node: Node) -> st.SearchStrategy[dict[str, Any]]:
        total = node.get("total", True)
        return self._record(
            (_data_key(name, field), field["schema"], field.get("required", total))
            for name, field in node["fields"].items()
        )

    def _model_fields(self, node: Node) -> st.SearchStrategy[dict[str, Any]]:
        return self._record(
            (_data_key(name, field), field["schema"], field["schema"].get("type") != "default")
            for name, field in node["fields"].items()
        )

    def _dataclass_args(self, node: Node) -> st.SearchStrategy[dict[str, Any]]:
        return self._record(
            (
                _data_key(field["name"], field),
                field["schema"],
                field["schema"].get("type") != "default",
            )
            for field in node["fields"]
            if field.get("init", True) is not False
        )


def _without_absent(record: dict[str, Any]) -> dict[str, Any]:
    if any(value is _ABSENT for value in record.values()):
        return {key: value for key, value in record.items() if value is not _ABSENT}
    return record


def _model_subclasses(cls: type) -> list[type[pydantic.BaseModel]]:
    """Up to :data:`_SUBCLASSES` complete subclasses of model ``cls``, nearest first."""
    found: list[type[pydantic.BaseModel]] = []
    todo: list[type] = list(cls.__subclasses__())
    while todo and len(found) < _SUBCLASSES:
        sub = todo.pop(0)
        todo.extend(sub.__subclasses__())
        if issubclass(sub, pydantic.BaseModel) and sub.__pydantic_complete__:
            found.append(sub)
    return found


def _repeated(pattern_and_length: tuple[Any, int]) -> Any:
    """A str or bytes ``pattern`` repeated to exactly ``length`` items."""
    pattern, length = pattern_and_length
    return (pattern * (length // len(pattern) + 1))[:length]


def _distinct(values: list[Any]) -> list[Any]:
    """``values`` without repeats (by :func:`_unique_key`), first ones kept."""
    seen: set[object] = set()
    kept = []
    for value in values:
        key = _unique_key(value)
        if key not in seen:
            seen.add(key)
            kept.append(value)
    return kept


def _unique_key(value: object) -> object:
    """Tell set items apart: by value, or by text for items drawn as dicts (the input of
    a frozen model that validates into a hashable item)."""
    try:
        hash(value)
    except TypeError:
        return (1, repr(value))
    return (0, value)


def _bound(node: Node, inclusive: str, exclusive: str, nudge: int, default: int) -> int:
    if isinstance(node.get(inclusive), int):
        return int(node[inclusive])
    if isinstance(node.get(exclusive), int):
        return int(node[exclusive]) + nudge
    return default


def _data_key(name: str, field: Node) -> str:
    """The key under which the plain form holds a field, and validation reads it back:
    its Python name, whatever its aliases (see ``statemigrate._model._export``)."""
    return name
