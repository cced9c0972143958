"""The core-schema walker: one pydantic core schema turned into a strategy for the values
it validates, node by node (scalars, containers, unions, records, and in the state form
instances of a model's subclasses).

The strategies of :mod:`statemigrate.testing._strategies` are built by it; the module
documentation there says what it draws and why.
"""

from __future__ import annotations

import datetime
import functools
import pathlib
import string
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pydantic
from hypothesis import strategies as st
from hypothesis.errors import ResolutionFailed

from statemigrate._model._coreschema import schema_refs
from statemigrate.testing._anyvalues import (
    INT_MAX,
    INT_MIN,
    SMALL_SIZE,
    big_ints,
    plain_data,
    rich_values,
    with_surrogate,
)
from statemigrate.testing._coverage import Coverage
from statemigrate.testing._emphasis import (
    EMPTY,
    RecordCollections,
    decimal_specials,
    float_specials,
)
from statemigrate.testing._multiples import decimal_multiples, float_multiples
from statemigrate.testing._odds import LONG, of_length, one_in_two, rarely, skewed, with_specials
from statemigrate.testing._redraw import local_validator, redrawn
from statemigrate.testing._spaced import spaced_text
from statemigrate.testing._tags import tag_key, with_tag
from statemigrate.testing._typedleaves import file_system_paths, plain_function_values, urls
from statemigrate.testing._zones import (
    NAMED_ZONE_YEARS,
    allowed_zones,
    changeover_times,
    in_changeover,
    named_zones,
    pick,
)

__all__ = ["REJECTED", "Builder", "Named"]

_TEXT_PER_ITEM = 16  # a long string's characters at most, per item of max_size
_PATTERN = 8  # a long string repeats a drawn one of at most this many characters
_SUBCLASSES = 8  # subclasses of one model whose instances the state form draws, at most
_SUBCLASS_ODDS = 8  # one model instance in this many is of a subclass, when it has any
_CODE_LIKE = string.ascii_letters + string.digits + "-_. "  # text a validator may want
_CODE_LIKE_SIZE = 16  # code-like text's characters at most: codes are short
REJECTED = object()
_ABSENT = object()  # an optional field drawn as left out


class Named(st.SearchStrategy[Any]):
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


# --- the core-schema walker --------------------------------------------------------------

Node = Mapping[str, Any]


