"""makemigration: schema diffs, generated steps that pass the checks, TODOs, and refusals."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any, Literal, NotRequired, cast

import pytest
from pydantic import AliasChoices, BaseModel, Field
from stub_helpers import evolve
from typing_extensions import TypedDict

from statemigrate._errors import MigrationCheckError, RegistrationError
from statemigrate._model._jsonschema import without_details
from statemigrate._model._registry import Registry
from statemigrate.evolution._makemigration import make_migration
from statemigrate.evolution._schemadiff import diff_schemas
from statemigrate.evolution._schemalock import freeze_schemas, schema_text
from statemigrate.reference import SCHEMAS, build_registry
from statemigrate.testing import CheckFailure, check_migrations
from statemigrate.testing._exact import exact_differences

REPO = Path(__file__).resolve().parents[2]

GUESSED_LOSS = (
    "lossy=({}) is a guess: once this step moves what it drops into the fields it"
    " computes, narrow lossy= to what is really lost or remove it; statemigrate check"
    " never compares a field declared lost, so a guess left in hides this step's bugs"
)


class SettingsV1(BaseModel):
    limit: int
    name: str


class SettingsV2(BaseModel):
    limit: int
    name: str
    mode: Literal["fast", "safe"] = "safe"
    tags: list[str] = []


class ItemV1(TypedDict):
    price: int


class CartV1(TypedDict):
    items: dict[str, ItemV1]


class ItemV2(TypedDict):
    price: int
    note: NotRequired[str]
    qty: Annotated[int, Field(ge=1, default=1)]


class CartV2(TypedDict):
    items: dict[str, ItemV2]


class ProfileV1(BaseModel):
    name: str
    nickname: str = "anonymous"


class ProfileV2(BaseModel):
    name: str


class RenamedV1(BaseModel):
    value: str
    count: int = 0


class RenamedV2(BaseModel):
    data: str = Field(validation_alias=AliasChoices("data", "value"))
    count: int = 0


class TwinV2(BaseModel):
    data: str
    count: int = 0


class RetypedV2(BaseModel):
    value: int
    count: int = 0


def loaded(registry: Registry, tmp_path: Path) -> Registry:
    registry.load_migrations(tmp_path / "migrations")
    return registry


# --- generated steps that need no editing -----------------------------------------------


def test_an_added_field_stub_passes_the_checks_unedited(tmp_path: Path) -> None:
    registry, stub = evolve(tmp_path, "settings", SettingsV1, SettingsV2)
    assert stub.path == tmp_path / "migrations" / "settings_0001_v1_to_v2.py"
    assert stub.path.read_text(encoding="utf-8") == stub.code
    assert (stub.source, stub.target, stub.todos) == (1, 2, ())
    assert stub.upgrade_lost == () and stub.downgrade_lost == ("mode", "tags")
    assert 'FieldChanges(add={"mode": "safe", "tags": []})' in stub.code
    assert 'FieldChanges(drop=["mode", "tags"])' in stub.code
    report = check_migrations(loaded(registry, tmp_path))
    assert report.ok and len(report.results) == 4


def test_the_guide_shows_the_stub_makemigration_writes(tmp_path: Path) -> None:
    _, stub = evolve(tmp_path, "settings", SettingsV1, SettingsV2)
    steps = stub.code[stub.code.index("# Upgrade") :]
    assert steps in (REPO / "docs" / "testing.md").read_text(encoding="utf-8")


@pytest.mark.slow
def test_nested_added_fields_with_a_default_and_optional(tmp_path: Path) -> None:
    registry, stub = evolve(tmp_path, "cart", CartV1, CartV2, name="qty_and_note")
    assert stub.path.name == "cart_0001_qty_and_note.py"
    assert stub.downgrade_lost == ("items.*.note", "items.*.qty")
    assert 'for obj in _objects(data, ("items", "*")):' in stub.code
    assert '# "note" is optional and has no default: left absent' in stub.code
    assert check_migrations(loaded(registry, tmp_path)).ok


def test_a_removed_field_is_a_lossy_upgrade_and_comes_back_as_its_default(
    tmp_path: Path,
) -> None:
    registry, stub = evolve(tmp_path, "profile", ProfileV1, ProfileV2)
    assert stub.upgrade_lost == ("nickname",) and stub.downgrade_lost == ()
    assert 'FieldChanges(drop=["nickname"])' in stub.code
    assert 'FieldChanges(add={"nickname": "anonymous"})' in stub.code
    assert stub.path.name == "profile_0001_drop_nickname.py"
    assert check_migrations(loaded(registry, tmp_path)).ok


def test_a_rename_declared_by_alias_choices_is_lossless(tmp_path: Path) -> None:
    registry, stub = evolve(tmp_path, "renamed", RenamedV1, RenamedV2)
    assert (stub.upgrade_lost, stub.downgrade_lost, stub.todos) == ((), (), ())
    assert 'FieldChanges(rename={"value": "data"})' in stub.code
    assert 'FieldChanges(rename={"data": "value"})' in stub.code
    assert check_migrations(loaded(registry, tmp_path)).ok


def test_a_rename_declared_by_hand(tmp_path: Path) -> None:
    registry, stub = evolve(tmp_path, "twin", RenamedV1, TwinV2, renames={"value": "data"})
    assert (stub.upgrade_lost, stub.downgrade_lost, stub.todos) == ((), (), ())
    assert check_migrations(loaded(registry, tmp_path)).ok


def test_generated_modules_pass_the_projects_linter(tmp_path: Path) -> None:
    if importlib.util.find_spec("ruff") is None:
        pytest.skip("ruff is not installed (it comes with the dev extra)")
    for component, old, new, options in (
        ("settings", SettingsV1, SettingsV2, {}),
        ("cart", CartV1, CartV2, {}),
        ("retyped", RenamedV1, RetypedV2, {}),
        ("shelf", ShelfV1, ShelfV2, {"records": "items"}),
    ):
        evolve(tmp_path / component, component, old, new, **options)
    files = sorted(str(p) for p in tmp_path.glob("*/migrations/*.py"))
    assert len(files) == 4
    lint = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--config", str(REPO / "pyproject.toml"), *files],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


class GoalV1(BaseModel):
    limit: int


class GoalV2(BaseModel):
    limit: int
    objective: str = "obj"


def test_field_names_and_defaults_are_written_as_they_are(tmp_path: Path) -> None:
    # The lines of a step on the top-level data once named their object by rewriting
    # every "obj" in them, field names and defaults included.
    registry, stub = evolve(tmp_path, "goal", GoalV1, GoalV2)
    assert 'FieldChanges(add={"objective": "obj"})' in stub.code
    assert 'FieldChanges(drop=["objective"])' in stub.code
    assert check_migrations(loaded(registry, tmp_path)).ok


class SpecialsV2(BaseModel):
    limit: int
    name: str
    ceiling: float = math.inf
    floor: float = -math.inf
    missing: float = math.nan
    icon: str = "\U0001f600"


def test_infinities_nan_and_text_outside_the_bmp_are_written_so_that_they_load(
    tmp_path: Path,
) -> None:
    """``inf`` was written as a bare name (NameError on import), and a character outside
    the BMP as a JSON surrogate pair, two lone surrogates that FieldChanges refuses."""
    registry, stub = evolve(tmp_path, "specials", SettingsV1, SpecialsV2)
    for part in (
        '"ceiling": float("inf")',
        '"floor": float("-inf")',
        '"icon": "\\U0001f600"',
        '"missing": float("nan")',
    ):
        assert part in stub.code
    loaded(registry, tmp_path)
    data = registry.plan("specials", 1, 2).apply({"limit": 1, "name": "n"})
    upgraded = registry.schema_for("specials", 2).validate(data)
    assert exact_differences(SpecialsV2(limit=1, name="n"), upgraded) == []


class ShelfV1(TypedDict):
    items: dict[str, ItemV1]
    owner: str


class ShelfV2(TypedDict):
    items: dict[str, ItemV2]
    owner: str
    label: Annotated[str, Field(default="obj")]


def test_record_steps_migrate_one_record_and_the_other_fields(tmp_path: Path) -> None:
    registry, stub = evolve(tmp_path, "shelf", ShelfV1, ShelfV2, records="items")
    assert stub.todos == ()
    assert stub.downgrade_lost == ("items.*.note", "items.*.qty", "label")
    assert 'upgrade_1_to_2 = migration("shelf", 1, 2,' in stub.code
    assert 'FieldChanges(add={"qty": 1})' in stub.code and 'data["label"] = "obj"' in stub.code
    loaded(registry, tmp_path)
    for source, target in ((1, 2), (2, 1)):
        plan = registry.plan("shelf", source, target, allow_lossy=True)
        assert plan.record_wise, plan
    state = {"items": {"a": {"price": 3}}, "owner": "me"}
    upgraded = registry.plan("shelf", 1, 2).apply(state)
    assert upgraded == {"items": {"a": {"price": 3, "qty": 1}}, "owner": "me", "label": "obj"}
    assert check_migrations(registry).ok


def test_record_steps_need_a_dict_field_left_as_it_is(tmp_path: Path) -> None:
    with pytest.raises(RegistrationError, match="version 1 has no top-level dict field 'owner'"):
        evolve(tmp_path / "a", "shelf", ShelfV1, ShelfV2, records="owner")
    with pytest.raises(RegistrationError, match="no top-level dict field 'nothing'"):
        evolve(tmp_path / "b", "shelf", ShelfV1, ShelfV2, records="nothing")


class MovedV2(TypedDict):
    goods: dict[str, ItemV1]
    owner: str


def test_record_steps_refuse_a_field_the_new_version_renamed(tmp_path: Path) -> None:
    with pytest.raises(RegistrationError, match="version 2 has no top-level dict field 'items'"):
        evolve(tmp_path, "shelf", ShelfV1, MovedV2, records="items")


def test_a_change_inside_records_only_suggests_record_steps(tmp_path: Path) -> None:
    _, stub = evolve(tmp_path, "cart", CartV1, CartV2, write=False)
    assert any("record steps (`--records items`)" in note for note in stub.notes)
    _, stub = evolve(tmp_path / "shelf", "shelf", ShelfV1, ShelfV2, write=False)
    assert not any("--records" in note for note in stub.notes)  # "label" is beside them


# --- what cannot be generated fails loudly ------------------------------------------------


def test_a_changed_type_becomes_a_todo_in_both_steps(tmp_path: Path) -> None:
    registry, stub = evolve(tmp_path, "retyped", RenamedV1, RetypedV2)
    assert stub.todos == ("value changed from str to int",)
    assert stub.code.count("raise NotImplementedError(") == 2
    assert "TODO: value changed from str to int" in stub.summary()
    with pytest.raises(MigrationCheckError) as raised:
        check_migrations(loaded(registry, tmp_path))
    whats = {cast(CheckFailure, failure).what for failure in raised.value.failures}
    assert "step raised NotImplementedError" in whats
    assert "retyped 1 -> 2 is not finished" in str(raised.value)


def test_a_remove_and_add_of_the_same_type_is_not_taken_for_a_rename(tmp_path: Path) -> None:
    registry, stub = evolve(tmp_path, "twin", RenamedV1, TwinV2)
    assert stub.upgrade_lost == ("value",)
    assert any("--rename value=data" in note for note in stub.notes)
    assert stub.todos == (
        "data is new and required, with no default: compute it",
        GUESSED_LOSS.format("value"),
        "value was removed but the old version requires it, with no default: rebuild it",
        GUESSED_LOSS.format("data"),
    )


@pytest.mark.parametrize(
    ("renames", "message"),
    [
        ({"nope": "data"}, "nope is no field removed with a new field 'data' beside it"),
        ({"value": "count"}, "value is no field removed with a new field 'count' beside it"),
        ({"x.value": "data"}, "x.value is no field removed"),
    ],
)
def test_a_rename_that_renames_nothing_is_refused(
    tmp_path: Path, renames: dict[str, str], message: str
) -> None:
    """A typo in --rename would otherwise become a removal and an addition silently."""
    with pytest.raises(RegistrationError, match=message + r".*\(removed: value\)"):
        evolve(tmp_path, "twin", RenamedV1, TwinV2, renames=renames)


def test_the_reference_v2_to_v3_change_leaves_only_the_hit_counter_to_write(
    tmp_path: Path,
) -> None:
    registry = Registry()
    registry.add_schema("kvcache", 2, SCHEMAS[2])
    freeze_schemas(registry, tmp_path / "schemas")
    registry.add_schema("kvcache", 3, SCHEMAS[3])
    stub = make_migration(
        registry,
        "kvcache",
        schemas_dir=tmp_path / "schemas",
        migrations_dir=tmp_path / "migrations",
        renames={"entries.*.value": "data"},
    )
    assert stub.todos == ("entries.*.hits is new and required, with no default: compute it",)
    assert stub.downgrade_lost == ("entries.*.hits",)
    # Loaded into the test's registry: run as a plain module, its steps would
    # register into the default one, which outlives the test.
    loaded(registry, tmp_path)
    with pytest.raises(NotImplementedError, match=r"entries\.\*\.hits"):
        registry.plan("kvcache", 2, 3).steps[0].apply({"entries": {}})
    down = registry.plan("kvcache", 3, 2, allow_lossy=True).steps[0]
    assert down.apply({"entries": {"k": {"data": "v", "expires_at": None, "hits": 4}}}) == {
        "entries": {"k": {"value": "v", "expires_at": None}}
    }


# --- how the live schema and the new version are found ------------------------------------


def test_a_version_edited_in_place_is_written_as_the_next_version(tmp_path: Path) -> None:
    registry = Registry()
    registry.add_schema("settings", 1, SettingsV1)
    freeze_schemas(registry, tmp_path / "schemas")
    edited = Registry()
    edited.add_schema("settings", 1, SettingsV2)  # changed without a bump
    stub = make_migration(
        edited, "settings", schemas_dir=tmp_path / "schemas", migrations_dir=tmp_path / "m"
    )
    assert (stub.source, stub.target) == (1, 2)
    assert any("changed in place" in note for note in stub.notes)


def test_an_unregistered_type_named_explicitly(tmp_path: Path) -> None:
    registry = Registry()
    registry.add_schema("settings", 1, SettingsV1)
    freeze_schemas(registry, tmp_path / "schemas")
    options: dict[str, Any] = {
        "schemas_dir": tmp_path / "schemas",
        "migrations_dir": tmp_path / "m",
        "write": False,
    }
    stub = make_migration(registry, "settings", schema=SettingsV2, version=5, **options)
    assert (stub.source, stub.target) == (1, 5) and not stub.path.exists()
    registry.add_schema("settings", 2, ProfileV2)
    with pytest.raises(RegistrationError, match="version 2 is registered with another schema"):
        make_migration(registry, "settings", schema=SettingsV2, **options)
    with pytest.raises(RegistrationError, match="only be given with the new schema"):
        make_migration(registry, "settings", version=3, **options)


def test_refusals(tmp_path: Path) -> None:
    registry = build_registry()
    options: dict[str, Any] = {
        "schemas_dir": tmp_path / "schemas",
        "migrations_dir": tmp_path / "m",
    }
    with pytest.raises(RegistrationError, match="no frozen schema"):
        make_migration(registry, "kvcache", **options)
    freeze_schemas(registry, tmp_path / "schemas")
    with pytest.raises(RegistrationError, match="nothing to migrate"):
        make_migration(registry, "kvcache", **options)
    with pytest.raises(RegistrationError, match=r"steps between 2 and 3 exist"):
        make_migration(
            registry,
            "kvcache",
            schema=SCHEMAS[3],
            version=3,
            **{**options, "schemas_dir": _frozen_up_to(tmp_path, 2)},
        )
    _, stub = evolve(tmp_path / "twice", "settings", SettingsV1, SettingsV2)
    again = Registry()
    again.add_schema("settings", 1, SettingsV1)
    again.add_schema("settings", 2, SettingsV2)
    with pytest.raises(RegistrationError, match=r"settings 1 -> 2 \(settings_0001_v1_to_v2\.py\)"):
        make_migration(  # the directory already declares them, though not loaded here
            again,
            "settings",
            schemas_dir=tmp_path / "twice" / "schemas",
            migrations_dir=tmp_path / "twice" / "migrations",
        )
    assert sorted(p.name for p in (tmp_path / "twice" / "migrations").iterdir()) == [stub.path.name]


def _frozen_up_to(tmp_path: Path, version: int) -> Path:
    registry = Registry()
    for number in range(1, version + 1):
        registry.add_schema("kvcache", number, SCHEMAS[number])
    folder = tmp_path / f"schemas_to_{version}"
    freeze_schemas(registry, folder)
    return folder


def test_module_numbers_continue_after_the_existing_ones(tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    for name in ("settings_0001_a.py", "settings_0007_b.py", "other_0042_c.py", "settings.py"):
        (folder / name).write_text("")
    _, stub = evolve(tmp_path, "settings", SettingsV1, SettingsV2)
    assert stub.path.name == "settings_0008_v1_to_v2.py"


# --- the diff itself, on literal schemas ----------------------------------------------------


def test_a_schema_has_no_changes_against_itself() -> None:
    registry = build_registry()
    for version in (1, 2, 3):
        schema = registry.schema_for("kvcache", version).json_schema()
        assert diff_schemas(schema, schema) == []


def test_changes_are_found_through_dict_values_list_items_and_optionals() -> None:
    def doc(item: dict[str, Any]) -> dict[str, Any]:
        return {
            "$defs": {"d0": item},
            "properties": {
                "rows": {"type": "array", "items": {"$ref": "#/$defs/d0"}},
                "maybe": {"anyOf": [{"$ref": "#/$defs/d0"}, {"type": "null"}]},
            },
            "type": "object",
        }

    old = doc({"properties": {"a": {"type": "integer"}}, "required": ["a"], "type": "object"})
    new = doc(
        {
            "properties": {"a": {"type": "integer"}, "b": {"type": "string", "default": "x"}},
            "required": ["a"],
            "type": "object",
        }
    )
    changes = diff_schemas(old, new)
    assert [(c.kind, c.where, c.default) for c in changes] == [
        ("added", "maybe.b", "x"),
        ("added", "rows.*.b", "x"),
    ]


def test_a_changed_bound_or_union_branch_names_what_changed() -> None:
    """A bound is named with both values; two tagged unions described alike: the TODO
    says where the two schemas first differ, references followed."""

    def doc(limit: int, quantity: str) -> dict[str, Any]:
        return {
            "$defs": {
                "d0": {
                    "properties": {"kind": {"const": "limit"}, "qty": {"type": quantity}},
                    "required": ["kind", "qty"],
                    "type": "object",
                },
                "d1": {
                    "properties": {"kind": {"const": "market"}},
                    "required": ["kind"],
                    "type": "object",
                },
            },
            "properties": {
                "level": {"maximum": limit, "type": "integer"},
                "order": {
                    "discriminator": {
                        "mapping": {"limit": "#/$defs/d0", "market": "#/$defs/d1"},
                        "propertyName": "kind",
                    },
                    "oneOf": [{"$ref": "#/$defs/d0"}, {"$ref": "#/$defs/d1"}],
                },
            },
            "required": ["level", "order"],
            "type": "object",
        }

    changes = diff_schemas(doc(3, "integer"), doc(5, "string"))
    assert [c.detail for c in changes] == [
        "level: maximum 3 -> 5, a looser bound: the downgrade must clamp or drop the values"
        " the old one refuses",
        "order changed from a union tagged by kind (limit, market) to a union tagged by kind"
        ' (limit, market); first at oneOf/0/properties/qty/type: "integer" became "string"',
    ]


class PricesV1(TypedDict):
    by_id: dict[str, str]
    tags: list[set[str]]


class PricesV2(TypedDict):
    """Key type and set type changed: pydantic writes the same JSON Schema for both."""

    by_id: dict[int, str]
    tags: list[frozenset[str]]


def test_a_changed_dict_key_type_or_container_is_a_todo_not_a_silent_no_op() -> None:
    """A step that passes ``{"007": ..., "7": ...}`` on unchanged would lose a record to
    version 2's validation; the stub must leave it to its author."""
    registry = Registry()
    registry.add_schema("prices", 1, PricesV1)
    registry.add_schema("prices", 2, PricesV2)
    old, new = (registry.schema_for("prices", v).json_schema() for v in (1, 2))
    assert [(c.kind, c.detail) for c in diff_schemas(old, new)] == [
        ("todo", "by_id changed from a dict of str to a dict of int keys to str"),
        ("todo", "tags.* changed from set[str] to frozenset[str]"),
    ]


