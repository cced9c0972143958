"""Strategies for the pydantic types whose core schema does not describe their input
(statemigrate/testing/_typedleaves.py), and the kit's checks on schemas holding them."""

from __future__ import annotations

import collections
import enum
import ipaddress
import re
from pathlib import Path
from typing import Annotated, cast

import pytest
from hypothesis import given, settings
from hypothesis.errors import ResolutionFailed
from pydantic import (
    AfterValidator,
    AnyUrl,
    BaseModel,
    DirectoryPath,
    FilePath,
    FileUrl,
    IPvAnyAddress,
    IPvAnyInterface,
    IPvAnyNetwork,
    NewPath,
    PlainValidator,
    PostgresDsn,
    RedisDsn,
    SecretStr,
    SocketPath,
    conlist,
)

from statemigrate._model._registry import Registry
from statemigrate.testing import check_migrations, states
from statemigrate.testing._builder import Builder


class Shade(enum.Enum):
    LIGHT = "l"
    DARK = "d"


def bounded(ring: collections.deque[int]) -> collections.deque[int]:
    return collections.deque(ring, maxlen=5)


class Kept(BaseModel):
    """A field of each type the strategies once could not draw, or drew invalid, and
    of the common types beside them."""

    ordered: collections.OrderedDict[str, int]
    counts: collections.Counter[str]
    address: IPvAnyAddress
    network: IPvAnyNetwork
    interface: IPvAnyInterface
    network4: ipaddress.IPv4Network
    interface6: ipaddress.IPv6Interface
    ring: Annotated[collections.deque[int], AfterValidator(bounded)]
    queue: collections.deque[str]
    groups: collections.defaultdict[str, list[int]]
    path: Path
    new: NewPath
    file: FilePath
    folder: DirectoryPath
    few: conlist(int, max_length=3)  # type: ignore[valid-type]
    secret: SecretStr
    url: AnyUrl
    dsn: PostgresDsn
    cache: RedisDsn
    local: FileUrl
    pattern: re.Pattern[str]
    by_shade: dict[Shade, int]
    by_address: dict[ipaddress.IPv4Address, int]
    by_path: dict[Path, int]


def kept_registry() -> Registry:
    registry = Registry()
    registry.add_schema("kept", 1, Kept)
    registry.add_schema("kept", 2, Kept)
    registry.add_migration("kept", 1, 2, lambda data: data, name="same")
    registry.add_migration("kept", 2, 1, lambda data: data, name="back")
    return registry


@pytest.mark.slow
def test_the_checks_pass_on_schemas_of_these_types() -> None:
    """Before, every check of such a schema failed: "cannot generate valid states"
    (OrderedDict, Counter, the IPvAny types, DSNs, Pattern), or the run crashed with an
    OSError (FilePath and the like, drawn as any text)."""
    report = check_migrations(kept_registry(), max_examples=15, raise_on_failure=False)
    assert report.ok, report
    assert len(report.results) == 4


@pytest.mark.slow
def test_the_drawn_states_hold_what_each_type_takes() -> None:
    versions: set[int] = set()

    @settings(max_examples=40, database=None)
    @given(states(kept_registry(), "kept", 1, form="state"))
    def inspect(state: Kept) -> None:
        assert type(state.ordered) is collections.OrderedDict
        assert type(state.counts) is collections.Counter
        assert type(state.groups) is collections.defaultdict
        assert state.ring.maxlen == 5
        versions.add(state.address.version)
        assert state.file.is_file() and state.folder.is_dir() and not state.new.exists()
        assert state.dsn.scheme.startswith("postgres") and state.local.scheme == "file"
        assert isinstance(state.pattern, re.Pattern)

    inspect()
    assert versions == {4, 6}


class Opaque(BaseModel):
    level: Annotated[int, PlainValidator(lambda v: int(v))]


def test_what_no_strategy_is_derived_for_is_named_as_it_is() -> None:
    """The message said "pydantic schema of type 'ordered-dict' (e.g. a plain validator
    function)": now a plain validator function is named as one, and any other kind
    without its wrong example."""
    registry = Registry()
    registry.add_schema("opaque", 1, Opaque)
    (failure,) = check_migrations(registry, raise_on_failure=False).failures
    assert "a plain validator function (PlainValidator, or a type's own validation)" in (
        failure.detail
    )
    assert failure.detail.count("pass a strategy") == 1
    assert failure.detail.endswith("pass a strategy for ('opaque', 1) in strategies=")
    with pytest.raises(ResolutionFailed) as raised:
        Builder({"type": "callable"}, max_size=4, where="c version 1").build()
    assert str(raised.value) == (
        "cannot derive a strategy for c version 1: pydantic schema of type 'callable' is not"
        " supported; pass a strategy for this version explicitly"
    )


class Socket(BaseModel):
    at: SocketPath


def test_a_socket_path_asks_for_a_strategy() -> None:
    registry = Registry()
    registry.add_schema("socket", 1, Socket)
    with pytest.raises(ResolutionFailed, match="validate_socket test on the machine"):
        states(registry, "socket", 1).example()



def _even(value: int) -> int:
    if value % 2:
        raise ValueError("odd")
    return value


class KeptEven(Kept):
    even: Annotated[int, AfterValidator(_even)]


def test_a_large_schema_whose_draws_are_sometimes_refused_draws_without_warning() -> None:
    """A drawn value that validation refuses is drawn again, and hypothesis then shows
    the strategy it retried. The whole strategy of a large schema ran to tens of
    kilobytes, so hypothesis warned, and under ``filterwarnings = error`` (this suite's,
    and many projects') the check failed as unable to generate states."""
    registry = Registry()
    registry.add_schema("even", 1, KeptEven)
    drawn: list[int] = []  # an int past 64 bits is drawn as its text

    @settings(database=None, max_examples=40, derandomize=True)
    @given(states(registry, "even", 1))
    def draw(value: dict[str, object]) -> None:
        drawn.append(int(cast(str, value["even"])))

    draw()
    assert drawn and all(value % 2 == 0 for value in drawn)


class Matchers(BaseModel):
    raw: re.Pattern[bytes]
    either: re.Pattern  # type: ignore[type-arg]  # str or bytes
    z: complex


def test_the_snapshot_check_passes_on_bytes_patterns_and_complex_numbers() -> None:
    """Before, the check failed: every drawn bytes pattern was refused by the snapshot,
    which wrote it as the text of its repr."""
    registry = Registry()
    registry.add_schema("matchers", 1, Matchers)
    report = check_migrations(
        registry,
        max_examples=20,
        settings=settings(derandomize=True, database=None),
        raise_on_failure=False,
    )
    assert report.ok, report
