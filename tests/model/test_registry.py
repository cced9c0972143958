"""The registry: registration errors, lookups, planning, checks and loading migrations modules."""

from __future__ import annotations

import errno
import os
import re
import sys
import textwrap
import typing
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel, Field, RootModel
from typing_extensions import TypedDict

import statemigrate._model._registry as registry_module
from statemigrate._errors import (
    LossyMigrationError,
    NoMigrationPathError,
    RegistrationError,
    UnknownComponentError,
)
from statemigrate._model._component import component_spec
from statemigrate._model._registry import Registry, migratable, migration, schema


class V1(TypedDict):
    entries: dict[str, str]


class V2(BaseModel):
    entries: dict[str, int]


class TypingDict(typing.TypedDict):
    x: int


def same(data: Any) -> Any:
    return data


def sample() -> Registry:
    reg = Registry()
    reg.add_schema("cache", 1, V1)
    reg.add_schema("cache", 2, V2)
    reg.add_migration("cache", 1, 2, same)
    reg.add_migration("cache", 2, 1, same, lossy=True)
    return reg


@pytest.fixture
def fresh_default(monkeypatch: pytest.MonkeyPatch) -> Registry:
    """Replace the default registry for one test, so the real one is never touched."""
    replacement = Registry()
    monkeypatch.setattr(registry_module, "default_registry", replacement)
    return replacement


def test_a_copy_holds_the_same_versions_and_steps_and_grows_apart() -> None:
    original = sample()
    copy = original.copy()
    assert copy is not original
    assert copy.components() == ["cache"] and copy.versions("cache") == [1, 2]
    assert copy.steps("cache") == original.steps("cache")
    assert copy.schema_for("cache", 2) is original.schema_for("cache", 2)
    copy.add_schema("cache", 3, V2)
    copy.add_migration("cache", 2, 3, same)
    copy.add_schema("other", 1, V1)
    assert original.versions("cache") == [1, 2] and original.components() == ["cache"]
    assert len(original.steps("cache")) == 2 and len(copy.steps("cache")) == 3


# --- registration errors ------------------------------------------------------------------


def test_same_schema_version_twice() -> None:
    reg = sample()
    with pytest.raises(RegistrationError, match="'cache' version 1 is already registered"):
        reg.add_schema("cache", 1, V2)


def test_same_step_twice() -> None:
    reg = sample()
    with pytest.raises(RegistrationError, match=r"cache 1 -> 2 \(same\) is already registered"):
        reg.add_migration("cache", 1, 2, lambda data: data)


@pytest.mark.parametrize(("source", "target"), [(2, 2), (0, 1), (1, -1), (True, 2), (1.0, 2)])
def test_bad_step_versions(source: Any, target: Any) -> None:
    with pytest.raises(RegistrationError):
        Registry().add_migration("cache", source, target, same)


@pytest.mark.parametrize("version", [0, -3, True, "2", 2.0, 2**31])
def test_bad_schema_versions(version: Any) -> None:
    with pytest.raises(RegistrationError, match="invalid version"):
        Registry().add_schema("cache", version, V1)


@pytest.mark.parametrize("name", ["", "a/b", "has space", "-x", None, "x" * 129])
def test_bad_component_names(name: Any) -> None:
    with pytest.raises(RegistrationError, match="invalid component name"):
        Registry().add_schema(name, 1, V1)
    with pytest.raises(RegistrationError, match="invalid component name"):
        Registry().add_migration(name, 1, 2, same)


def test_bad_lossy_declarations() -> None:
    reg = Registry()
    with pytest.raises(RegistrationError, match="lossy must be"):
        reg.add_migration("c", 1, 2, same, lossy=3)  # type: ignore[arg-type]
    with pytest.raises(RegistrationError, match="non-empty strings"):
        reg.add_migration("c", 1, 2, same, lossy=("ok", ""))
    with pytest.raises(RegistrationError, match="not callable"):
        reg.add_migration("c", 1, 2, "not a function")  # type: ignore[arg-type]
    assert reg.components() == []  # nothing half-registered