# --- a frozen file of an earlier release, which recorded no Python types ------------------


class RatesV1(TypedDict):
    by_id: dict[int, float]


class RatesV2(TypedDict):
    by_id: dict[int, float]
    note: NotRequired[str]


def _frozen_by_an_earlier_release(tmp_path: Path, schema: type) -> Path:
    """Version 1 frozen as a release before the Python types were recorded froze it:
    pydantic's JSON Schema alone, and no lock format."""
    registry = Registry()
    registry.add_schema("rates", 1, schema)
    folder = tmp_path / "schemas"
    (path,) = (result.path for result in freeze_schemas(registry, folder))
    live = registry.schema_for("rates", 1).json_schema()
    path.write_text(schema_text(without_details(live)), encoding="utf-8")
    return folder


def test_a_key_type_a_frozen_file_of_an_earlier_release_lacks_is_no_change(
    tmp_path: Path,
) -> None:
    """The file holds no key type, whatever it was: the stub does not claim that int
    keys are new, and a note says why it cannot tell, and how to record them."""
    folder = _frozen_by_an_earlier_release(tmp_path, RatesV1)
    registry = Registry()
    registry.add_schema("rates", 1, RatesV1)
    registry.add_schema("rates", 2, RatesV2)
    stub = make_migration(
        registry, "rates", schemas_dir=folder, migrations_dir=tmp_path / "migrations"
    )
    assert [(c.kind, c.where) for c in stub.changes] == [("added", "note")]
    assert stub.todos == ()
    assert "keys" not in stub.code
    (note,) = [note for note in stub.notes if "earlier release" in note]
    assert "field `by_id`: dict keys unrecorded became int" in note
    assert "statemigrate schemas freeze` on the released code" in note
    assert check_migrations(loaded(registry, tmp_path)).ok


