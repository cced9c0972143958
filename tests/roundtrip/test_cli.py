"""Property: a snapshot holding a state of every zoo schema reads back through the
command line: ``inspect --dump`` prints each section's plain form, and ``migrate`` one
step up and back down gives files that restore to the envelope and then to the states."""

from __future__ import annotations

import base64
import json
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import run
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from roundtrip_zoo import ZOO, build_registry, holder_class
from zoo.table import Holder

from statemigrate import ExportError, Service, TmpfsStore
from statemigrate.testing import from_schema
from statemigrate.testing._exact import exact_differences

REGISTRY = build_registry()
REGISTRY_FLAG = ("--registry", "roundtrip_zoo:build_registry")


def service(
    version: int, names: list[str], states: dict[str, Any]
) -> tuple[Service, dict[str, Holder]]:
    """A service with a component per zoo schema named, at ``version``."""
    built = Service("zoo", registry=REGISTRY)
    holders: dict[str, Holder] = {}
    for name in names:
        holder = built.register(holder_class(REGISTRY, name, version)(states.get(name)))
        assert isinstance(holder, Holder)
        holders[name] = holder
    return built, holders


def as_json(plain: Any) -> Any:
    """Plain data as ``inspect --dump`` prints it: bytes as {"$base64": ...}, NaN and the
    infinities as {"$float": "nan"}, {"$float": "inf"} and {"$float": "-inf"}, keys that
    start with ``$`` with one more ``$``."""
    if isinstance(plain, bytes):
        return {"$base64": base64.b64encode(plain).decode()}
    if isinstance(plain, float) and not math.isfinite(plain):
        return {"$float": "nan" if math.isnan(plain) else ("inf" if plain > 0 else "-inf")}
    if isinstance(plain, dict):
        return {
            (
                f"$base64:{base64.b64encode(k).decode()}"
                if isinstance(k, bytes)
                else f"${k}" if k.startswith("$") else k
            ): as_json(v)
            for k, v in plain.items()
        }
    if isinstance(plain, list):
        return [as_json(item) for item in plain]
    return plain


def same_json(a: Any, b: Any) -> bool:
    # Through json.dumps, which refuses a float JSON has no number for.
    return json.dumps(a, sort_keys=True, allow_nan=False) == json.dumps(
        b, sort_keys=True, allow_nan=False
    )


@pytest.fixture
def workdir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty current folder (no pyproject.toml), sys.path restored afterwards."""
    monkeypatch.delenv("STATEMIGRATE_KEY_FILE", raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    root = tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    monkeypatch.chdir(root)
    try:
        yield Path(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def zoo_states() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {name: from_schema(REGISTRY.schema_for(name, 1), form="state") for name in ZOO}
    )


@settings(
    max_examples=3,
    phases=[Phase.generate],
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(states=zoo_states())
def test_dump_and_migrate_up_and_down(
    workdir: Path, capsys: pytest.CaptureFixture[str], states: dict[str, Any]
) -> None:
    # States the library refuses to snapshot (clearly: see test_zoo) are left out.
    kept: dict[str, Any] = {}
    for name, state in states.items():
        try:
            kept[name] = REGISTRY.schema_for(name, 1).export(state, walk=True)
        except ExportError:
            continue
    names = list(kept)
    writer, _ = service(1, names, states)
    directory = workdir / "store"
    with TmpfsStore(directory) as store:
        writer.commit(store)
    snapshot = str(directory / "current")

    for name, plain in kept.items():
        dumped = run(capsys, "inspect", snapshot, "--dump", name)
        assert dumped.code == 0, dumped.err
        assert same_json(json.loads(dumped.out), as_json(plain)), name

    up = run(capsys, "migrate", snapshot, "-o", "up.smsnap",
             *(f"--to={name}=2" for name in names), *REGISTRY_FLAG)
    assert up.code == 0, up.err
    upgraded, middle = service(2, names, {})
    upgraded.restore(Path("up.smsnap").read_bytes())
    for name in names:
        value = middle[name].state
        assert isinstance(value, BaseModel)
        assert not exact_differences(states[name], value.value), name  # type: ignore[attr-defined]

    down = run(capsys, "migrate", "up.smsnap", "-o", "down.smsnap", "--allow-lossy",
               *(f"--to={name}=1" for name in names), *REGISTRY_FLAG)
    assert down.code == 0, down.err
    back, restored = service(1, names, {})
    back.restore(Path("down.smsnap").read_bytes())
    for name in names:
        assert not exact_differences(states[name], restored[name].state), name