def test_lossy_forms() -> None:
    reg = Registry()
    assert reg.add_migration("c", 2, 1, same, lossy="ttl").lost_fields == ("ttl",)
    assert reg.add_migration("c", 3, 2, same, lossy=["a", "b"]).lossy
    assert not reg.add_migration("c", 1, 2, same, lossy=()).lossy
    flagged = reg.add_migration("c", 3, 1, same, lossy=True, name="drop")
    assert (flagged.lossy, flagged.lost_fields, str(flagged)) == (True, (), "c 3 -> 1 (drop)")


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="pydantic accepts it from 3.12 on")
def test_typing_typeddict_is_a_registration_error() -> None:
    with pytest.raises(RegistrationError, match="typing_extensions.TypedDict"):
        Registry().add_schema("c", 1, TypingDict)


HUGE = 10**5000
"""An int of more digits than Python writes as text (4,300 by default)."""

HugeLiteral: Any = Literal.__getitem__(HUGE)  # built at run time: a type checker wants literals


class HugeLiteralRow(TypedDict):
    code: HugeLiteral


class HugeDefault(BaseModel):
    count: int = HUGE


class HugeBound(BaseModel):
    count: int = Field(default=0, le=HUGE)


@pytest.mark.parametrize(
    "type_",
    [HugeLiteral, dict[str, HugeLiteral], HugeLiteralRow, HugeDefault, HugeBound],
    ids=["literal", "literal-in-dict", "literal-field", "default", "bound"],
)
def test_an_int_past_pythons_digits_for_text_is_one_registration_error(type_: Any) -> None:
    """Before, the first two raised a bare ValueError (typing's repr of the type, in
    pydantic), the last two a bare ValueError from the fingerprint's JSON text, and a
    TypedDict's field a RegistrationError that only quoted Python's advice."""
    with pytest.raises(RegistrationError) as caught:
        Registry().add_schema("codes", 1, type_)
    message = str(caught.value)
    assert message.startswith(
        "schema 'codes' version 1: an int in the type (a Literal or enum value, a default,"
        f" a bound) has more than {sys.get_int_max_str_digits()} digits"
    )
    assert "\n" not in message and "use an int of fewer digits" in message


class BinaryDefault(BaseModel):
    blob: bytes = b"\xff"


