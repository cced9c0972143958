"""The schema lock: frozen files, freezing, and every problem ``check_schemas`` reports."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import Field
from typing_extensions import TypedDict

from statemigrate._errors import RegistrationError
from statemigrate._model._jsonschema import without_details
from statemigrate._model._plan import Step
from statemigrate._model._registry import Registry
from statemigrate.evolution._schemalock import (
    LockReport,
    check_schemas,
    freeze_schemas,
    frozen_path,
    frozen_text,
    graph_problems,
    load_failure_report,
    read_frozen,
    scan_migrations,
    schema_text,
)
from statemigrate.reference import MIGRATIONS_DIR, SCHEMAS, build_registry

REPO = Path(__file__).resolve().parents[2]
REFERENCE = build_registry()


class EntryV3Unbounded(TypedDict):
    """Version 3's entry with the ``ge=0`` constraint on hits forgotten."""

    data: str
    expires_at: float | None
    hits: int


class KVCacheStateV3Unbounded(TypedDict):
    entries: dict[str, EntryV3Unbounded]


class RenamedEntry(TypedDict):
    """Version 3's entry under another class name and docstring: a cosmetic change."""

    data: str
    expires_at: Annotated[float, Field(allow_inf_nan=False)] | None
    hits: Annotated[int, Field(ge=0)]


class RenamedState(TypedDict):
    """Cosmetic twin of version 3."""

    entries: dict[str, RenamedEntry]


class EntryV4(TypedDict):
    data: str
    hits: int


class KVCacheStateV4(TypedDict):
    entries: dict[str, EntryV4]


def _same(data: object) -> object:
    return data


def registry_with(
    *,
    schemas: dict[int, object] | None = None,
    drop_versions: frozenset[int] = frozenset(),
    skip: frozenset[tuple[int, int]] = frozenset(),
    extra: tuple[tuple[int, int], ...] = (),
) -> Registry:
    """The reference registry with schema types replaced or added, versions and steps
    left out, and extra (identity) steps added."""
    registry = Registry()
    types: dict[int, object] = {**SCHEMAS, **(schemas or {})}
    for version, type_ in sorted(types.items()):
        if version not in drop_versions:
            registry.add_schema("kvcache", version, type_)
    for step in REFERENCE.steps("kvcache"):
        pair = (step.source, step.target)
        if pair in skip or drop_versions & set(pair):
            continue
        lossy = step.lost_fields or step.lossy
        registry.add_migration(
            "kvcache", *pair, step.func, lossy=lossy, name=step.name, records=step.records
        )
    for source, target in extra:
        registry.add_migration("kvcache", source, target, _same)
    return registry


@pytest.fixture
def frozen(tmp_path: Path) -> Path:
    """The reference schemas frozen into a fresh directory."""
    folder = tmp_path / "schemas"
    freeze_schemas(REFERENCE, folder)
    return folder


def kinds(report: LockReport) -> set[tuple[str, int | None]]:
    return {(problem.kind, problem.version) for problem in report.problems}


# --- the repository's own lock --------------------------------------------------------


def test_the_repository_frozen_schemas_match_the_reference_components() -> None:
    report = check_schemas(REFERENCE, REPO / "schemas", migrations=MIGRATIONS_DIR)
    assert report.ok, report.to_markdown()
    assert (report.components, report.versions, report.steps) == (("kvcache",), 3, 6)
    assert report.to_markdown().startswith("### statemigrate schemas check: passed\n")


