"""The command line of schema evolution: schemas freeze|check, makemigration and check."""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import Result, run
from kit_modules import roles_cut_at

from statemigrate import Registry
from statemigrate._model import _registry
from statemigrate.reference import MIGRATIONS_DIR

REPO = Path(__file__).resolve().parents[2]
REFERENCE = "statemigrate.reference:build_registry"


@pytest.fixture(autouse=True)
def _forget_projects(hermetic: None) -> Iterator[None]:
    """The project modules a test imports are forgotten afterwards (and sys.path
    restored, by the hermetic set-up)."""
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith("evo"):
            del sys.modules[name]


# A registry module for a project; {replace} and {skip} seed the mistakes.
REGISTRY_MODULE = """
from typing_extensions import TypedDict

from statemigrate import Registry
from statemigrate.reference import SCHEMAS, build_registry


class EntryV3(TypedDict):
    data: str
    expires_at: float | None
    hits: int


class StateV3(TypedDict):
    entries: dict[str, EntryV3]


class EntryV4(TypedDict):
    data: str


class StateV4(TypedDict):
    entries: dict[str, EntryV4]


def _same(data):
    return data


def build():
    good = build_registry()
    registry = Registry()
    types = {{**SCHEMAS, **{replace}}}
    for version, type_ in types.items():
        registry.add_schema("kvcache", version, type_)
    for step in good.steps("kvcache"):
        if (step.source, step.target) not in {skip}:
            lossy = step.lost_fields or step.lossy
            registry.add_migration(
                "kvcache", step.source, step.target, step.func, lossy=lossy,
                records=step.records,
            )
    for source, target in {extra}:
        registry.add_migration("kvcache", source, target, _same)
    return registry
"""


def project(
    root: Path,
    module: str = "evostate",
    *,
    replace: str = "{}",
    skip: str = "set()",
    extra: str = "()",
    registry: str | None = None,
) -> Path:
    """A project folder with pyproject.toml naming a registry module, made current."""
    root.mkdir(parents=True, exist_ok=True)
    spec = registry or f"{module}:build"
    (root / "pyproject.toml").write_text(
        "[tool.statemigrate]\n"
        f'registry = "{spec}"\n'
        'schemas = "schemas"\n'
        'migrations = "migrations"\n'
    )
    text = REGISTRY_MODULE.format(replace=replace, skip=skip, extra=extra)
    (root / f"{module}.py").write_text(text)
    return root


# --- schemas freeze and check --------------------------------------------------------------