def test_a_default_json_has_no_value_for_registers_without_a_warning() -> None:
    """pydantic leaves a default that is not UTF-8 out of the JSON Schema the fingerprint
    hashes, and warns of it. Before, under warnings as errors, add_schema raised its
    PydanticJsonSchemaWarning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        registered = Registry().add_schema("blobs", 1, BinaryDefault)
        assert "default" not in registered.json_schema()["properties"]["blob"]


def test_decorators_return_what_they_decorate() -> None:
    reg = Registry()

    @reg.schema("c", version=1)
    class State(TypedDict):
        n: int

    @reg.migration("c", 1, 2, lossy=("n",))
    def step(data: Any) -> Any:
        return data

    assert reg.schema_for("c", 1).type is State
    assert reg.steps("c")[0].func is step
    assert reg.steps("c")[0].name == "step"


# --- lookups and planning -----------------------------------------------------------------


def test_lookups() -> None:
    reg = sample()
    reg.add_migration("steps-only", 1, 2, same)
    assert reg.components() == ["cache", "steps-only"]
    assert reg.versions("cache") == [1, 2]
    assert reg.versions("steps-only") == []
    assert reg.schema_for("cache", 2).type is V2
    assert reg.latest("cache").version == 2
    assert [(s.source, s.target) for s in reg.steps("cache")] == [(1, 2), (2, 1)]
    assert "cache" in repr(reg)


def test_unknown_component_and_version() -> None:
    reg = sample()
    with pytest.raises(UnknownComponentError) as info:
        reg.schema_for("nope", 1)
    assert (info.value.component, info.value.version, info.value.known) == ("nope", None, ["cache"])
    with pytest.raises(UnknownComponentError) as info:
        reg.schema_for("cache", 7)
    assert (info.value.version, info.value.known) == (7, [1, 2])
    assert str(info.value) == "unknown component 'cache' version 7; registered: 1, 2"
    for call in (reg.versions, reg.latest, reg.steps):
        with pytest.raises(UnknownComponentError):
            call("nope")
    with pytest.raises(UnknownComponentError):
        reg.plan("nope", 1, 2)


def test_plan_through_the_registry() -> None:
    reg = sample()
    assert [str(s) for s in reg.plan("cache", 1, 2).steps] == ["cache 1 -> 2 (same)"]
    with pytest.raises(LossyMigrationError):
        reg.plan("cache", 2, 1)
    assert reg.plan("cache", 2, 1, allow_lossy=True).lossy_steps
    assert reg.plan("cache", 2, 2).steps == ()
    with pytest.raises(NoMigrationPathError) as info:
        reg.plan("cache", 1, 5)
    assert info.value.edges == [(1, 2), (2, 1)]
    assert str(info.value).endswith("version 5 is not registered; registered versions: 1, 2")


def test_check_accepts_a_complete_graph() -> None:
    sample().check()
    sample().check("cache")


def test_check_reports_every_problem() -> None:
    reg = sample()
    reg.add_schema("cache", 3, V1)
    reg.add_migration("cache", 2, 4, same)
    reg.add_migration("orphan", 1, 2, same)
    with pytest.raises(RegistrationError) as info:
        reg.check()
    text = str(info.value)
    assert "cache 2 -> 4 (same): no schema version 4" in text
    assert "cache: version 1 cannot reach 3" in text
    assert "cache: version 3 cannot reach 1, 2" in text
    assert "orphan: steps but no schema versions" in text
    with pytest.raises(UnknownComponentError):
        reg.check("nope")
    # The same holes as lines, one each: what `statemigrate check` lists.
    assert text == "incomplete migrations: " + "; ".join(reg.problems())
    assert "cache: version 3 cannot reach 1, 2" in reg.problems("cache")
    assert sample().problems() == []


# --- field names a step declares, against its schemas -----------------------------------


class Line(BaseModel):
    qty: int
    tags: list[str] = []


class Stock(BaseModel):
    warehouse: str
    items: dict[int, Line]
    history: list[Line] = []
    spare: dict[str, Line] | None = None
    anything: Any = None


class Stock2(BaseModel):
    warehouse: str
    items: dict[int, Line]


def stock() -> Registry:
    reg = Registry()
    reg.add_schema("stock", 1, Stock)
    reg.add_schema("stock", 2, Stock2)
    return reg


def keep(key: Any, value: Any) -> Any:
    return value


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ("nope", "records='nope' names no field of version 2 (fields: items, warehouse)"),
        ("warehouse", "records='warehouse' names a str field of version 2, not a dict"),
    ],
)
def test_a_record_step_over_no_dict_field_is_refused(records: str, message: str) -> None:
    reg = stock()
    with pytest.raises(RegistrationError, match=re.escape(message)) as info:
        reg.add_migration("stock", 2, 1, keep, records=records, lossy=True)
    assert "stock 2 -> 1 (keep)" in str(info.value)
    assert reg.steps("stock") == []  # nothing half-registered


class Counts(RootModel[dict[str, int]]):
    pass


class Nested(RootModel[dict[str, dict[str, int]]]):
    pass


@pytest.mark.parametrize("schema", [Counts, dict[str, int]])
@pytest.mark.parametrize("records", ["nosuch", "*"])
def test_a_record_step_over_a_dict_of_leaves_is_refused(schema: Any, records: str) -> None:
    """A RootModel of a dict, or a bare dict, holds the name as a key at best: its
    values are ints, never records. Refused at registration, as for a BaseModel."""
    reg = Registry()
    reg.add_schema("r", 1, schema)
    reg.add_schema("r", 2, schema)
    message = f"records={records!r} names a key of version 1, a dict of int values, not of dicts"
    with pytest.raises(RegistrationError, match=re.escape(message)):
        reg.add_migration("r", 1, 2, keep, records=records)
    assert reg.steps("r") == []


def test_a_record_step_over_a_dict_of_dicts_may_name_any_key() -> None:
    """The control: under a dict of dicts any key may hold records."""
    reg = Registry()
    reg.add_schema("r", 1, Nested)
    reg.add_schema("r", 2, Nested)
    reg.add_migration("r", 1, 2, keep, records="group")
    reg.add_migration("r", 2, 1, keep, records="group")
    reg.check()
    assert reg.migrate("r", {"group": {"a": 1}, "other": {}}, 1, 2).data == {
        "group": {"a": 1},
        "other": {},
    }


def test_a_record_field_missing_at_the_target_is_refused() -> None:
    reg = stock()
    with pytest.raises(RegistrationError, match="records='spare' names no field of version 2"):
        reg.add_migration("stock", 1, 2, keep, records="spare")


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("itemz.*.qty", "'itemz' is not a field (fields: anything, history, items, spare,"),
        ("items.*.qtty", "'qtty' is not a field under 'items.*' (fields: qty, tags)"),
        ("warehouse.name", "'name' is not a field under 'warehouse' (it is a str)"),
        ("history.qty", "'qty' is not a field under 'history' (it is a list)"),
        ("items.*.qty.*", "items.*.qty' is an int, with no keys or items"),
    ],
)
def test_a_lost_field_that_names_nothing_is_refused(path: str, message: str) -> None:
    reg = stock()
    with pytest.raises(RegistrationError, match=re.escape(message)) as info:
        reg.add_migration("stock", 1, 2, same, lossy=(path,))
    assert f"lost field {path!r} names no field of version 1" in str(info.value)


@pytest.mark.parametrize(
    "path",
    [
        "warehouse",
        "items.*.qty",
        "items.*.tags.*",
        "history.*.tags",
        "spare.*.qty",  # through an Optional
        "spare.some-key.tags",  # a named key of a dict
        "*.qty",  # any field of the record
        "anything.whatever.below",  # Any holds any shape
    ],
)
def test_lost_fields_that_may_name_something_are_accepted(path: str) -> None:
    reg = stock()
    step = reg.add_migration("stock", 1, 2, same, lossy=(path,))
    assert step.lost_fields == (path,)


def test_record_steps_over_dict_fields_are_accepted() -> None:
    reg = stock()
    reg.add_migration("stock", 1, 2, keep, records="items", lossy=("items.*.tags", "history"))
    reg.add_migration("stock", 2, 1, keep, records="items")
    reg.check()
    loose = Registry()
    loose.add_schema("loose", 1, dict[str, Any])  # any key of a top-level dict may hold one
    loose.add_schema("loose", 2, dict[str, dict[str, int]])
    loose.add_migration("loose", 1, 2, keep, records="entries", lossy=("entries.*.x",))


def test_check_reports_fields_of_steps_registered_before_their_schemas() -> None:
    reg = Registry()
    reg.add_migration("stock", 1, 2, keep, records="warehouse")
    reg.add_migration("stock", 2, 1, same, lossy=("itemz.*.qty",))
    reg.add_schema("stock", 1, Stock)
    reg.add_schema("stock", 2, Stock2)
    with pytest.raises(RegistrationError) as info:
        reg.check()
    text = str(info.value)
    assert "records='warehouse' names a str field of version 1, not a dict" in text
    assert "stock 2 -> 1 (same): lost field 'itemz.*.qty' names no field of version 2" in text


# --- module-level decorators --------------------------------------------------------------


def test_module_decorators_use_the_default_registry(fresh_default: Registry) -> None:
    @schema("mod", version=1)
    class State(TypedDict):
        n: int

    @migration("mod", 1, 2)
    def up(data: Any) -> Any:
        return data

    @migratable("mod", version=1)
    class Live:
        n = 0

    assert fresh_default.schema_for("mod", 1).type is State
    assert fresh_default.steps("mod")[0].func is up
    assert component_spec(Live).registry is None  # unbound: resolved when used
    assert component_spec(Live).resolve() is fresh_default


def test_module_decorators_honour_an_explicit_registry(fresh_default: Registry) -> None:
    mine = Registry()

    @schema("mod", version=1, registry=mine)
    class State(TypedDict):
        n: int

    migration("mod", 1, 2, registry=mine)(same)

    @migratable("mod", version=1, registry=mine)
    class Live:
        n = 0

    assert mine.versions("mod") == [1] and len(mine.steps("mod")) == 1
    assert component_spec(Live).registry is mine
    assert fresh_default.components() == []


# --- loading migrations modules -----------------------------------------------------------


def write(folder: Path, name: str, body: str) -> None:
    (folder / name).write_text(textwrap.dedent(body), encoding="utf-8")


UP = """
from statemigrate._model._registry import migration