def test_frozen_text_is_canonical_sorted_and_the_same_in_another_process() -> None:
    text = frozen_text(REFERENCE.schema_for("kvcache", 3))
    assert text == (REPO / "schemas" / "kvcache" / "v3.json").read_text(encoding="utf-8")
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"
    assert json.loads(text) == {
        **json.loads(schema_text(REFERENCE.schema_for("kvcache", 3))),
        "x-statemigrate-lock": 3,
    }
    code = (
        "import sys\n"
        "from statemigrate.evolution._schemalock import frozen_text\n"
        "from statemigrate.reference import build_registry\n"
        "sys.stdout.write(frozen_text(build_registry().schema_for('kvcache', 3)))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # another set and dict hash order
    child = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout == text


def test_cosmetic_changes_keep_the_frozen_text() -> None:
    twin = Registry()
    twin.add_schema("kvcache", 3, RenamedState)
    assert schema_text(twin.schema_for("kvcache", 3)) == schema_text(
        REFERENCE.schema_for("kvcache", 3)
    )
    changed = Registry()
    changed.add_schema("kvcache", 3, KVCacheStateV3Unbounded)
    assert schema_text(changed.schema_for("kvcache", 3)) != schema_text(
        REFERENCE.schema_for("kvcache", 3)
    )


# --- freezing --------------------------------------------------------------------------


def test_freeze_writes_each_version_once_and_then_leaves_files_alone(tmp_path: Path) -> None:
    folder = tmp_path / "schemas"
    first = freeze_schemas(REFERENCE, folder)
    assert [(r.version, r.action) for r in first] == [(v, "written") for v in (1, 2, 3)]
    for version in (1, 2, 3):
        path = frozen_path(folder, "kvcache", version)
        assert read_frozen(path) == REFERENCE.schema_for("kvcache", version).json_schema()
    before = {p.name: p.read_bytes() for p in (folder / "kvcache").iterdir()}
    again = freeze_schemas(REFERENCE, folder)
    assert [r.action for r in again] == ["unchanged"] * 3
    assert {p.name: p.read_bytes() for p in (folder / "kvcache").iterdir()} == before
    assert sorted(p.name for p in (folder / "kvcache").iterdir()) == [
        "v1.json",
        "v2.json",
        "v3.json",
    ]  # no temporary files left behind


def test_freeze_refuses_a_changed_version_and_writes_nothing(frozen: Path) -> None:
    frozen_path(frozen, "kvcache", 1).unlink()
    changed = registry_with(schemas={3: KVCacheStateV3Unbounded})
    with pytest.raises(RegistrationError, match=r"kvcache v3 .*--force"):
        freeze_schemas(changed, frozen)
    assert not frozen_path(frozen, "kvcache", 1).exists()  # not even the missing one
    results = freeze_schemas(changed, frozen, force=True)
    assert [(r.version, r.action) for r in results] == [
        (1, "written"),
        (2, "unchanged"),
        (3, "overwritten"),
    ]
    assert check_schemas(changed, frozen).ok


def test_freeze_of_an_unknown_component_is_refused(tmp_path: Path) -> None:
    from statemigrate._errors import UnknownComponentError

    with pytest.raises(UnknownComponentError):
        freeze_schemas(REFERENCE, tmp_path, components=["sessions"])


# --- every seeded mistake is reported, exactly ------------------------------------------


def _changed(frozen: Path) -> Registry:
    return registry_with(schemas={3: KVCacheStateV3Unbounded})


def _missing_file(frozen: Path) -> Registry:
    frozen_path(frozen, "kvcache", 2).unlink()
    return registry_with()


def _missing_downgrade(frozen: Path) -> Registry:
    return registry_with(skip=frozenset({(3, 2), (3, 1)}))


def _dead_end(frozen: Path) -> Registry:
    registry = registry_with(schemas={4: KVCacheStateV4}, extra=((3, 4),))
    freeze_schemas(registry, frozen)  # v4 frozen too: only the graph is wrong
    return registry


def _dangling_step(frozen: Path) -> Registry:
    return registry_with(extra=((2, 5),))


def _unregistered(frozen: Path) -> Registry:
    return registry_with(drop_versions=frozenset({1}))


def _unreadable(frozen: Path) -> Registry:
    frozen_path(frozen, "kvcache", 1).write_text("{not json", encoding="utf-8")
    return registry_with()


MISTAKES: dict[str, tuple[Callable[[Path], Registry], set[tuple[str, int | None]]]] = {
    "changed without a bump": (_changed, {("changed", 3)}),
    "missing frozen file": (_missing_file, {("missing_frozen", 2)}),
    "missing downgrade": (
        _missing_downgrade,
        {("unreachable", 1), ("unreachable", 2), ("dead_end", 3)},
    ),
    "dead end": (
        _dead_end,
        {("dead_end", 4), ("unreachable", 1), ("unreachable", 2), ("unreachable", 3)},
    ),
    "step to an unknown version": (_dangling_step, {("dangling_step", 5), ("dead_end", 5)}),
    "frozen version unregistered": (_unregistered, {("not_registered", 1)}),
    "unreadable frozen file": (_unreadable, {("unreadable", 1)}),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_each_seeded_mistake_is_reported_and_nothing_else(mistake: str, frozen: Path) -> None:
    """Each mistake alone fails the check with exactly its own problems; the untouched
    reference (the control) passes against the same files."""
    assert check_schemas(REFERENCE, frozen).ok
    seed, expected = MISTAKES[mistake]
    report = check_schemas(seed(frozen), frozen)
    assert not report.ok
    assert kinds(report) == expected, report.to_markdown()
    text = report.to_markdown()
    assert text.startswith(f"### statemigrate schemas check: {len(report.problems)} problem")
    assert "\n**kvcache**\n" in text and "\n1. **" in text


def test_a_changed_schema_shows_a_unified_diff(frozen: Path) -> None:
    report = check_schemas(_changed(frozen), frozen)
    (problem,) = report.problems
    assert problem.diff.startswith("--- ")
    assert '-          "minimum": 0,' in problem.diff
    assert "makemigration kvcache" in problem.message and "version 4" in problem.message
    text = report.to_markdown()
    assert "   ```diff\n" in text and '   -          "minimum": 0,' in text


def test_a_missing_downgrade_says_which_direction_is_missing(frozen: Path) -> None:
    report = check_schemas(_missing_downgrade(frozen), frozen)
    unreachable = [p.message for p in report.problems if p.kind == "unreachable"]
    assert all("downgrades the current version 3" in message for message in unreachable)


def test_a_step_declared_twice_in_the_migrations_directory(tmp_path: Path, frozen: Path) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, folder, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "kvcache_0004_add_ttl_again.py").write_text(
        "from statemigrate import migration\n\n\n"
        '@migration("kvcache", 1, 2)\n'
        "def add_ttl_again(data):\n"
        "    return data\n",
        encoding="utf-8",
    )
    report = check_schemas(REFERENCE, frozen, migrations=folder)
    assert kinds(report) == {("duplicate_step", None)}
    (problem,) = report.problems
    assert "`kvcache_0001_add_ttl.py` line" in problem.message
    assert "`kvcache_0004_add_ttl_again.py` line 4 (add_ttl_again)" in problem.message
    # The directory no longer loads; the report for that case still names both places.
    with pytest.raises(RegistrationError) as failed:
        build_registry(folder)
    failure = load_failure_report(frozen, failed.value, migrations=folder)
    assert {p.kind for p in failure.problems} == {"duplicate_step", "load_failed"}
    assert "already registered" in failure.to_markdown()
    assert check_schemas(REFERENCE, frozen, migrations=MIGRATIONS_DIR).ok  # control


# --- reading migrations modules without running them ------------------------------------


def test_the_scanner_finds_exactly_the_steps_loading_registers() -> None:
    found = {(s.component, s.source, s.target, s.name) for s in scan_migrations(MIGRATIONS_DIR)}
    loaded = {(s.component, s.source, s.target, s.name) for s in REFERENCE.steps("kvcache")}
    assert found == loaded and len(found) == 6


def test_the_scanner_reads_every_spelling_and_skips_what_it_cannot_know(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text(
        "import statemigrate as sm\n"
        "@sm.migration('c', 1, 2)\n"
        "def up(d): return d\n"
        "@migration(component='c', source=2, target=1, lossy=True)\n"
        "def down(d): return d\n"
        "registry.add_migration('c', 2, 3, step_func)\n"
        "@migration('c', VERSION, 4)\n"  # computed at run time: not seen
        "def later(d): return d\n"
        "grown = sm.migration('c', 3, 5, records='e')(\n"
        "    sm.FieldChanges(add={'n': 0})\n"
        ")\n",
        encoding="utf-8",
    )
    (tmp_path / "_helpers.py").write_text("@migration('c', 7, 8)\ndef x(d): return d\n")
    (tmp_path / "broken.py").write_text("def (:\n")
    found = sorted((s.source, s.target, s.name, s.line) for s in scan_migrations(tmp_path))
    assert found == [
        (1, 2, "up", 2),
        (2, 1, "down", 4),
        (2, 3, "step_func", 6),
        (3, 5, "sm.FieldChanges(add={'n': 0})", 9),
    ]
    assert scan_migrations(tmp_path / "absent") == []


# --- the graph rules, on literal graphs --------------------------------------------------


def steps_of(edges: list[tuple[int, int]]) -> list[Step]:
    return [Step("c", a, b, _same) for a, b in edges]


def test_a_complete_chain_has_no_problems() -> None:
    edges = [(1, 2), (2, 1), (2, 3), (3, 2)]
    assert graph_problems("c", [1, 2, 3], steps_of(edges), frozen=[1, 2, 3]) == []
    assert graph_problems("c", [1], [], frozen=[1]) == []  # one version needs no steps


@given(
    edges=st.lists(
        st.tuples(st.integers(1, 4), st.integers(1, 4)).filter(lambda e: e[0] != e[1]),
        unique=True,
    )
)
def test_reported_reachability_matches_a_brute_force_closure(edges: list[tuple[int, int]]) -> None:
    """Property: for any graph over versions 1..4 (current = 4), a version is reported
    unreachable exactly when the transitive closure of the edges does not join it to 4
    in both directions, and a dead end exactly when no edge leaves it."""
    problems = graph_problems("c", [1, 2, 3, 4], steps_of(edges))
    closure = {(a, b) for a, b in edges} | {(v, v) for v in range(1, 5)}
    for _ in range(4):
        closure |= {(a, d) for a, b in closure for c, d in closure if b == c}
    unreachable = {v for v in (1, 2, 3) if (v, 4) not in closure or (4, v) not in closure}
    assert {p.version for p in problems if p.kind == "unreachable"} == unreachable
    dead = {v for v in range(1, 5) if not any(a == v for a, _ in edges)}
    assert {p.version for p in problems if p.kind == "dead_end"} == dead


def test_the_advice_for_an_edited_version_names_what_makemigration_needs(frozen: Path) -> None:
    """makemigration starts from the newest frozen version: an edit of the newest is
    found by itself, an edit of an older one needs the new type named."""
    newest = check_schemas(registry_with(schemas={3: KVCacheStateV3Unbounded}), frozen)
    older = check_schemas(registry_with(schemas={1: KVCacheStateV3Unbounded}), frozen)
    (newest_problem,) = newest.problems
    (older_problem,) = [p for p in older.problems if p.kind == "changed"]
    assert "(`statemigrate makemigration kvcache` writes its steps)" in newest_problem.message
    assert (
        "(`statemigrate makemigration kvcache --schema MODULE:NEW_TYPE` writes its steps)"
        in older_problem.message
    )


class Prices(TypedDict):
    by_id: dict[str, str]


class PricesByInt(TypedDict):
    """``Prices`` with its keys retyped in place: ``"007"`` and ``"7"`` would merge."""

    by_id: dict[int, str]


def _prices(schema: type) -> Registry:
    registry = Registry()
    registry.add_schema("prices", 1, schema)
    return registry


def test_a_dict_key_type_changed_in_place_fails_the_check_naming_field_and_types(
    tmp_path: Path,
) -> None:
    freeze_schemas(_prices(Prices), tmp_path)
    assert check_schemas(_prices(Prices), tmp_path).ok
    report = check_schemas(_prices(PricesByInt), tmp_path)
    assert kinds(report) == {("changed", 1)}
    (problem,) = report.problems
    assert "field `by_id`: dict keys str became int" in problem.message
    assert '+      "x-statemigrate-keys": {' in problem.diff
    # The other way round, from a file frozen with int keys.
    other = tmp_path / "other"
    freeze_schemas(_prices(PricesByInt), other)
    (back,) = check_schemas(_prices(Prices), other).problems
    assert "field `by_id`: dict keys int became str" in back.message


def test_freeze_refuses_to_overwrite_a_key_type_changed_in_place(tmp_path: Path) -> None:
    freeze_schemas(_prices(Prices), tmp_path)
    with pytest.raises(RegistrationError, match="differs from its frozen file"):
        freeze_schemas(_prices(PricesByInt), tmp_path)


# --- files frozen by an earlier release ---------------------------------------------------


class PricesWithName(TypedDict):
    by_id: dict[int, str]
    name: str


def _freeze_as_an_earlier_release(schema: type, folder: Path) -> Path:
    """The file a release before the Python types were recorded froze: pydantic's JSON
    Schema alone, and no lock format."""
    path = frozen_path(folder, "prices", 1)
    path.parent.mkdir(parents=True)
    live = _prices(schema).schema_for("prices", 1).json_schema()
    path.write_text(schema_text(without_details(live)))
    return path


def test_a_file_an_earlier_release_froze_is_named_so_and_freeze_records_its_types(
    tmp_path: Path,
) -> None:
    """The schema is the same; only the record lacks its key type. The check says so
    plainly, with no talk of key types that changed or of a new version; freezing,
    without ``force``, records them; then the check passes."""
    path = _freeze_as_an_earlier_release(PricesByInt, tmp_path)
    report = check_schemas(_prices(PricesByInt), tmp_path)
    assert kinds(report) == {("unrecorded", 1)}
    (problem,) = report.problems
    assert problem.message.startswith(
        f"`{path}` was frozen by an earlier release, which did not record the Python types"
        " pydantic's JSON Schema leaves out (field `by_id`: dict keys int); the schema itself"
        " is unchanged: run `statemigrate schemas freeze` to record them"
    )
    assert "became" not in problem.message and "makemigration" not in problem.message
    assert "Frozen by an earlier release" in report.to_markdown()
    (result,) = freeze_schemas(_prices(PricesByInt), tmp_path)
    assert (result.action, result.recorded) == ("recorded", ("field `by_id`: dict keys int",))
    assert json.loads(path.read_text())["x-statemigrate-lock"] == 3
    assert check_schemas(_prices(PricesByInt), tmp_path).ok
    (again,) = freeze_schemas(_prices(PricesByInt), tmp_path)
    assert again.action == "unchanged"


def test_a_key_type_changed_after_freezing_is_a_change_though_the_file_holds_none(
    tmp_path: Path,
) -> None:
    """A file this release froze of ``dict[str, str]`` holds no key type, as an earlier
    release's file does; its lock format tells them apart, so a key type changed in
    place is still a change, and freezing still refuses it."""
    path = frozen_path(tmp_path, "prices", 1)
    freeze_schemas(_prices(Prices), tmp_path)
    assert "x-statemigrate-keys" not in path.read_text()
    assert kinds(check_schemas(_prices(PricesByInt), tmp_path)) == {("changed", 1)}
    with pytest.raises(RegistrationError, match="differs from its frozen file"):
        freeze_schemas(_prices(PricesByInt), tmp_path)


def test_a_real_change_to_an_earlier_releases_file_claims_no_type_it_did_not_record(
    tmp_path: Path,
) -> None:
    """A field added as well: a change, whose message says the frozen key type was not
    recorded instead of claiming it was ``str``; freezing refuses it."""
    _freeze_as_an_earlier_release(PricesByInt, tmp_path)
    report = check_schemas(_prices(PricesWithName), tmp_path)
    assert kinds(report) == {("changed", 1)}
    (problem,) = report.problems
    assert "field `by_id`: dict keys unrecorded became int" in problem.message
    assert "dict keys str" not in problem.message
    with pytest.raises(RegistrationError, match="differs from its frozen file"):
        freeze_schemas(_prices(PricesWithName), tmp_path)


def test_an_earlier_releases_file_of_a_schema_without_such_types_passes_and_is_marked(
    tmp_path: Path,
) -> None:
    """Nothing to record: the check passes; a freeze marks the file with its format."""
    path = _freeze_as_an_earlier_release(Prices, tmp_path)
    assert check_schemas(_prices(Prices), tmp_path).ok
    (result,) = freeze_schemas(_prices(Prices), tmp_path)
    assert (result.action, result.recorded) == ("recorded", ())
    assert json.loads(path.read_text())["x-statemigrate-lock"] == 3
    assert read_frozen(path) == _prices(Prices).schema_for("prices", 1).json_schema()


def test_a_lock_format_that_is_not_a_number_makes_the_file_unreadable(tmp_path: Path) -> None:
    path = frozen_path(tmp_path, "prices", 1)
    freeze_schemas(_prices(Prices), tmp_path)
    text = path.read_text()
    path.write_text(text.replace('"x-statemigrate-lock": 3', '"x-statemigrate-lock": "3"'))
    assert kinds(check_schemas(_prices(Prices), tmp_path)) == {("unreadable", 1)}


class AliasedPrices(TypedDict):
    by_id: Annotated[dict[str, str], Field(alias="byId")]


def _freeze_with_aliases(folder: Path) -> Path:
    """The file a release of lock format 2 froze of ``AliasedPrices``: its field under
    its alias."""
    path = frozen_path(folder, "prices", 1)
    path.parent.mkdir(parents=True)
    schema = _prices(AliasedPrices).schema_for("prices", 1)
    path.write_text(json.dumps({**schema.json_schema(by_alias=True), "x-statemigrate-lock": 2}))
    return path


def test_a_file_frozen_with_aliases_is_named_so_and_freeze_records_the_names(
    tmp_path: Path,
) -> None:
    """Fields are now frozen by their Python names, which snapshots hold. A file an
    earlier release froze holds the alias: the check says so, and that a rename under
    the same alias cannot be told from it; freezing records the names."""
    path = _freeze_with_aliases(tmp_path)
    assert '"byId"' in path.read_text()
    report = check_schemas(_prices(AliasedPrices), tmp_path)
    assert kinds(report) == {("unrecorded", 1)}
    (problem,) = report.problems
    assert "which named fields by their aliases" in problem.message
    assert "a field renamed under the same alias would not show" in problem.message
    (result,) = freeze_schemas(_prices(AliasedPrices), tmp_path)
    assert result.action == "recorded"
    assert json.loads(path.read_text())["x-statemigrate-lock"] == 3
    assert '"by_id"' in path.read_text() and '"byId"' not in path.read_text()
    assert check_schemas(_prices(AliasedPrices), tmp_path).ok


def test_a_step_of_a_misspelt_component_fails_the_check(frozen: Path) -> None:
    """A migrations module naming a component no schema is registered under: its steps
    dangle, and the check fails naming them, as ``Registry.check()`` does."""
    registry = registry_with()
    registry.add_migration("kvcach", 3, 4, lambda data: data)
    report = check_schemas(registry, frozen)
    assert not report.ok
    assert {(p.component, p.kind) for p in report.problems} == {("kvcach", "dangling_step")}
    assert (
        "step `kvcach 3 -> 4 (<lambda>)` starts at version 3, and no schema of 'kvcach' is"
        " registered at all (a misspelt component?)" in report.to_markdown()
    )
    # A check of the component the step was meant for finds it too.
    scoped = check_schemas(registry, frozen, components=["kvcache"])
    assert {(p.component, p.kind) for p in scoped.problems} == {("kvcach", "dangling_step")}
