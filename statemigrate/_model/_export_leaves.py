"""The converters an exporter is built from: one per kind of value, each turning a value
of its node into plain data, and raising :class:`NotExportable` with the value's path
when it cannot. :mod:`statemigrate._model._export` picks them by reading a core schema.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import ipaddress
import pathlib
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import pydantic
import pydantic.networks
import pydantic_core

from statemigrate._model._compare import widening_change
from statemigrate._model._export_lax import NOT_TAKEN, lax_value
from statemigrate._model._plaindata import (
    INT_MAX,
    INT_MIN,
    NoPlainForm,
    find_not_plain,
    text_problem,
    to_plain,
)
from statemigrate._model._shown import shortened

__all__ = [
    "Convert",
    "IP_ANY_TYPES",
    "IP_TYPES",
    "KEY_TEXT",
    "KNOWN_CLASSES",
    "MISSING",
    "MULTI_HOST_URL_TYPES",
    "Node",
    "NotExportable",
    "PATH_NODE",
    "SCALAR_NODES",
    "URL_TYPES",
    "add_extras",
    "as_text",
    "as_text_of",
    "by_value",
    "check_class",
    "dict_of",
    "duration_text",
    "exact_float",
    "fail",
    "fields_reader",
    "iso_text",
    "kept_if_plain",
    "kind_of",
    "list_of",
    "located",
    "plain_as_is",
    "read_attribute",
    "read_item",
    "secret_value",
    "set_of",
    "subclass_lost",
    "to_bool",
    "to_bytes",
    "to_float",
    "to_int",
    "to_none",
    "to_str",
    "tuple_of",
]

Convert = Callable[[Any], Any]


class NotExportable(Exception):
    """A value has no plain form, or (``by_validation``) its plain form validated back
    is refused or changed. ``path`` is filled in on the way out of the tree."""

    def __init__(self, detail: str, *, by_validation: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.by_validation = by_validation
        self.path: list[object] = []


@dataclasses.dataclass(frozen=True, slots=True)
class Node:
    """One compiled converter.

    Attributes:
        convert: the value at this node to plain data.
        identity: a valid value here already is plain data, so the whole subtree can be
            handed to the packer as it is (the packer refuses anything not plain).
        exact: ``convert`` is known to validate back to an equal value of the same type.
    """

    convert: Convert
    identity: bool
    exact: bool


# --- leaves ---------------------------------------------------------------------------


def fail(detail: str, *, by_validation: bool = False) -> NotExportable:
    return NotExportable(detail, by_validation=by_validation)


def kind_of(value: object) -> str:
    return type(value).__qualname__


# The most digits pydantic parses back from an int's text, whatever Python's own limit.
_MAX_INT_DIGITS = 4300


def to_int(value: Any) -> Any:
    if type(value) is int:
        # Past msgpack's 64 bits an integer travels as its decimal text, which lax
        # validation parses back into the same int.
        return value if INT_MIN <= value <= INT_MAX else _int_text(value)
    if isinstance(value, int):  # bool, IntEnum member: validation would give an int
        return to_int(int(value))
    converted = lax_value("int", value)
    if converted is not NOT_TAKEN:
        return to_int(converted)  # "5", 5.0, Decimal(5): as validation makes them
    raise fail(f"expected an int, found {kind_of(value)}")


def kept_if_plain(convert: Convert, *, float_field: bool = False) -> Convert:
    """``convert``, except that a plain value (a 64-bit int included) is kept as it is,
    whatever its type: for the walk of a state handed over as it is (see
    ``Exporter.walk_identity``), which converts only what is not plain. In a
    ``float_field`` an int is kept only when the float a restore makes of it is the
    same number (see :func:`exact_float`)."""

    def keep(value: Any) -> Any:
        kind = type(value)
        if kind is str:
            # A lone surrogate is no plain text: the leaf's converter says where.
            return convert(value) if text_problem(value) else value
        if kind in _PLAIN_SCALARS:
            return value
        if kind is int and INT_MIN <= value <= INT_MAX:
            if float_field:
                exact_float(value)
            return value
        return convert(value)

    return keep


_PLAIN_SCALARS = frozenset({bytes, float, bool, type(None)})


def _int_text(value: int) -> str:
    try:
        text = str(value)
    except ValueError:  # past Python's limit on converting ints to text
        text = ""
    if not text or len(text) - (value < 0) > _MAX_INT_DIGITS:
        raise fail(
            f"the integer has more than {_MAX_INT_DIGITS} digits: a snapshot holds an int"
            " past 64 bits as its text, and pydantic parses no longer one back"
        )
    return text


def to_float(value: Any) -> Any:
    if type(value) is float:
        return value
    if isinstance(value, float):
        return float(value)
    if isinstance(value, int):  # a bool too: validation makes it 1.0 or 0.0
        return exact_float(value if type(value) is bool else int(value))
    converted = lax_value("float", value)
    if converted is not NOT_TAKEN:
        return to_float(converted)
    raise fail(f"expected a float, found {kind_of(value)}")


def exact_float(value: int) -> float:
    """The float validation makes of ``value`` in a ``float`` field, refused when it is
    not the same number: ``2**53 + 1`` would come back as ``2.0**53``. The rule and the
    words are a read-back's (``widening_change``): an int comes back as a float only
    when the two are equal as Python compares them, exactly."""
    try:
        again = float(value)
    except OverflowError:  # an int past the largest float: validation refuses it too
        raise fail("an integer too large for a float, where a float is declared") from None
    change = widening_change(value, again)
    if change is not None:
        raise fail(change)
    return again


def to_str(value: Any) -> Any:
    if type(value) is not str:
        if not isinstance(value, str):
            converted = lax_value("str", value)
            if converted is not NOT_TAKEN:
                return to_str(converted)
            raise fail(f"expected a str, found {kind_of(value)}")
        value = str.__str__(value)  # a subclass, e.g. a StrEnum member in a str field
    problem = text_problem(value)
    if problem:
        raise fail(f"the string {problem}")
    return value


def to_bool(value: Any) -> Any:
    if type(value) is bool:
        return value
    converted = lax_value("bool", value)
    if converted is not NOT_TAKEN:
        return converted
    raise fail(f"expected a bool, found {kind_of(value)}")


def to_bytes(value: Any) -> Any:
    if type(value) is bytes:
        return value
    if isinstance(value, bytes):  # pydantic keeps a subclass as it is given
        raise subclass_lost(value, bytes)
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    converted = lax_value("bytes", value)
    if converted is not NOT_TAKEN:
        return to_bytes(converted)
    raise fail(f"expected bytes, found {kind_of(value)}")


def to_none(value: Any) -> Any:
    if value is not None:
        raise fail(f"expected None, found {kind_of(value)}")
    return None


def subclass_lost(value: object, base: type) -> NotExportable:
    """A subclass instance pydantic keeps, which its plain text would turn into ``base``."""
    return fail(
        f"a {kind_of(value)} (a subclass of {base.__name__}) would come back as a plain"
        f" {base.__name__}; convert it to {base.__name__} or declare a type of its own"
    )


def iso_text(expected: type) -> Convert:
    kind = expected.__name__  # pydantic's core schema type: date, datetime, time

    def convert(value: Any) -> Any:
        if type(value) is not expected:
            if expected is datetime.date and isinstance(value, datetime.datetime):
                # Lax validation takes a datetime at midnight as its date, but the date
                # is not the value held: refused as any other datetime is.
                raise fail("expected a date, found a datetime")
            if isinstance(value, expected):
                raise subclass_lost(value, expected)  # pydantic keeps it as it is given
            converted = lax_value(kind, value)
            if converted is not NOT_TAKEN:
                return convert(converted)
            raise fail(f"expected {expected.__name__}, found {kind_of(value)}")
        if isinstance(value, datetime.datetime | datetime.time):
            offset = value.utcoffset()
            if offset is None and value.tzinfo is not None:
                # A zone such as ZoneInfo gives a time of day no offset (it depends on
                # the date): the text would be naive, and the zone lost.
                raise fail(
                    f"its time zone {value.tzinfo!r} gives it no UTC offset, so its ISO"
                    " 8601 text would drop the zone; use a fixed offset"
                    " (datetime.timezone) or keep the zone's name in a field of its own"
                )
            if offset is not None and offset % datetime.timedelta(minutes=1):
                # ISO 8601 text as pydantic writes and parses it holds hours and
                # minutes of an offset only: the seconds would be lost.
                raise fail(
                    f"its UTC offset {offset} is not a whole number of minutes, which"
                    " ISO 8601 text cannot hold; convert it to UTC"
                )
        return pydantic_core.to_jsonable_python(value)  # ISO 8601, as pydantic writes it

    return convert


def duration_text(value: Any) -> Any:
    if type(value) is not datetime.timedelta:
        if isinstance(value, datetime.timedelta):  # pydantic keeps a subclass as it is
            raise subclass_lost(value, datetime.timedelta)
        converted = lax_value("timedelta", value)
        if converted is not NOT_TAKEN:
            return duration_text(converted)
        raise fail(f"expected a timedelta, found {kind_of(value)}")
    return pydantic_core.to_jsonable_python(value)  # ISO 8601 duration, sign included


def as_text(
    expected: type | tuple[type, ...], what: str, *, exact: bool = False, lax: str = ""
) -> Convert:
    """Write a value as its text; ``exact``: refuse subclasses, which come back as the
    base; ``lax``: the core schema type whose lax validation converts a value of
    another type (see ``_export_lax``)."""

    def convert(value: Any) -> Any:
        if not isinstance(value, expected):
            converted = lax_value(lax, value) if lax else NOT_TAKEN
            if converted is not NOT_TAKEN:
                return convert(converted)
            raise fail(f"expected {what}, found {kind_of(value)}")
        if exact and type(value) is not expected:
            raise subclass_lost(value, cast(type, expected))
        return str(value)

    return convert


def as_text_of(types: tuple[type, ...], what: str) -> Convert:
    """Write a value of one of ``types`` exactly (no subclass, no text) as its text."""

    def convert(value: Any) -> Any:
        if type(value) not in types:
            raise fail(f"expected {what}, found {kind_of(value)}")
        return str(value)

    return convert


def plain_as_is(value: Any) -> Any:
    problem = find_not_plain(value, buffers=False)  # a bytearray would come back as bytes
    if problem is not None:
        path, detail = problem
        error = fail(f"{detail} under Any, where it would not come back as it is; declare its type")
        error.path.extend(path)
        raise error
    return value


def secret_value(value: Any) -> Any:
    if isinstance(value, pydantic.SecretStr | pydantic.SecretBytes):
        return value.get_secret_value()
    raise fail(f"expected a secret, found {kind_of(value)}")


def by_value(value: Any) -> Any:
    """Convert by the value's own type, for nodes whose shape is not known here."""
    try:
        return to_plain(value)
    except NoPlainForm as exc:
        # The value sits where the exporter is (a field's path); ``exc.path`` only
        # goes on from there, so the error names the field, not "the top level".
        error = fail(exc.problem)
        error.path.extend(exc.path)
        raise error from exc
    except TypeError as exc:
        raise fail(str(exc)) from exc