def test_a_frozen_file_of_an_earlier_release_that_differs_only_in_its_record_is_refused(
    tmp_path: Path,
) -> None:
    """Version 1 as released, registered unchanged: not a version edited in place."""
    folder = _frozen_by_an_earlier_release(tmp_path, RatesV1)
    registry = Registry()
    registry.add_schema("rates", 1, RatesV1)
    with pytest.raises(RegistrationError) as caught:
        make_migration(registry, "rates", schemas_dir=folder, migrations_dir=tmp_path / "m")
    message = str(caught.value)
    assert "differs from the frozen version 1 only in such types" in message
    assert "was frozen by an earlier release" in message
    assert "statemigrate schemas freeze` on the released code" in message
    assert not (tmp_path / "m").exists()


class SupplierV1(BaseModel):
    supplier: str = Field(default="", alias="supplierName")


class VendorV2(BaseModel):
    vendor: str = Field(default="", alias="supplierName")


def test_a_field_renamed_under_the_same_alias_is_a_rename(tmp_path: Path) -> None:
    """Snapshots hold fields by their Python names: the rename is seen (it hid behind
    the alias, and ``--rename`` was refused as renaming nothing)."""
    registry, stub = evolve(
        tmp_path, "stock", SupplierV1, VendorV2, renames={"supplier": "vendor"}
    )
    assert 'FieldChanges(rename={"supplier": "vendor"})' in stub.code
    assert check_migrations(loaded(registry, tmp_path)).ok