class Builder:
    """Turns one pydantic core schema into a strategy for values it validates."""

    def __init__(
        self,
        root: Node,
        *,
        max_size: int,
        where: str,
        rich: bool = False,
        surrogates: bool = False,
        spaced: bool = False,
        exact: frozenset[object] = frozenset(),
        subclasses: dict[type, st.SearchStrategy[Any]] | None = None,
        coverage: Coverage | None = None,
    ) -> None:
        self.root = root
        self.max_size = max_size
        self.small = min(max_size, SMALL_SIZE)
        self.where = where
        self.rich = rich  # drawing the state form: values beyond plain data
        # Drawing one of the few states whose strings may hold lone surrogates (state
        # form only): each string then holds one at even odds.
        self.surrogates = rich and surrogates
        # Drawing one of the states whose strings may have whitespace at an end or be
        # whitespace only (either form): each string then is such a one at even odds
        # (see _spaced).
        self.spaced = spaced
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
        # Which union members, literals and enum values the drawn states hold, by path
        # (see _coverage); the path is the one being built.
        self.coverage = coverage
        self.path: list[str] = []
        self.ref_paths: dict[str, list[str]] = {}
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
            "time": lambda node: st.times(timezones=allowed_zones(node.get("tz_constraint"))),
            "datetime": self._datetime,
            "timedelta": lambda node: st.timedeltas(),
            "uuid": lambda node: st.uuids(version=node.get("version")),
            "url": urls,
            "multi-host-url": urls,
            "literal": lambda node: self._choice(list(node["expected"]), list(node["expected"])),
            "enum": lambda node: self._choice(
                list(node["members"]), [member.value for member in node["members"]]
            ),
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
            "custom-error",
            "dataclass",
            "definitions",
        ):
            self.kinds[kind] = lambda node: self.build(node["schema"])
        self.kinds["function-after"] = self._after
        self.kinds["function-before"] = self._validated
        self.kinds["function-wrap"] = self._validated

    def _after(self, node: Node) -> st.SearchStrategy[Any]:
        # A path that pydantic tests against the file system: its inner schema, any
        # path, would draw names that mostly fail the test.
        paths = file_system_paths(node, self.where)
        return paths if paths is not None else self._validated(node)

    def _validated(self, node: Node) -> st.SearchStrategy[Any]:
        """The inner schema's values, each drawn again where the validator refuses it:
        refused only with the whole state, one refused value threw the state away, so
        the states holding the most values were the ones checked least (see _redraw)."""
        inner = self.build(node["schema"])
        plain_text = node["schema"].get("type") == "str" and "pattern" not in node["schema"]
        if plain_text:
            # Validators of text most often want a code or a name: hypothesis' text,
            # mostly symbols and letters of every script, passed one such validator
            # (``[A-Z0-9-]{1,32}`` after upper-casing) about one time in twelve.
            inner = one_in_two(inner, self._code_like(node["schema"]))
        if not self.path:
            return inner  # the state's own validator: its refusals are counted (_redraw)
        accepts = local_validator(node, self.refs)
        if accepts is None:
            return inner
        coverage = self.coverage or Coverage()
        return redrawn(inner, accepts, mark=coverage.mark, forget=coverage.forget)

    def _code_like(self, node: Node) -> st.SearchStrategy[str]:
        """Short text of letters, digits and ``-_. ``, within the node's bounds and the
        builder's longest string."""
        low = node.get("min_length") or 0
        longest = min(self._longest(low, node.get("max_length")), _CODE_LIKE_SIZE)
        return st.text(_CODE_LIKE, min_size=low, max_size=max(low, longest))

    def _shown_path(self) -> str:
        return ".".join(self.path)

    def _choice(self, values: list[Any], labels: list[Any]) -> st.SearchStrategy[Any]:
        """One of ``values``, recorded by its label for the coverage of a check run."""
        if self.coverage is None or len(values) < 2:
            return st.sampled_from(values)
        path, coverage = self._shown_path(), self.coverage
        coverage.declare(path, labels)

        def recorded(index: int) -> Any:
            coverage.record(path, labels[index])
            return values[index]

        # By index: values that compare equal (``Literal[1, True]``) stay apart.
        return st.sampled_from(range(len(values))).map(recorded)

    def _at(self, step: str, node: Node) -> st.SearchStrategy[Any]:
        """``build(node)``, for the value at one more ``step`` of the path."""
        self.path.append(step)
        try:
            return self.build(node)
        finally:
            self.path.pop()

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
            self.ref_paths[ref] = list(self.path)  # where it is drawn first
            # Deferred, so a recursive type refers to itself instead of recursing here.
            self.deferred[ref] = st.deferred(lambda: self._by_ref(ref))
        return self.deferred[ref]

    def _by_ref(self, ref: str) -> st.SearchStrategy[Any]:
        if ref not in self.built:
            # Built when first drawn, outside any other build: at the path of its use.
            outer, self.path = self.path, list(self.ref_paths.get(ref, []))
            try:
                self.built[ref] = self.build(self.refs[ref])
            finally:
                self.path = outer
        return self.built[ref]

    # --- scalars ---

    def _any(self, node: Node) -> st.SearchStrategy[Any]:
        # Kept small: an Any value nests containers of its own, and its shape is
        # not what a step is written against.
        if self.rich:
            return rich_values(max_size=self.small, surrogates=self.surrogates)
        return plain_data(max_size=self.small)

    def _int(self, node: Node) -> st.SearchStrategy[int]:
        low = _bound(node, "ge", "gt", 1, INT_MIN)
        high = _bound(node, "le", "lt", -1, INT_MAX)
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
            return rarely(common, big_ints(above=above, below=below))
        return common

    def _float(self, node: Node) -> st.SearchStrategy[float]:
        low = _float_bound(node.get("ge", node.get("gt")))
        high = _float_bound(node.get("le", node.get("lt")))
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
            result = float_multiples(node, abs(step))
        return with_specials(result, float_specials(node, allow_infinity=bool(allow_inf)))

    def _decimal(self, node: Node) -> st.SearchStrategy[Any]:
        places = node.get("decimal_places")
        step = node.get("multiple_of")
        if step:
            return with_specials(decimal_multiples(node, abs(step)), decimal_specials(node))
        finite = st.decimals(
            min_value=node.get("ge", node.get("gt")),
            max_value=node.get("le", node.get("lt")),
            places=places if isinstance(places, int) else None,
            allow_nan=False,
            allow_infinity=False,
        )
        return with_specials(finite, decimal_specials(node))

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
        # Padded to at most the longest string: padding a longest one to the node's
        # bound (or to no bound) made strings longer than max_size allows.
        spaced = spaced_text(text, low, self._longest(low, high)) if self.spaced else None
        if spaced is not None:
            # What splitting and joining steps lose (see _spaced); at even odds, so
            # that a string a failure does not need spaced shrinks to an ordinary one.
            text = one_in_two(text, spaced)
        if self.surrogates and (high is None or high > 0):
            # A Python str may hold a lone surrogate, which UTF-8 cannot encode.
            return one_in_two(text, with_surrogate(low, self._longest(low, high)))
        return text

    def _bytes(self, node: Node) -> st.SearchStrategy[bytes]:
        return self._long_or_short(
            st.binary, node.get("min_length") or 0, node.get("max_length")
        )

    def _long_or_short(
        self, make: Callable[..., st.SearchStrategy[Any]], low: int, high: int | None
    ) -> st.SearchStrategy[Any]:
        """A str or bytes strategy: short as hypothesis draws them, and about once in
        :data:`LONG` draws of a length up to ``16 * max_size`` (a truncation shows)."""
        longest = self._longest(low, high)
        short = make(min_size=low, max_size=longest)
        if longest <= max(low, 1):
            return short
        # A few characters repeated to the length: drawing each of hundreds of characters
        # would cost more than the rest of an example, and a truncation shows either way.
        long = st.tuples(make(min_size=1, max_size=_PATTERN), st.integers(max(low, 1), longest))
        return rarely(short, long.map(_repeated), every=LONG)

    def _longest(self, low: int, high: int | None) -> int:
        """The most characters (or bytes) a drawn string holds: ``16 * max_size``,
        within the node's ``max_length`` and at least its ``min_length``."""
        longest = max(low, _TEXT_PER_ITEM * self.max_size)
        return longest if high is None else min(high, longest)

    def _date(self, node: Node) -> st.SearchStrategy[datetime.date]:
        low, high = node.get("ge", node.get("gt")), node.get("le", node.get("lt"))
        return st.dates(
            min_value=low if isinstance(low, datetime.date) else datetime.date.min,
            max_value=high if isinstance(high, datetime.date) else datetime.date.max,
        )

    def _datetime(self, node: Node) -> st.SearchStrategy[datetime.datetime]:
        constraint = node.get("tz_constraint")
        fixed = st.datetimes(timezones=allowed_zones(constraint))
        zones = named_zones() if constraint in (None, "aware") else []
        if not zones:
            return fixed
        named = st.datetimes(*NAMED_ZONE_YEARS, timezones=st.sampled_from(zones))
        # hypothesis meets a changeover now and then only: these are all in one, the
        # skipped hour or the repeated one with either fold.
        changeovers = st.builds(
            in_changeover,
            st.sampled_from(changeover_times()),
            fold=st.integers(0, 1),
            seconds=st.integers(0, 15 * 60 - 1),
            microsecond=st.integers(0, 999_999),
        )
        # All three drawn, one picked: the pick shrinks to the fixed offsets while the
        # draws stay valid, where a one_of's shrinker often cannot leave its branch.
        return st.builds(pick, st.integers(0, 2), fixed, named, changeovers)

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
        in :data:`LONG` draws ``exactly(n)``, n items from above the small size up to
        ``high``: long collections are rare, so most examples stay cheap."""
        top = min(high, max(low, self.small))
        short = make(low, top)
        if high <= top:
            return short
        # One strategy per length, made here: made per draw, as a flatmap would, each
        # long collection paid for building and checking a new strategy.
        by_length = {n: exactly(n) for n in range(top + 1, high + 1)}
        return rarely(short, of_length(skewed(top + 1, high), by_length), every=LONG)

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
        return rarely(self._sized(1, high, make, exactly), drawn, every=EMPTY)

    def _list(self, node: Node, *, unique: bool = False) -> st.SearchStrategy[list[Any]]:
        items = node.get("items_schema")
        inner = self._at("*", items) if items is not None else plain_data(max_size=self.small)
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
        items = [self._at("*", item) for item in node.get("items_schema", [])]
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
        if keys_node is None or keys_node.get("type") == "any":
            # Keys typed Any come back as a snapshot holds them: str, or in a live
            # state now and then bytes (an Any value would be unhashable, or refused).
            keys = rarely(st.text(), st.binary()) if self.rich else st.text()
        else:
            keys = self.build(keys_node)
        values = self._at("*", values_node) if values_node is not None else plain_data(max_size=2)
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
        path, coverage = self._shown_path(), self.coverage
        tags = list(node["choices"])
        if coverage is not None and len(tags) > 1:
            coverage.declare(path, tags)
        for tag, choice in node["choices"].items():
            member = self.build(choice)
            key = tag_key(choice, discriminator, self.refs)
            if key is not None:
                member = member.map(functools.partial(with_tag, key=key, tag=tag))
            if coverage is not None and len(tags) > 1:
                member = member.map(functools.partial(_recorded, coverage, path, tag))
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
                required[key] = rarely(self._at(key, schema), st.just(_ABSENT), every=EMPTY)
                mostly_present = True
            else:
                (required if needed else optional)[key] = self._at(key, schema)
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
        # them as they are: a state holds whatever the service put there. One instance
        # in eight: a snapshot refuses a subclass the schema does not declare, and a
        # state holding one is refused whole, so at even odds a state of a few records
        # would be checked only once in many draws.
        subclasses = [self._instances_of(sub) for sub in _model_subclasses(cls)]
        if not subclasses:
            return record
        # Picked by a number rather than by st.one_of(record, record, ...): one_of
        # takes a strategy given twice once, and the odds would stay even.
        subclass = st.one_of(*subclasses)
        return st.integers(1, _SUBCLASS_ODDS).flatmap(
            lambda pick: subclass if pick == _SUBCLASS_ODDS else record
        )

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
        builder = Builder(
            cls.__pydantic_core_schema__,
            max_size=self.max_size,
            where=self.where,
            rich=self.rich,
            surrogates=self.surrogates,
            spaced=self.spaced,
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
                return REJECTED

        # Named: hypothesis prints the strategy a filter retries, and the fields of a
        # model (a list of tagged events, say) ran to 70 kB, for a warning each time.
        named = Named(raw, f"fields of {cls.__qualname__}")
        return named.map(instance).filter(lambda value: value is not REJECTED)

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


def _recorded(coverage: Coverage, path: str, tag: Any, value: Any) -> Any:
    """``value``, a member drawn with ``tag``, recorded for the coverage of a run."""
    coverage.record(path, tag)
    return value


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


def _float_bound(bound: object) -> float | None:
    """A float field's bound as pydantic compares with it: an int bound rounded to the
    nearest float (``lt=2**53 + 1`` is ``2.0**53``), which hypothesis also needs, since
    it takes only bounds a float holds exactly. (pydantic refuses a schema whose bound
    no float reaches.)"""
    return None if bound is None else float(bound)  # type: ignore[arg-type]