def _pydantic_url_class(name: str) -> tuple[type, ...]:
    # From pydantic 2.10, AnyUrl, HttpUrl, PostgresDsn and the rest are classes of
    # pydantic's own that wrap pydantic_core's URL (before, they were that URL). Their
    # text validates back into them through the function schema around the URL node.
    cls = getattr(pydantic.networks, name, None)
    return (cls,) if isinstance(cls, type) else ()


URL_TYPES: tuple[type, ...] = (pydantic_core.Url, *_pydantic_url_class("_BaseUrl"))
MULTI_HOST_URL_TYPES: tuple[type, ...] = (
    pydantic_core.MultiHostUrl,
    *_pydantic_url_class("_BaseMultiHostUrl"),
)

SCALAR_NODES: Mapping[str, Node] = {
    "int": Node(to_int, True, True),
    "float": Node(to_float, True, True),
    "str": Node(to_str, True, True),
    "bool": Node(to_bool, True, True),
    "bytes": Node(to_bytes, True, True),
    "none": Node(to_none, True, True),
    "any": Node(plain_as_is, True, True),
    "date": Node(iso_text(datetime.date), False, True),
    "datetime": Node(iso_text(datetime.datetime), False, True),
    "time": Node(iso_text(datetime.time), False, True),
    "timedelta": Node(duration_text, False, True),
    "decimal": Node(as_text(decimal.Decimal, "a Decimal", exact=True, lax="decimal"), False, True),
    "uuid": Node(as_text(uuid.UUID, "a UUID", exact=True, lax="uuid"), False, True),
    "url": Node(as_text(URL_TYPES, "a URL"), False, True),
    "multi-host-url": Node(as_text(MULTI_HOST_URL_TYPES, "a URL"), False, True),
}

