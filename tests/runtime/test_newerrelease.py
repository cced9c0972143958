"""A newer release's snapshot refused at start-up: the way out names every component to
fold back, the lossy ones, and the snapshot's place (a tmpfs store's file, an object
store's generation), and following it works."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, Literal

import pytest
from typing_extensions import TypedDict

from statemigrate import (
    MemoryStore,
    Registry,
    RestoreError,
    Service,
    TmpfsStore,
    migrate_snapshot,
    open_snapshot,
)
from statemigrate.stores import ObjectStore


class Plain(TypedDict):
    n: int


class Noted(TypedDict):
    n: int
    note: str


def _release(newer: bool) -> Registry:
    """Release 2 (``newer``) runs ``a``, ``b`` and ``c`` at version 2, each brought
    back to 1 by a lossy step; release 1 knows ``a`` and ``b`` at 1 alone, and ``c``
    at both versions, with the lossy step back."""
    registry = Registry()
    for name in ("a", "b", "c"):
        registry.add_schema(name, 1, Plain)
        if newer or name == "c":
            registry.add_schema(name, 2, Noted)
            registry.add_migration(name, 1, 2, _with_note)
            registry.add_migration(name, 2, 1, _without_note, lossy=("note",))
    return registry


def _with_note(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "note": ""}


def _without_note(data: dict[str, Any]) -> dict[str, Any]:
    return {"n": data["n"]}


def _service(
    newer: bool, policy: Literal["refuse", "serve_cold"] = "refuse"
) -> tuple[Service, dict[str, Any]]:
    """A service of either release, each component's ``n`` at 7."""
    registry = _release(newer)
    service = Service("svc", registry=registry, on_restore_failure=policy)
    live = {}
    for name in ("a", "b", "c"):
        fields = {"n": 7, "note": "x"} if newer else {"n": 7}
        holder = type(f"Holder{name.upper()}", (), {})
        registry.migratable(name, version=2 if newer else 1)(holder)
        live[name] = service.register(holder())
        vars(live[name]).update(fields)
    return service, live


def test_the_way_out_names_every_component_and_the_kept_file(tmp_path: Path) -> None:
    """The refusal met ``a`` first; its way out names ``b`` too (``c`` this release
    reads through its own step), and the file the start-up kept the snapshot in.
    Followed as written, the start-up restores."""
    newer, _ = _service(newer=True)
    with TmpfsStore(tmp_path / "store") as store:
        newer.commit(store)
        older, _ = _service(newer=False)
        with pytest.raises(RestoreError) as raised:
            older.start_from(store, allow_lossy={"c"})
    way_out = raised.value.way_out or ""
    kept = tmp_path / "store" / "unrestored"
    command = (
        f"statemigrate migrate {kept} -o OUT --to a=1 --to b=1"
        " --allow-lossy-for a --allow-lossy-for b"
    )
    assert f"`{command} --registry MODULE:NAME`" in way_out, way_out
    assert "'a' version 2 (this release reads 1), 'b' version 2" in way_out

    words = shlex.split(command)
    targets = dict(words[i + 1].split("=") for i, w in enumerate(words) if w == "--to")
    lossy = {words[i + 1] for i, w in enumerate(words) if w == "--allow-lossy-for"}
    folded = migrate_snapshot(
        open_snapshot(Path(words[2]).read_bytes()),
        {name: int(version) for name, version in targets.items()},
        registry=_release(newer=True),
        allow_lossy=lossy,
    )
    older, live = _service(newer=False)
    for holder in live.values():
        holder.n = 0
    older.start_from(folded.encoded.to_bytes(), allow_lossy={"c"})
    assert {name: vars(holder) for name, holder in live.items()} == {n: {"n": 7} for n in "abc"}


def test_a_lossy_step_this_release_holds_is_named_unless_allowed() -> None:
    """``c``'s step back is this release's: not allowed by the restore, it is folded
    too; a snapshot handed over as bytes has no place to name."""
    newer, _ = _service(newer=True)
    store = MemoryStore()
    newer.commit(store)
    older, _ = _service(newer=False)
    with pytest.raises(RestoreError) as raised:
        older.start_from(store)
    assert (
        "`statemigrate migrate SNAPSHOT -o OUT --to a=1 --to b=1 --to c=1"
        " --allow-lossy-for a --allow-lossy-for b --allow-lossy-for c --registry MODULE:NAME`"
    ) in (raised.value.way_out or "")


@pytest.mark.parametrize("policy", ["refuse", "serve_cold"])
def test_an_object_store_s_snapshot_is_named_by_its_generation(
    tmp_path: Path, policy: Literal["refuse", "serve_cold"]
) -> None:
    """The store's own generation number, which still names the refused snapshot once
    a service started cold has moved ``current`` on with its checkpoints."""
    store = ObjectStore(f"file://{tmp_path}/bucket")
    store.commit(b"not yet a snapshot")  # generation 1: the numbers are the store's
    newer, _ = _service(newer=True)
    newer.commit(store)
    older, _ = _service(newer=False, policy=policy)
    if policy == "refuse":
        with pytest.raises(RestoreError) as raised:
            older.start_from(store, allow_lossy={"c"})
        message = str(raised.value)
    else:
        assert older.start_from(store, allow_lossy={"c"}) is None
        message = older.status.reason or ""
    assert f"`statemigrate migrate file://{tmp_path}/bucket#2 -o OUT --to a=1" in message