def test_the_repository_passes_its_own_schema_check(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    result = run(capsys, "schemas", "check")
    assert result.code == 0, result.out + result.err
    assert result.out.startswith("### statemigrate schemas check: passed")
    assert "`kvcache`: 3 registered version(s)" in result.out


def test_freeze_then_check_a_new_project(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project(tmp_path / "p", registry=REFERENCE))
    first = run(capsys, "schemas", "freeze")
    assert first.code == 0, first.err
    assert first.out.count("written ") == 3 and "3 file(s) written, 0 unchanged" in first.out
    assert sorted(p.name for p in Path("schemas/kvcache").iterdir()) == [
        "v1.json",
        "v2.json",
        "v3.json",
    ]
    assert run(capsys, "schemas", "freeze").out.endswith("0 file(s) written, 3 unchanged\n")
    assert run(capsys, "schemas", "check").code == 0


KEYED_MODULE = """
from typing_extensions import TypedDict

from statemigrate import Registry


class Prices(TypedDict):
    by_id: dict[int, str]


def build():
    registry = Registry()
    registry.add_schema("prices", 1, Prices)
    return registry
"""


def test_freeze_records_what_an_earlier_release_left_out_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lock an earlier release froze: the check names it, ``schemas freeze`` without
    ``--force`` records the key type and says that nothing else changed."""
    root = project(tmp_path / "p", registry="evokeyed:build")
    (root / "evokeyed.py").write_text(KEYED_MODULE)
    monkeypatch.chdir(root)
    frozen = Path("schemas/prices/v1.json")
    frozen.parent.mkdir(parents=True)
    frozen.write_text(
        '{"properties": {"by_id": {"additionalProperties": {"type": "string"},'
        ' "type": "object"}}, "required": ["by_id"], "type": "object"}\n'
    )
    check = run(capsys, "schemas", "check")
    assert check.code == 1
    assert (
        "1. **Frozen by an earlier release** (v1): `schemas/prices/v1.json` was frozen by an"
        " earlier release, which did not record the Python types pydantic's JSON Schema"
        " leaves out (field `by_id`: dict keys int); the schema itself is unchanged: run"
        " `statemigrate schemas freeze` to record them\n"
    ) in check.out
    freeze = run(capsys, "schemas", "freeze")
    assert freeze.code == 0, freeze.err
    assert freeze.out == (
        "recorded    prices v1  schemas/prices/v1.json\n"
        "            frozen by an earlier release, which did not record the Python types"
        " pydantic's JSON Schema leaves out (field `by_id`: dict keys int); the schema itself"
        " is unchanged, only its record\n"
        "1 file(s) written, 0 unchanged\n"
    )
    assert run(capsys, "schemas", "check").code == 0


MISTAKES = {
    "changed": ({"replace": "{3: StateV3}"}, ["Changed without a version bump** (v3)", "```diff"]),
    "missing downgrade": ({"skip": "{(3, 2), (3, 1)}"}, ["Unreachable version** (v1)", "Dead end"]),
    "dead end": ({"replace": "{4: StateV4}", "extra": "((3, 4),)"}, ["Dead end** (v4)"]),
    "missing frozen file": ({}, ["Missing frozen file** (v2)"]),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_schemas_check_fails_on_each_seeded_mistake(
    mistake: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each mistake fails the check with its headline; the reference registry (the
    control) passes against the same frozen files before the mistake is seeded."""
    options, fragments = MISTAKES[mistake]
    root = project(tmp_path / "p", "evomistake", **options)
    monkeypatch.chdir(root)
    assert run(capsys, "schemas", "freeze", "--registry", REFERENCE).code == 0
    assert run(capsys, "schemas", "check", "--registry", REFERENCE).code == 0
    if mistake == "missing frozen file":
        (root / "schemas" / "kvcache" / "v2.json").unlink()
    result = run(capsys, "schemas", "check")
    assert result.code == 1, result.out
    assert result.out.startswith("### statemigrate schemas check: ")
    for fragment in fragments:
        assert fragment in result.out, result.out


def test_a_duplicate_step_is_named_even_though_the_registry_cannot_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = project(tmp_path / "p", registry=REFERENCE)
    shutil.copytree(MIGRATIONS_DIR, root / "migrations", ignore=shutil.ignore_patterns("__py*"))
    (root / "migrations" / "kvcache_0004_again.py").write_text(
        'from statemigrate import migration\n\n\n@migration("kvcache", 3, 2, lossy=True)\n'
        "def drop_hits_again(data):\n    return data\n"
    )
    monkeypatch.chdir(root)
    assert run(capsys, "schemas", "freeze").code == 0
    result = run(
        capsys,
        "schemas",
        "check",
        "--registry",
        "statemigrate.reference:build_registry",
        "--migrations",
        "migrations",
    )
    assert result.code == 1
    assert "**Duplicate step**" in result.out and "**Registry failed to load**" in result.out
    # On stderr too, the one line of every command's failure.
    (line,) = result.err.splitlines()
    assert line.startswith("statemigrate: error: ") and "failed to load" in line
    assert "`kvcache_0002_data_and_hits.py`" in result.out
    assert "`kvcache_0004_again.py` line 4 (drop_hits_again)" in result.out
    # The registry had loaded the reference's steps itself: the failure says where
    # they may have come from.
    assert (
        "the registry 'statemigrate.reference:build_registry' had registered steps before"
        in result.out
    )
    assert "leave out --migrations" in result.out


def test_schemas_check_of_a_registry_that_cannot_be_imported_says_so_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The report on stdout says so for a pull request; stderr had nothing, where every
    other command prints its one error line."""
    monkeypatch.chdir(tmp_path)
    result = run(capsys, "schemas", "check", "--registry", "nomodule:x")
    assert result.code == 1
    assert "**Registry failed to load**" in result.out
    assert result.err == (
        "statemigrate: error: cannot import 'nomodule': No module named 'nomodule'\n"
    )


def test_the_advice_for_a_changed_version_names_the_next_free_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Version 1 changed shape while 2 and 3 exist: the new shape needs version 4."""
    monkeypatch.chdir(project(tmp_path / "p", "evofree", replace="{1: StateV3}"))
    assert run(capsys, "schemas", "freeze", "--registry", REFERENCE).code == 0
    result = run(capsys, "schemas", "check")
    assert result.code == 1
    assert "Changed without a version bump** (v1)" in result.out
    assert "keep version 1 as it was and register the new shape as version 4" in result.out
    assert "as version 2" not in result.out


# --- nothing found is a failure -----------------------------------------------------------------


NOTHING = [["check"], ["schemas", "check"], ["schemas", "freeze"]]


@pytest.mark.parametrize("command", NOTHING, ids=" ".join)
def test_a_command_that_finds_no_component_fails(
    command: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A mistyped registry, module or path must fail CI, not pass with nothing done."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(_registry, "default_registry", Registry())
    for extra, reason in (
        ([], "the default registry holds no schemas"),
        (["--registry", "statemigrate:Registry"], "registry 'statemigrate:Registry' has no"),
        (["--import", "json"], "the modules imported (json) registered no schemas"),
    ):
        result = run(capsys, *command, *extra)
        assert result.code == 1 and result.out == "", (extra, result)
        lines = result.err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("statemigrate: error: no components")
        assert reason in lines[0], lines[0]
    assert not (tmp_path / "schemas").exists()


def test_check_without_hypothesis_names_the_extra_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import statemigrate.testing as testing

    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "hypothesis", None)  # import hypothesis fails
    for name in [n for n in sys.modules if n.startswith("statemigrate.testing.")]:
        monkeypatch.delitem(sys.modules, name)
    for name in [n for n in ("check_migrations", "_checks") if n in vars(testing)]:
        monkeypatch.delitem(vars(testing), name)
    result = run(capsys, "check", "--registry", REFERENCE)
    assert result.code == 1 and result.out == ""
    assert result.err == (
        "statemigrate: error: statemigrate check cannot run: statemigrate.testing needs"
        " hypothesis: pip install 'statemigrate[testing]'\n"
    )


def test_freeze_names_the_file_it_cannot_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("schemas").write_text("a file where the folder should be\n")
    result = run(capsys, "schemas", "freeze", "--registry", REFERENCE)
    assert result.code == 1 and result.out == ""
    assert result.err == (
        "statemigrate: error: open schemas: is not a directory; the default schemas folder"
        " names the folder of frozen schemas\n"
    )


@pytest.mark.parametrize("action", ["check", "freeze"])
def test_schemas_that_name_a_file_are_refused_as_not_a_directory(
    action: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("frozen.json").write_text("{}\n")
    result = run(capsys, "schemas", action, "--registry", REFERENCE, "--schemas", "frozen.json")
    assert result.code == 1 and result.out == ""
    assert result.err == (
        "statemigrate: error: open frozen.json: is not a directory; --schemas names the folder"
        " of frozen schemas\n"
    )
    assert Path("frozen.json").read_text() == "{}\n"
    Path("pyproject.toml").write_text('[tool.statemigrate]\nschemas = "frozen.json"\n')
    result = run(capsys, "schemas", action, "--registry", REFERENCE)
    assert result.code == 1 and result.out == ""
    assert "is not a directory; [tool.statemigrate] schemas names the folder" in result.err


# --- makemigration -----------------------------------------------------------------------------


TYPES_MODULE = """
from typing import Literal

from pydantic import BaseModel


class SettingsV1(BaseModel):
    limit: int


class SettingsV2(BaseModel):
    limit: int
    mode: Literal["fast", "safe"] = "safe"


class SettingsText(BaseModel):
    limit: str
"""

SETTINGS_REGISTRY = """
from statemigrate import Registry

import evotypes


def build():
    registry = Registry()
    registry.add_schema("settings", 1, evotypes.SettingsV1)
    {more}
    return registry
"""


def settings_project(root: Path, *, with_v2: bool) -> Path:
    root.mkdir(parents=True)
    (root / "evotypes.py").write_text(TYPES_MODULE)
    more = 'registry.add_schema("settings", 2, evotypes.SettingsV2)' if with_v2 else ""
    (root / "evosettings.py").write_text(SETTINGS_REGISTRY.format(more=more))
    (root / "evosettings_v1.py").write_text(SETTINGS_REGISTRY.format(more=""))
    (root / "pyproject.toml").write_text(
        '[tool.statemigrate]\nregistry = "evosettings:build"\nschemas = "schemas"\n'
        'migrations = "migrations"\n'
    )
    return root


def test_makemigration_writes_a_stub_that_the_check_command_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(settings_project(tmp_path / "p", with_v2=True))
    assert run(capsys, "schemas", "freeze", "--registry", "evosettings_v1:build").code == 0
    dry = run(capsys, "makemigration", "settings", "--dry-run")
    assert dry.code == 0, dry.err
    assert dry.out.startswith('"""settings 1 <-> 2: add mode.') and not Path("migrations").exists()
    made = run(capsys, "makemigration", "settings")
    assert made.code == 0, made.err
    assert made.out.startswith("wrote migrations/settings_0001_add_mode.py: settings 1 <-> 2")
    assert "downgrade: lossy, drops mode" in made.out
    written = Path("migrations/settings_0001_add_mode.py").read_text()
    assert written == dry.out
    # The project's registry does not load migrations itself: name the directory.
    checked = run(capsys, "check", "--migrations", "migrations", "--max-examples", "20")
    assert checked.code == 0, checked.out + checked.err
    assert "- ok: settings 1 -> 2 (add mode) [20 examples]" in checked.out
    assert run(capsys, "schemas", "check", "--migrations", "migrations").code == 1  # v2 unfrozen
    assert run(capsys, "schemas", "freeze").code == 0
    assert run(capsys, "schemas", "check", "--migrations", "migrations").code == 0


def test_makemigration_calls_a_type_change_probably_lossy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(settings_project(tmp_path / "p", with_v2=False))
    assert run(capsys, "schemas", "freeze").code == 0
    made = run(capsys, "makemigration", "settings", "--schema", "evotypes:SettingsText")
    assert made.code == 0, made.err
    assert "  upgrade: probably lossy: limit changed from int to str" in made.out
    assert "  downgrade: probably lossy: limit changed from int to str" in made.out
    assert "lossless" not in made.out


def test_makemigration_with_an_explicit_type_and_its_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(settings_project(tmp_path / "p", with_v2=False))
    assert run(capsys, "schemas", "freeze").code == 0
    nothing = run(capsys, "makemigration", "settings")
    assert nothing.code == 1 and nothing.out == ""
    assert nothing.err.count("\n") == 1 and "nothing to migrate" in nothing.err
    typed = run(capsys, "makemigration", "settings", "--schema", "evotypes:SettingsV2", "--dry-run")
    assert typed.code == 0 and 'migration("settings", 2, 1, lossy=("mode",))(' in typed.out
    for argv, fragment in (
        (["--schema", "evotypes:Nope"], "no attribute 'Nope'"),
        (["--schema", "evo_missing_mod:T"], "cannot import 'evo_missing_mod'"),
        (["--version", "4"], "only be given with the new schema"),
        (["--schema", "evotypes:SettingsV2", "--records", "limit"], "dict field 'limit'"),
    ):
        failed = run(capsys, "makemigration", "settings", *argv)
        assert failed.code == 1 and fragment in failed.err, (argv, failed.err)
        assert failed.err.startswith("statemigrate: error: ")


SHOP_TYPES = """
from pydantic import BaseModel


class Item(BaseModel):
    price: int


class PricedItem(BaseModel):
    price: int
    currency: str = "EUR"


class ShopV1(BaseModel):
    items: dict[str, Item] = {}


class ShopV2(BaseModel):
    items: dict[str, PricedItem] = {}
"""


def test_a_dry_run_prints_the_record_steps_hint_beside_the_module(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change inside records only: the hint to write record steps is what keeps a
    pre-copy hand-over's deltas small, and a dry run is often how the step is read
    first. The module alone goes to stdout."""
    root = tmp_path / "shop"
    root.mkdir()
    (root / "shoptypes.py").write_text(SHOP_TYPES)
    (root / "shopreg.py").write_text(
        "from statemigrate import Registry\n\nimport shoptypes\n\n\ndef build():\n"
        '    registry = Registry()\n    registry.add_schema("shop", 1, shoptypes.ShopV1)\n'
        "    return registry\n"
    )
    (root / "pyproject.toml").write_text(
        '[tool.statemigrate]\nregistry = "shopreg:build"\nschemas = "schemas"\n'
        'migrations = "migrations"\n'
    )
    monkeypatch.chdir(root)
    assert run(capsys, "schemas", "freeze").code == 0
    dry = run(capsys, "makemigration", "shop", "--schema", "shoptypes:ShopV2", "--dry-run")
    assert dry.code == 0, dry.err
    assert dry.out.startswith('"""shop 1 <-> 2') and "note:" not in dry.out
    assert "note: every change is inside the records of 'items': record steps" in dry.err
    assert "(`--records items`)" in dry.err
    records = run(
        capsys,
        "makemigration",
        "shop",
        "--schema",
        "shoptypes:ShopV2",
        "--records",
        "items",
        "--dry-run",
    )
    assert records.code == 0 and "--records" not in records.err


# --- check ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", ["0", "-3"])
def test_check_needs_at_least_one_example(count: str, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, "check", "--max-examples", count, "--registry", REFERENCE)
    assert result.code == 2 and result.out == ""
    assert result.err == (
        f"statemigrate: error: argument --max-examples: must be at least 1, not {int(count)}\n"
    )




@pytest.mark.parametrize("size", ["0", "-3"])
def test_check_needs_a_max_size_of_at_least_one(
    size: str, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run(capsys, "check", "--max-size", size, "--registry", REFERENCE)
    assert result.code == 2 and result.out == ""
    assert result.err == (
        f"statemigrate: error: argument --max-size: must be at least 1, not {int(size)}\n"
    )


@pytest.mark.slow
def test_check_max_size_raises_the_cap_of_generated_collections(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loss beyond 20 items cannot show at the default cap (16 items) and shows once
    --max-size lets collections grow past it (400 examples: long values come in clumps,
    and a check stops at its first failure, so the count costs nothing when it fails)."""
    tmp_path.joinpath("evosizes.py").write_text(roles_cut_at(20))
    monkeypatch.chdir(tmp_path)
    default = run(capsys, "check", "--registry", "evosizes:build", "--max-examples", "30")
    assert default.code == 0, default.out + default.err
    raised = run(
        capsys, "check", "--registry", "evosizes:build", "--max-size", "40",
        "--max-examples", "400",
    )
    assert raised.code == 1, raised.out + raised.err
    assert "- FAILED: roles" in raised.out
    assert re.search(r"down (loses data beyond|changes or drops data)", raised.out)


@pytest.mark.slow
def test_check_passes_on_the_reference_and_fails_with_a_counterexample(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    good = run(capsys, "check", "--max-examples", "20")
    assert good.code == 0, good.out + good.err
    assert good.out.startswith("### statemigrate check: passed") and good.out.count("- ok:") == 15
    root = project(tmp_path / "p", "evobroken", skip="{(3, 2)}", extra="((3, 2),)")
    monkeypatch.chdir(root)
    # 20 examples as above: every version 3 entry has a field version 2 does not.
    bad = run(capsys, "check", "--max-examples", "20")
    assert bad.code == 1
    assert "- FAILED: kvcache 3 -> 2 (_same)" in bad.out
    assert "counterexample (version 3" in bad.out and "does not fit version 2" in bad.out


def check_one_upgrade(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *,
    with_v2: bool,
) -> Result:
    """`statemigrate check` on the settings project with a 1 -> 2 step and no step back
    (``with_v2``: whether version 2 has a schema)."""
    root = settings_project(tmp_path / "p", with_v2=with_v2)
    (root / "migrations").mkdir()
    (root / "migrations" / "settings_0001.py").write_text(
        'from statemigrate import migration\n\n\n@migration("settings", 1, 2)\n'
        "def up(data):\n    return data\n"
    )
    monkeypatch.chdir(root)
    return run(capsys, "check", "--migrations", "migrations", "--max-examples", "5")


def test_check_fails_on_a_step_into_a_version_with_no_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`statemigrate check` names the step, as `schemas check` and Registry.check() do."""
    checked = check_one_upgrade(tmp_path, capsys, monkeypatch, with_v2=False)
    assert checked.code == 1, checked.out + checked.err
    assert "- FAILED: settings 1 -> 2 (up) [0 examples]" in checked.out
    assert "settings 1 -> 2 (up): no schema version 2" in checked.out


def test_check_fails_on_a_version_no_step_leads_back_from(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Version 2 with an upgrade but no downgrade passes every property check, yet a
    rollback to the release before fails at deploy time: Registry.check() reports it,
    and so does `statemigrate check`, which fails."""
    checked = check_one_upgrade(tmp_path, capsys, monkeypatch, with_v2=True)
    assert checked.code == 1, checked.out + checked.err
    assert checked.out.startswith(
        "### statemigrate check: the checks passed, the migrations are incomplete\n"
    )
    assert "- ok: settings 1 -> 2 (up) [5 examples]" in checked.out
    assert "- settings: version 2 cannot reach 1\n" in checked.out



METER_MODULE = """
from typing import Annotated

from pydantic import BaseModel, Field

from statemigrate import Registry


class Meter(BaseModel):
    step: Annotated[float, Field(multiple_of=0.5)]


def build():
    registry = Registry()
    registry.add_schema("meter", 1, Meter)
    return registry
"""


def test_check_reports_an_error_of_the_kit_as_a_failed_check_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error the kit meets drawing states (it stopped on an OverflowError for a float
    `multiple_of` without bounds, and the command printed a traceback) fails that
    check: the report names the component, the version and the error."""
    from statemigrate.testing._builder import Builder

    def broken(self: Builder, node: object) -> object:
        raise OverflowError("cannot convert float infinity to integer")

    monkeypatch.setattr(Builder, "_float", broken)
    tmp_path.joinpath("evometer.py").write_text(METER_MODULE)
    monkeypatch.chdir(tmp_path)
    checked = run(capsys, "check", "--registry", "evometer:build", "--max-examples", "5")
    assert checked.code == 1 and checked.err == "", checked.out + checked.err
    assert "- FAILED: meter v1 snapshot round trip [0 examples]" in checked.out
    assert (
        "checking 'meter' version 1 stopped on an unexpected OverflowError: cannot convert"
        " float infinity to integer\n"
    ) in checked.out