# Classes pydantic validates through a custom (lax-or-strict) schema whose plain form is
# known to parse back: found by the instance check inside that schema.
IP_TYPES = (
    ipaddress.IPv4Address,
    ipaddress.IPv6Address,
    ipaddress.IPv4Network,
    ipaddress.IPv6Network,
    ipaddress.IPv4Interface,
    ipaddress.IPv6Interface,
)
# pydantic's IPvAny* types: a plain validator that makes text the IPv4 class's instance
# when it parses as one, else the IPv6 class's. Each class's text parses back into it.
IP_ANY_TYPES: Mapping[object, tuple[type, type]] = {  # type-checked as unions
    pydantic.IPvAnyAddress: (ipaddress.IPv4Address, ipaddress.IPv6Address),
    pydantic.IPvAnyNetwork: (ipaddress.IPv4Network, ipaddress.IPv6Network),
    pydantic.IPvAnyInterface: (ipaddress.IPv4Interface, ipaddress.IPv6Interface),
}
KNOWN_CLASSES: Mapping[type, Node] = {
    pydantic.SecretStr: Node(secret_value, False, True),
    pydantic.SecretBytes: Node(secret_value, False, True),
    **{cls: Node(as_text(cls, cls.__name__), False, True) for cls in IP_TYPES},
}
PATH_NODE = Node(as_text(pathlib.PurePath, "a path"), False, True)

