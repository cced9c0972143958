"""``--allow-lossy-for COMPONENT`` on ``migrate`` and ``verify``: the lossy steps of the
components named run, the others' are refused with the flag that would allow them;
``--allow-lossy`` still allows every component's; an unknown name is a warning there and
in the functions, an empty one a usage error."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from cli_helpers import one_error_line, run
from lossy_components import lossy_both_ways, service_at

from statemigrate import ConfigurationError, open_snapshot

REGISTRY = ["--registry", "lossy_components:lossy_both_ways"]

pytestmark = pytest.mark.usefixtures("hermetic")


@pytest.fixture
def v1_snapshot(tmp_path: Path) -> Path:
    """catalog and orders at version 1, each holding [3, 3, 1]."""
    path = tmp_path / "shop-v1.smsnap"
    path.write_bytes(service_at(1, [3, 3, 1], lossy_both_ways()).snapshot()[0].to_bytes())
    return path


def test_verify_allows_the_components_named_only(
    v1_snapshot: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Verified at the registry's newest versions: the upgrades 1 -> 2 are lossy."""
    result = run(capsys, "verify", str(v1_snapshot), "--allow-lossy-for", "catalog", *REGISTRY)
    assert (result.code, result.err) == (1, "")
    assert result.out.splitlines()[:2] == [
        "catalog/default: 1 -> 2 would restore (dedupe [lossy])",
        "orders/default: 1 -> 2 would NOT restore: loses data in orders 1 -> 2 (dedupe);"
        " pass --allow-lossy-for orders (or --allow-lossy, for every component) to accept"
        " that",
    ]
    both = ["--allow-lossy-for", "catalog", "--allow-lossy-for", "orders"]
    result = run(capsys, "verify", str(v1_snapshot), *both, *REGISTRY)
    assert (result.code, result.err) == (0, "")
    every = run(capsys, "verify", str(v1_snapshot), "--allow-lossy", *REGISTRY)
    assert (every.code, every.out) == (0, result.out)


def test_migrate_refuses_a_component_not_named_and_writes_nothing(
    v1_snapshot: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "shop-v2.smsnap"
    targets = ["--to", "catalog=2", "--to", "orders=2"]
    result = run(
        capsys, "migrate", str(v1_snapshot), "-o", str(out), *targets,
        "--allow-lossy-for", "catalog", *REGISTRY,
    )  # fmt: skip
    assert one_error_line(result, code=1) == (
        "statemigrate: error: migrating 'orders' from version 1 to 2 loses data in orders"
        " 1 -> 2 (dedupe); pass --allow-lossy-for orders (or --allow-lossy, for every"
        " component) to accept that"
    )
    assert not out.exists()
    result = run(
        capsys, "migrate", str(v1_snapshot), "-o", str(out), *targets,
        "--allow-lossy-for", "catalog", "--allow-lossy-for", "orders", *REGISTRY,
    )  # fmt: skip
    assert (result.code, result.err) == (0, "")
    snapshot = open_snapshot(out.read_bytes())
    assert [(s.key, s.version) for s in snapshot.header.sections] == [
        ("catalog/default", 2),
        ("orders/default", 2),
    ]
    assert snapshot.read_section(1) == {"items": [1, 3]}


def test_a_name_the_registry_does_not_hold_is_a_warning(
    v1_snapshot: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "shop-v2.smsnap"
    result = run(
        capsys, "migrate", str(v1_snapshot), "-o", str(out), "--to", "catalog=2",
        "--allow-lossy-for", "catalog", "--allow-lossy-for", "catalgo", *REGISTRY,
    )  # fmt: skip
    assert result.code == 0
    assert result.err == (
        "statemigrate: warning: --allow-lossy-for catalgo: no such component in the"
        " registry, ignored\n"
    )
    assert open_snapshot(out.read_bytes()).read_section(0) == {"items": [1, 3]}


def test_allow_lossy_and_allow_lossy_for_are_one_or_the_other(
    v1_snapshot: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run(
        capsys, "verify", str(v1_snapshot), "--allow-lossy",
        "--allow-lossy-for", "catalog", *REGISTRY,
    )  # fmt: skip
    assert (result.code, result.out) == (2, "")
    assert "argument --allow-lossy-for: not allowed with argument --allow-lossy" in result.err


def test_plan_says_which_allow_lossy_a_lossy_path_needs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = run(capsys, "plan", "orders", "--from", "1", "--to", "2", *REGISTRY)
    assert result.out.splitlines()[-1] == (
        "1 lossy step(s): restoring along this path needs allow_lossy={'orders'} or True"
    )


def test_an_empty_name_is_a_usage_error(
    v1_snapshot: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused by the parser, naming the flag: no warning, no Python-worded error."""
    out = tmp_path / "shop-v2.smsnap"
    result = run(
        capsys, "migrate", str(v1_snapshot), "-o", str(out), "--to", "catalog=2",
        "--allow-lossy-for", "", *REGISTRY,
    )  # fmt: skip
    assert (result.code, result.out) == (2, "")
    assert result.err.strip().splitlines()[-1] == (
        "statemigrate: error: argument --allow-lossy-for: a component name, not an empty"
        " string"
    )
    assert "warning" not in result.err
    assert not out.exists()


@pytest.mark.parametrize("call", ["migrate_snapshot", "verify_snapshot"])
def test_the_functions_warn_of_a_name_the_registry_does_not_hold(
    v1_snapshot: Path, call: str, caplog: pytest.LogCaptureFixture
) -> None:
    """As the command line and a service do: the name allows nothing."""
    from statemigrate._runtime import _rewrite

    function = getattr(_rewrite, call)
    snapshot = open_snapshot(v1_snapshot.read_bytes())
    with caplog.at_level(logging.WARNING, "statemigrate"):
        function(
            snapshot,
            {"catalog": 2},
            registry=lossy_both_ways(),
            allow_lossy={"catalog", "catalgo"},
        )
    assert [r.getMessage() for r in caplog.records] == [
        "allow_lossy names 'catalgo', no component of the registry (registered: catalog,"
        " orders); ignored"
    ]


@pytest.mark.parametrize("call", ["migrate_snapshot", "verify_snapshot"])
def test_the_functions_refuse_a_snapshot_s_bytes_naming_what_they_take(
    v1_snapshot: Path, call: str
) -> None:
    from statemigrate._runtime import _rewrite

    function = getattr(_rewrite, call)  # verify_snapshot is the command's, not public
    with pytest.raises(ConfigurationError) as raised:
        function(v1_snapshot.read_bytes(), {"catalog": 2}, registry=lossy_both_ways())
    assert str(raised.value) == (
        f"snapshot: {call} takes a Snapshot, as open_snapshot(data, key=...) returns for a"
        " snapshot's bytes, not bytes"
    )
