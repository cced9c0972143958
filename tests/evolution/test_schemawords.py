"""makemigration's TODOs in words: optional fields, bounds, widened Literals, no cut JSON."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field
from stub_helpers import evolve as make_stub

from statemigrate._model._registry import Registry
from statemigrate.evolution._makemigration import MigrationStub
from statemigrate.evolution._schemawords import bound_changes, brief_json

REPO = Path(__file__).resolve().parents[2]


def evolve(
    tmp_path: Path, old: object, new: object, component: str = "c", **options: Any
) -> tuple[Registry, MigrationStub]:
    """:func:`stub_helpers.evolve`, and the module it wrote loaded (so it must import)."""
    registry, stub = make_stub(tmp_path, component, old, new, **options)
    registry.load_migrations(tmp_path / "migrations")
    return registry, stub


def raises_in(stub: MigrationStub) -> set[str]:
    """The steps of a stub that raise NotImplementedError until a TODO is done."""
    steps = stub.code.split("\n\n\n")
    return {
        name
        for name in ("upgrade_1_to_2", "downgrade_2_to_1")
        for step in steps
        if name in step and "raise NotImplementedError(" in step
    }


# --- a field made optional ------------------------------------------------------------


class Dims(BaseModel):
    w: float
    h: float


class BoxV1(BaseModel):
    dims: Dims


class BoxV2(BaseModel):
    dims: Dims | None = None


class BoxV3(BaseModel):
    dims: int | Dims | None = None


def test_a_field_made_optional_is_said_so_and_only_the_downgrade_has_work(
    tmp_path: Path,
) -> None:
    """It once read ``dims changed from object to {"$ref": "#/$defs/d1"} | null``."""
    registry, stub = evolve(tmp_path, BoxV1, BoxV2)
    assert stub.todos == (
        "dims became optional (may be None): the downgrade must replace None with a value"
        " the old version accepts",
    )
    assert raises_in(stub) == {"downgrade_2_to_1"}
    assert registry.plan("c", 1, 2).apply({"dims": {"w": 1.0, "h": 2.0}}) == {
        "dims": {"w": 1.0, "h": 2.0}
    }
    summary = stub.summary()
    assert "  upgrade: lossless" in summary
    assert "  downgrade: probably lossy: dims became optional" in summary
    assert "$ref" not in summary + stub.code


def test_a_field_no_longer_optional_leaves_work_to_the_upgrade(tmp_path: Path) -> None:
    _, stub = evolve(tmp_path, BoxV2, BoxV1)
    assert stub.todos == ("dims is no longer optional: the upgrade must replace None with a value",)
    assert raises_in(stub) == {"upgrade_1_to_2"}


def test_a_definition_is_described_in_words_not_by_its_reference(tmp_path: Path) -> None:
    """``Dims`` -> ``int | Dims | None`` takes every old value as it is: the downgrade
    alone has work (it once called it a changed type, with a TODO in both steps)."""
    _, stub = evolve(tmp_path, BoxV1, BoxV3)
    assert stub.todos == (
        "dims became optional (may be None): the downgrade must replace None with a value"
        " the old version accepts",
        "dims allows new members int: the downgrade must convert them to an object with"
        " fields h, w, or drop them",
    )
    assert raises_in(stub) == {"downgrade_2_to_1"}
    assert "$ref" not in stub.summary() + stub.code


# --- bounds ---------------------------------------------------------------------------


class StockV1(BaseModel):
    quantity: int
    limit: Annotated[int, Field(le=100)] = 0
    code: Annotated[str, Field(max_length=10)] = ""


class StockV2(BaseModel):
    quantity: Annotated[int, Field(ge=0)]
    limit: Annotated[int, Field(le=100)] = 0
    code: Annotated[str, Field(max_length=10)] = ""


class StockV3(BaseModel):
    quantity: int
    limit: Annotated[int, Field(le=50)] = 0
    code: Annotated[str, Field(max_length=20)] = ""


def test_a_tightened_bound_names_it_and_asks_the_upgrade_to_clamp(tmp_path: Path) -> None:
    """It once read ``quantity changed from integer to integer (minimum)``."""
    _, stub = evolve(tmp_path, StockV1, StockV2)
    assert stub.todos == (
        "quantity: minimum 0 added, a tighter bound: values the old version accepted may"
        " not validate; the upgrade must clamp or drop them",
    )
    assert raises_in(stub) == {"upgrade_1_to_2"}
    assert "  downgrade: lossless" in stub.summary()


def test_each_changed_bound_blocks_the_step_it_tightens(tmp_path: Path) -> None:
    """``maximum 100 -> 50`` tightens going up, ``maxLength 10 -> 20`` going down."""
    _, stub = evolve(tmp_path, StockV1, StockV3)
    assert stub.todos == (
        "limit: maximum 100 -> 50, a tighter bound: values the old version accepted may not"
        " validate; the upgrade must clamp or drop them",
        "code: maxLength 10 -> 20, a looser bound: the downgrade must clamp or drop the"
        " values the old one refuses",
    )
    assert raises_in(stub) == {"upgrade_1_to_2", "downgrade_2_to_1"}
    summary = stub.summary()
    assert "  upgrade: probably lossy: limit: maximum 100 -> 50" in summary
    assert "  downgrade: probably lossy: code: maxLength 10 -> 20" in summary


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ({}, {"minimum": 0}, [("minimum", "minimum 0 added", {"upgrade"})]),
        ({"minimum": 0}, {}, [("minimum", "minimum 0 removed", {"downgrade"})]),
        ({"minimum": 0}, {"minimum": 5}, [("minimum", "minimum 0 -> 5", {"upgrade"})]),
        ({"maxItems": 5}, {"maxItems": 9}, [("maxItems", "maxItems 5 -> 9", {"downgrade"})]),
        (
            {"multipleOf": 5},
            {"multipleOf": 10},
            [("multipleOf", "multipleOf 5 -> 10", {"upgrade"})],
        ),
        (
            {"multipleOf": 4},
            {"multipleOf": 6},
            [("multipleOf", "multipleOf 4 -> 6", {"upgrade", "downgrade"})],
        ),
        (
            {"pattern": "^a"},
            {"pattern": "^b"},
            [("pattern", 'pattern "^a" -> "^b"', {"upgrade", "downgrade"})],
        ),
    ],
)
def test_bound_changes_say_which_step_meets_refused_data(
    old: dict[str, Any], new: dict[str, Any], expected: list[tuple[str, str, set[str]]]
) -> None:
    assert [(k, text, set(steps)) for k, text, steps in bound_changes(old, new)] == expected


# --- allowed values -------------------------------------------------------------------


class OrderV1(BaseModel):
    status: Literal["open", "filled"]


class OrderV2(BaseModel):
    status: Literal["open", "filled", "partial"]


def test_a_widened_literal_needs_nothing_in_the_upgrade(tmp_path: Path) -> None:
    """It was called probably lossy, with a TODO in the upgrade, which keeps every value."""
    registry, stub = evolve(tmp_path, OrderV1, OrderV2)
    assert stub.todos == (
        'status allows new values "partial": the downgrade must map them to one of "open",'
        ' "filled"',
    )
    assert raises_in(stub) == {"downgrade_2_to_1"}
    assert registry.plan("c", 1, 2).apply({"status": "open"}) == {"status": "open"}
    summary = stub.summary()
    assert "  upgrade: lossless" in summary
    assert '  downgrade: probably lossy: status allows new values "partial"' in summary


class OrderV3(BaseModel):
    status: Literal["open", "filled", "partial"]
    note: str | None = None


def test_a_step_that_drops_a_field_and_narrows_a_literal_says_both(tmp_path: Path) -> None:
    _, stub = evolve(tmp_path, OrderV1, OrderV3)
    lines = stub.summary().splitlines()
    assert "  upgrade: lossless" in lines
    assert (
        '  downgrade: lossy, drops note; may also lose data: status allows new values "partial":'
        ' the downgrade must map them to one of "open", "filled"'
    ) in lines


def test_a_narrowed_literal_leaves_work_to_the_upgrade(tmp_path: Path) -> None:
    _, stub = evolve(tmp_path, OrderV2, OrderV1)
    assert stub.todos == (
        'status no longer allows "partial": the upgrade must map them to one of "open",'
        ' "filled"',
    )
    assert raises_in(stub) == {"upgrade_1_to_2"}


class BookOrderV1(BaseModel):
    status: Literal["open", "filled"]
    size: int


class BookV1(BaseModel):
    orders: dict[str, BookOrderV1]


class BookOrderV2(BaseModel):
    status: Literal["open", "filled", "partial"]
    size: Annotated[int, Field(ge=1)]
    note: str | None = None


class BookV2(BaseModel):
    orders: dict[str, BookOrderV2]


def test_the_cli_guide_shows_the_summary_makemigration_prints(tmp_path: Path) -> None:
    _, stub = evolve(tmp_path, BookV1, BookV2, "orders", records="orders")
    guide = (REPO / "docs" / "cli.md").read_text(encoding="utf-8").splitlines()
    assert stub.summary().splitlines()[1:] == [
        line for line in guide if line.startswith("  ") and "orders.*." in line
    ]


# --- nothing cut short ----------------------------------------------------------------


class UserFlags(BaseModel):
    flags: dict[str, bool | int | str | None]
    cohort: str | None = None


class FlagsV1(BaseModel):
    users: dict[int, dict[str, bool | int | str | None]]


class FlagsV2(BaseModel):
    users: dict[int, UserFlags]


def test_a_changed_type_is_described_in_words_not_cut_json(tmp_path: Path) -> None:
    """It once ended ``first at additionalProperties: {"anyOf": [{"type": "boolean"},
    {"typ... became (absent)``."""
    _, stub = evolve(tmp_path, FlagsV1, FlagsV2)
    assert stub.todos == (
        "users.* changed from a dict of bool | int | str | None to an object"
        " with fields cohort, flags",
    )


class FlagsV0(BaseModel):
    users: dict[str, dict[str, bool]]


def test_a_nested_dict_says_whose_keys_changed_and_nothing_more(tmp_path: Path) -> None:
    """The descriptions differ: no "first at" with the JSON found there after them."""
    _, stub = evolve(tmp_path, FlagsV0, FlagsV1)
    assert stub.todos == (
        "users changed from a dict of a dict of bool to a dict of int keys to a dict of"
        " bool | int | str | None",
    )


def test_brief_json_elides_whole_values_and_says_how_many() -> None:
    long = {"anyOf": [{"type": name} for name in ("boolean", "integer", "string", "null")]}
    assert brief_json(long, 90) == (
        '{"anyOf": [{"type": "boolean"}, {"type": "integer"}, {"type": "string"},'
        " ... (1 more)]}"
    )
    assert brief_json(long) == '{"anyOf": [{...}, {...}, {...}, ... (1 more)]}'
    assert brief_json(long, 20) == '{"anyOf": [...]}'
    assert brief_json("short") == '"short"'


def test_stubs_with_these_todos_pass_the_projects_linter(tmp_path: Path) -> None:
    pairs = [(BoxV1, BoxV3), (StockV1, StockV3), (OrderV1, OrderV2), (FlagsV1, FlagsV2)]
    for index, (old, new) in enumerate(pairs):
        evolve(tmp_path / str(index), old, new)
    files = sorted(str(p) for p in tmp_path.glob("*/migrations/*.py"))
    assert len(files) == len(pairs)
    lint = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--config", str(REPO / "pyproject.toml"), *files],
        capture_output=True,
        text=True,
        timeout=120,  # stops a hang only
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