@migration("cache", 1, 2)
def up(data):
    return data
"""
DOWN = """
from statemigrate._model._registry import migration

@migration("cache", 2, 1, lossy=("entries",))
def down(data):
    return data
"""


def test_load_migrations_imports_sorted_modules(tmp_path: Path, fresh_default: Registry) -> None:
    write(tmp_path, "b_down.py", DOWN)
    write(tmp_path, "a_up.py", UP)
    write(tmp_path, "_helper.py", "raise RuntimeError('never imported')\n")
    write(tmp_path, "notes.txt", "not python\n")
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub", "c.py", "raise RuntimeError('not imported either')\n")
    reg = Registry()
    assert reg.load_migrations(tmp_path) == ["a_up", "b_down"]
    assert [str(s) for s in reg.steps("cache")] == ["cache 1 -> 2 (up)", "cache 2 -> 1 (down)"]
    assert fresh_default.components() == []  # routed to the registry being loaded


def test_same_directory_into_two_registries(tmp_path: Path) -> None:
    write(tmp_path, "a_up.py", UP)
    first, second = Registry(), Registry()
    first.load_migrations(str(tmp_path))
    second.load_migrations(tmp_path)
    assert first.steps("cache")[0].func is not second.steps("cache")[0].func
    with pytest.raises(RegistrationError, match="already registered"):
        first.load_migrations(tmp_path)  # loading twice is a duplicate registration


def test_failing_module_is_named_and_nothing_stays(tmp_path: Path) -> None:
    write(tmp_path, "a_up.py", UP)
    write(tmp_path, "b_broken.py", DOWN + "\nraise ValueError('boom')\n")
    reg = Registry()
    reg.add_schema("cache", 1, V1)
    with pytest.raises(RegistrationError) as info:
        reg.load_migrations(tmp_path)
    assert "b_broken.py" in str(info.value) and "ValueError: boom" in str(info.value)
    assert isinstance(info.value.__cause__, ValueError)
    assert reg.components() == ["cache"] and reg.steps("cache") == []  # all or nothing
    assert not any("b_broken" in name for name in sys.modules)


def test_a_module_that_exits_fails_to_load_and_nothing_stays(tmp_path: Path) -> None:
    """sys.exit() in a migrations module once ended the process loading the directory."""
    write(tmp_path, "a_up.py", UP)
    write(tmp_path, "b_exits.py", "import sys\nsys.exit(3)\n")
    reg = Registry()
    with pytest.raises(RegistrationError) as info:
        reg.load_migrations(tmp_path)
    assert "b_exits.py" in str(info.value)
    assert str(info.value).endswith("failed to load: it raised SystemExit(3)")
    assert isinstance(info.value.__cause__, SystemExit)
    assert reg.components() == [] and not any("b_exits" in name for name in sys.modules)


def test_an_interrupt_while_loading_goes_through(tmp_path: Path) -> None:
    write(tmp_path, "a_up.py", UP)
    write(tmp_path, "b_interrupted.py", "raise KeyboardInterrupt\n")
    reg = Registry()
    with pytest.raises(KeyboardInterrupt):
        reg.load_migrations(tmp_path)
    assert reg.components() == [] and not any("b_interrupted" in name for name in sys.modules)


def test_duplicate_inside_a_module_is_chained(tmp_path: Path) -> None:
    write(tmp_path, "a_up.py", UP)
    write(tmp_path, "b_again.py", UP)
    with pytest.raises(RegistrationError, match="b_again.py") as info:
        Registry().load_migrations(tmp_path)
    assert isinstance(info.value.__cause__, RegistrationError)


def test_module_may_define_dataclass_schemas(tmp_path: Path) -> None:
    write(
        tmp_path,
        "schemas_and_steps.py",
        """
        from __future__ import annotations
        import dataclasses
        from statemigrate._model._registry import schema

        @schema("points", version=1)
        @dataclasses.dataclass
        class Point:
            x: int
            history: list[Point] = dataclasses.field(default_factory=list)
        """,
    )
    reg = Registry()
    reg.load_migrations(tmp_path)
    assert reg.schema_for("points", 1).validate({"x": 1, "history": [{"x": 2}]}).history[0].x == 2


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(RegistrationError, match="does not exist"):
        Registry().load_migrations(tmp_path / "nope")


def _not_a_directory(folder: Path, kind: str) -> Path:
    path = folder / kind
    if kind == "file":
        path.write_text("UP = 1\n")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "loop":
        path.symlink_to(folder / "loop")
    elif kind == "dangling":
        path.symlink_to(folder / "nothing")
    elif kind == "inside a file":
        (folder / "file").write_text("")
        path = folder / "file" / "migrations"
    else:
        path = folder / ("x" * 300)
    return path


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("file", "is a regular file, not a directory"),
        ("fifo", "is a FIFO, not a directory"),
        ("loop", "is a loop of symbolic links"),
        ("dangling", "is a symbolic link to nothing"),
        ("inside a file", "cannot be read: Not a directory (ENOTDIR)"),
        ("long", "cannot be read: File name too long (ENAMETOOLONG)"),
    ],
)
def test_a_migrations_path_that_is_no_directory_says_what_it_is(
    kind: str, says: str, tmp_path: Path
) -> None:
    """Each of these was reported as a directory that 'does not exist'."""
    path = _not_a_directory(tmp_path, kind)
    with pytest.raises(RegistrationError) as info:
        Registry().load_migrations(path)
    assert str(info.value) == f"migrations directory {str(path)!r} {says}"


def test_a_directory_that_cannot_be_listed_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As for a directory of mode 0 (which root may list all the same)."""

    def denied(self: Path) -> Iterator[Path]:
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "iterdir", denied)
    with pytest.raises(RegistrationError) as info:
        Registry().load_migrations(tmp_path)
    assert str(info.value) == (
        f"migrations directory {str(tmp_path)!r} cannot be read: Permission denied (EACCES)"
    )


def test_a_function_given_as_a_schema_is_named_as_one() -> None:
    """A function decorated with ``@schema`` by mistake is refused as a function.
    Before, pydantic took it as a schema of its call arguments, and the refusal read
    ``field (root): call arguments have no plain form``."""
    registry = Registry()
    with pytest.raises(RegistrationError) as caught:

        @registry.schema("alerts", version=3)
        def by_seq(alerts: list[int]) -> list[int]:
            return alerts

    message = str(caught.value)
    assert "by_seq is a function, not a type" in message
    assert "call arguments" not in message
    assert "alerts" not in registry.components()