# Key types a string parses back into under lax validation, and how to write them.
KEY_TEXT: Mapping[str, Convert] = {
    "str": to_str,
    "int": lambda key: str(to_int(key)),
    "float": lambda key: repr(to_float(key)),
    "bool": lambda key: "true" if to_bool(key) else "false",
    "decimal": as_text(decimal.Decimal, "a Decimal", exact=True, lax="decimal"),
    "uuid": as_text(uuid.UUID, "a UUID", exact=True, lax="uuid"),
    "date": iso_text(datetime.date),
    "datetime": iso_text(datetime.datetime),
    "time": iso_text(datetime.time),
}


# --- containers -----------------------------------------------------------------------


def located(error: NotExportable, step: object) -> NotExportable:
    error.path.insert(0, step)
    return error


def list_of(item: Node) -> Convert:
    convert_item = item.convert

    def convert(value: Any) -> Any:
        if isinstance(value, str | bytes | Mapping) or not hasattr(value, "__iter__"):
            raise fail(f"expected a sequence, found {kind_of(value)}")
        out = []
        for index, sub in enumerate(value):
            try:
                out.append(convert_item(sub))
            except NotExportable as exc:
                raise located(exc, index) from None
        return out

    return convert


def set_of(item: Node) -> Convert:
    as_list = list_of(item)

    def convert(value: Any) -> Any:
        if not isinstance(value, set | frozenset):
            raise fail(f"expected a set, found {kind_of(value)}")
        out = as_list(value)
        try:
            out.sort()  # equal sets give equal bytes in every process
        except TypeError:
            # Plain items of mixed types. An int past 64 bits is text among ints: the
            # set's own items sort, and give the order. Else iteration order, which
            # differs between equal sets; the set still comes back.
            try:
                out = as_list(sorted(value))
            except TypeError:
                pass
        return out

    return convert