def test_a_file_frozen_with_aliases_is_refused_for_a_schema_with_aliases(
    tmp_path: Path,
) -> None:
    """A file of lock format 2 names aliased fields by their aliases: what they were
    called cannot be told from it, so the diff is refused until the file is frozen
    again."""
    registry = Registry()
    registry.add_schema("stock", 1, SupplierV1)
    freeze_schemas(registry, tmp_path / "schemas")
    path = tmp_path / "schemas" / "stock" / "v1.json"
    earlier = registry.schema_for("stock", 1).json_schema(by_alias=True)
    path.write_text(json.dumps({**earlier, "x-statemigrate-lock": 2}))
    registry.add_schema("stock", 2, VendorV2)
    with pytest.raises(RegistrationError, match="which named fields by their aliases"):
        make_migration(
            registry,
            "stock",
            schemas_dir=tmp_path / "schemas",
            migrations_dir=tmp_path / "migrations",
        )


class PlainV1(BaseModel):
    label: str = ""


class AliasedV2(BaseModel):
    label: str = ""
    supplier: str = Field(default="", alias="supplierName")


def test_a_file_frozen_before_names_is_read_when_its_version_had_no_alias(
    tmp_path: Path,
) -> None:
    """Version 1 has no alias, so its file of lock format 2 names every field as it
    is: only version 2 adds an aliased field, and makemigration goes ahead (it was
    refused, and freezing again left the file as it was)."""
    registry = Registry()
    registry.add_schema("stock", 1, PlainV1)
    freeze_schemas(registry, tmp_path / "schemas")
    path = tmp_path / "schemas" / "stock" / "v1.json"
    earlier = registry.schema_for("stock", 1).json_schema()
    path.write_text(json.dumps({**earlier, "x-statemigrate-lock": 2}))
    registry.add_schema("stock", 2, AliasedV2)
    stub = make_migration(
        registry, "stock", schemas_dir=tmp_path / "schemas", migrations_dir=tmp_path / "m"
    )
    assert 'FieldChanges(add={"supplier": ""})' in stub.code
    (v1, _) = freeze_schemas(registry, tmp_path / "schemas")
    assert v1.action == "recorded"  # the format, marked once
    assert json.loads(path.read_text())["x-statemigrate-lock"] == 3


@pytest.mark.parametrize("name", ["../../evil", "a.b", "a/b", "with space", "", "é"])
def test_a_name_that_is_not_a_plain_module_name_is_refused(tmp_path: Path, name: str) -> None:
    """``name`` ends the module's file name. Before, ``../../evil`` was joined into the
    path, pointing outside the migrations directory, and the write failed with ENOENT;
    ``a.b`` wrote a module no migrations directory imports."""
    with pytest.raises(RegistrationError, match="is not a plain module name") as caught:
        evolve(tmp_path, "settings", SettingsV1, SettingsV2, name=name)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "migrations").exists()