def tuple_of(items: Sequence[Node], variadic: int | None) -> Convert:
    converters = [node.convert for node in items]

    def pick(index: int, length: int) -> Convert:
        if variadic is None:
            return converters[index]
        tail = len(converters) - variadic - 1  # positions after the variadic one
        if index < variadic:
            return converters[index]
        if index >= length - tail:
            return converters[len(converters) - (length - index)]
        return converters[variadic]

    def convert(value: Any) -> Any:
        if not isinstance(value, tuple | list):
            raise fail(f"expected a tuple, found {kind_of(value)}")
        if variadic is None and len(value) != len(converters):
            raise fail(f"expected {len(converters)} items, found {len(value)}")
        out = []
        for index, sub in enumerate(value):
            try:
                out.append(pick(index, len(value))(sub))
            except NotExportable as exc:
                raise located(exc, index) from None
        return out

    return convert


def dict_of(key: Convert, value_node: Node) -> Convert:
    convert_value = value_node.convert

    def convert(value: Any) -> Any:
        if not isinstance(value, Mapping):
            raise fail(f"expected a dict, found {kind_of(value)}")
        out: dict[str, Any] = {}
        for name, sub in value.items():
            try:
                text = key(name)
                if text in out:
                    raise fail(f"two keys are both written as {shortened(text)}")
                out[text] = convert_value(sub)
            except NotExportable as exc:
                raise located(exc, name) from None
        return out

    return convert


def fields_reader(
    fields: Sequence[tuple[str, Node]],
    read: Callable[[Any, str], Any],
    *,
    step: Callable[[str], object],
    required: frozenset[str],
) -> Callable[[Any], dict[str, Any]]:
    """Read record fields; ``step`` renders a field in error paths (a key of a
    ``TypedDict``, an attribute of a model or dataclass).

    A field in ``required`` that the value lacks (a model made by ``model_construct``
    without it, a dataclass whose attribute was deleted, a record dict without the key)
    is refused: validation would refuse the record at restore. Any other missing field
    is left out, and validation fills in its default.
    """

    def convert(value: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, node in fields:
            sub = read(value, name)
            if sub is MISSING:
                if name in required:
                    raise located(fail("this required field is missing"), step(name))
                continue
            try:
                out[name] = node.convert(sub)
            except NotExportable as exc:
                raise located(exc, step(name)) from None
        return out

    return convert


MISSING = object()


def read_attribute(value: Any, name: str) -> Any:
    return getattr(value, name, MISSING)


def read_item(value: Any, name: str) -> Any:
    return value.get(name, MISSING)


def check_class(value: Any, cls: type) -> None:
    if type(value) is not cls:
        if isinstance(value, cls):
            raise fail(
                f"holds a {kind_of(value)} where {cls.__qualname__} is declared; it would come"
                f" back as {cls.__qualname__} without its own fields: declare the subclass"
                " (e.g. in a union)"
            )
        raise fail(f"expected {cls.__qualname__}, found {kind_of(value)}")


def add_extras(out: dict[str, Any], items: Any, extras: Node) -> None:
    for name, sub in items:
        if type(name) is not str:
            raise fail(f"extra key {shortened(name)} is not a str")
        if name in out:
            raise fail(f"extra key {shortened(name)} shadows a field")
        try:
            out[name] = extras.convert(sub)
        except NotExportable as exc:
            raise located(exc, name) from None
