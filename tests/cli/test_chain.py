"""The command line on incremental checkpoint chains: inspect, --verify and --dump show
every piece and the state the chain restores to, migrate rewrites a chain as one full
snapshot of another version, and damaged chains give one-line errors."""

from __future__ import annotations

import contextlib
import io
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import Result, run
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

import statemigrate as sm
from statemigrate._runtime._chain import chain_frame, split_chain
from statemigrate._runtime._chainread import composed_sections, open_chain
from statemigrate._snapshot._encode import SectionInput, encode_snapshot
from statemigrate._snapshot._format import open_snapshot
from statemigrate._snapshot._header import DeltaBase, Producer
from statemigrate.cli._main import main
from statemigrate.cli._source import read_snapshot_source
from statemigrate.reference import KVCacheV1, KVCacheV2, KVCacheV3, build_registry
from statemigrate.stores import ObjectStore

REGISTRY = ["--registry", "statemigrate.reference:build_registry"]
ERROR_PREFIX = "statemigrate: error:"

pytestmark = pytest.mark.usefixtures("hermetic")


def _now() -> float:
    return 1_700_000_000.0  # a fixed clock keeps expiry deadlines reproducible


class Chained:
    """A v2 key-value cache checkpointed incrementally to a TmpfsStore: a base of 40
    entries, then a delta that updates five and deletes two, then one that adds one and
    deletes another."""

    def __init__(self, directory: Path) -> None:
        self.service = sm.Service("gateway", code_version="2.0", registry=build_registry())
        self.cache = self.service.register(KVCacheV2(clock=_now))
        self.service.start_cold("a new cache")
        self.store = sm.TmpfsStore(directory)
        self.path = directory / "current"
        checkpointer = sm.Checkpointer(
            self.service,
            self.store,
            quiesce=threading.Lock(),
            incremental=True,
            max_delta_ratio=100.0,
        )
        for i in range(40):
            self.cache.set(f"k{i}", f"v{i}", ttl=60.0 if i % 2 else None)
        checkpointer.checkpoint_now()
        for i in range(5):
            self.cache.set(f"k{i}", f"new{i}")
        self.cache.delete("k10")
        self.cache.delete("k11")
        checkpointer.checkpoint_now()
        self.cache.set("k40", "fresh", ttl=5.0)
        self.cache.delete("k0")
        checkpointer.checkpoint_now()
        assert checkpointer.chain_length == 3
        self.data = self.path.read_bytes()
        self.pieces = [open_snapshot(piece).header for piece in split_chain(self.data)]

    def entries(self) -> dict[str, Any]:
        return {key: dict(entry) for key, entry in self.cache.entries.items()}


@pytest.fixture
def chained(tmp_path: Path) -> Chained:
    return Chained(tmp_path / "gateway")


def one_line_error(result: Result, *starts: str) -> str:
    """The error line of a failed command, checked to be one line and no traceback."""
    assert result.code == 1, result
    assert result.out == ""
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err
    assert lines[0].startswith(f"{ERROR_PREFIX} {' '.join(starts)}"), lines[0]
    return lines[0]


# --- inspect ------------------------------------------------------------------------------


def test_inspect_shows_each_piece_of_a_chain_in_order(
    chained: Chained, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run(capsys, "inspect", str(chained.path))
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    newest = chained.pieces[-1]
    assert lines[0].startswith("chain      3 pieces (a base and 2 deltas), ")
    assert lines[0].endswith(f"restores to snapshot {newest.snapshot_id} generation 3")
    assert lines[1] == "links      ok: each delta names the piece before it as its base"
    assert lines[3].split() == [
        "PIECE",
        "KIND",
        "SNAPSHOT",
        "GENERATION",
        "BASE",
        "SIZE",
        "SECTIONS",
        "LINK",
    ]
    base, first, second = chained.pieces
    rows = [line.split() for line in lines[4:7]]
    assert [row[:4] for row in rows] == [
        ["0", "base", base.snapshot_id, "1"],
        ["1", "delta", first.snapshot_id, "2"],
        ["2", "delta", second.snapshot_id, "3"],
    ]
    assert [row[4:6] for row in rows] == [
        ["-", rows[0][5]],
        [base.snapshot_id, "(1)"],
        [first.snapshot_id, "(2)"],
    ]
    assert [row[-2:] for row in rows] == [["1", "ok"]] * 3
    blocks = result.out.split("\n--- piece ")[1:]
    assert [block.split(")")[0].split(" (") for block in blocks] == [
        ["0", "base, at byte 48"],
        ["1", "delta, at byte " + blocks[1].split()[4][:-1]],
        ["2", "delta, at byte " + blocks[2].split()[4][:-1]],
    ]
    assert f"delta of   {base.snapshot_id}  generation 1" in blocks[1]
    assert f"delta of   {first.snapshot_id}  generation 2" in blocks[2]
    for block in blocks:
        assert "kvcache    default   2" in block and "digest ok" in block


def test_inspect_json_of_a_chain_names_every_piece_and_its_base(
    chained: Chained, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run(capsys, "inspect", str(chained.path), "--json")
    assert result.code == 0, result.err
    info = json.loads(result.out)
    assert info["kind"] == "chain"
    assert info["size"] == len(chained.data)
    assert info["links"] == "ok"
    assert (info["snapshot_id"], info["generation"]) == (chained.pieces[-1].snapshot_id, 3)
    pieces = info["pieces"]
    assert [p["piece"] for p in pieces] == [0, 1, 2]
    assert [p["kind"] for p in pieces] == ["full", "delta", "delta"]
    assert [p["snapshot_id"] for p in pieces] == [h.snapshot_id for h in chained.pieces]
    assert pieces[0]["base"] is None
    for before, piece in zip(pieces, pieces[1:], strict=False):
        assert piece["base"] == {
            "snapshot_id": before["snapshot_id"],
            "generation": before["generation"],
        }
    assert [p["link"] for p in pieces] == ["ok"] * 3
    assert pieces[0]["offset"] + sum(p["size"] for p in pieces) == len(chained.data)
    assert all(s["status"] == "digest ok" for p in pieces for s in p["sections"])


def test_inspect_verify_checks_every_section_of_every_piece(
    chained: Chained, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run(capsys, "inspect", str(chained.path), "--verify", "--json")
    assert result.code == 0, result.err
    statuses = [s["status"] for p in json.loads(result.out)["pieces"] for s in p["sections"]]
    assert statuses == ["verified"] * 3


def test_inspect_reads_a_chain_from_a_descriptor_and_an_object_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Everywhere inspect takes a snapshot, it takes a chain: fd:N, and an object-store
    URL whose current generation is a chain (the object line comes first)."""
    service = sm.Service("gateway", registry=build_registry())
    cache = service.register(KVCacheV2(clock=_now))
    service.start_cold("a new cache")
    (tmp_path / "bucket").mkdir()
    url = f"file://{tmp_path}/bucket/gateway"
    store = ObjectStore(url)
    checkpointer = sm.Checkpointer(
        service, store, quiesce=threading.Lock(), incremental=True, max_delta_ratio=100.0
    )
    for i in range(20):  # a delta of one record in twenty stays a delta
        cache.set(f"seed{i}", "v")
    for round_ in range(3):
        cache.set(f"k{round_}", "v")
        checkpointer.checkpoint_now()
    result = run(capsys, "inspect", url, "--verify")
    assert result.code == 0, result.err
    first, second = result.out.splitlines()[:2]
    assert first.startswith("object     ") and first.endswith("(generation 3, current)")
    assert second.startswith("chain      3 pieces (a base and 2 deltas)")
    dumped = run(capsys, "inspect", f"{url}#previous", "--dump", "kvcache")
    assert dumped.code == 0, dumped.err
    assert sorted(json.loads(dumped.out)["entries"]) == ["k0", "k1"] + sorted(
        f"seed{i}" for i in range(20)
    )
    with open(tmp_path / "chain", "wb") as handle:
        handle.write(bytes(store.open()))
    with open(tmp_path / "chain", "rb") as handle:
        by_fd = run(capsys, "inspect", f"fd:{handle.fileno()}", "--json")
    assert by_fd.code == 0, by_fd.err
    assert len(json.loads(by_fd.out)["pieces"]) == 3


# --- --dump -------------------------------------------------------------------------------


def test_dump_prints_the_state_the_chain_restores_to(
    chained: Chained, capsys: pytest.CaptureFixture[str]
) -> None:
    """Base, updates, deletions and additions: the dump is the live state at the last
    checkpoint, and the state a service restores from the same chain."""
    result = run(capsys, "inspect", str(chained.path), "--dump", "kvcache")
    assert result.code == 0, result.err
    dumped = json.loads(result.out)["entries"]
    assert dumped == chained.entries()
    assert "k0" not in dumped and "k10" not in dumped and dumped["k40"]["value"] == "fresh"
    restored = sm.Service("gateway", registry=build_registry())
    cache = restored.register(KVCacheV2(clock=_now))
    restored.start_from(chained.store)
    assert {key: dict(entry) for key, entry in cache.entries.items()} == dumped
    assert list(dumped) == list(cache.entries)  # in the order the restore gives, too


def test_dump_of_a_records_protocol_chain_matches_the_restore(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A component with its own export_state and the records protocol (the v3 cache)
    writes deltas of records too; composing them gives what the service restores."""
    service = sm.Service("gateway", registry=build_registry())
    cache = service.register(KVCacheV3(clock=_now))
    service.start_cold("a new cache")
    store = sm.TmpfsStore(tmp_path / "v3")
    checkpointer = sm.Checkpointer(
        service, store, quiesce=threading.Lock(), incremental=True, max_delta_ratio=100.0
    )
    for i in range(20):
        cache.set(f"k{i}", f"v{i}")
    checkpointer.checkpoint_now()
    cache.get("k3")
    cache.delete("k4")
    checkpointer.checkpoint_now()
    assert checkpointer.chain_length == 2
    result = run(capsys, "inspect", str(tmp_path / "v3" / "current"), "--dump", "kvcache")
    assert result.code == 0, result.err
    dumped = json.loads(result.out)
    assert dumped == cache.export_state()
    assert dumped["entries"]["k3"]["hits"] == 1 and "k4" not in dumped["entries"]


# One registry for every example of the property below: a registry is not changed by the
# services that use it, and building the reference one costs more than an example.
_SHARED_REGISTRY = build_registry()


@given(
    rounds=st.lists(
        st.lists(st.tuples(st.sampled_from(["set", "delete"]), st.integers(0, 12)), max_size=15),
        min_size=1,
        max_size=5,
    )
)
def test_composing_a_chain_gives_the_state_a_service_restores(
    rounds: list[list[tuple[str, int]]],
) -> None:
    """For any sets and deletes between checkpoints, the composed state of the chain is
    the state Service.start_from restores from it."""
    service = sm.Service("gateway", registry=_SHARED_REGISTRY)
    cache = service.register(KVCacheV2(clock=_now))
    service.start_cold("a new cache")
    store = sm.MemoryStore()
    # Inline: what is composed does not depend on where the base was exported, and a
    # forked child per base costs 70 ms in a process as large as pytest's.
    checkpointer = sm.Checkpointer(
        service, store, quiesce=threading.Lock(), incremental=True, max_delta_ratio=100.0,
        export="inline",
    )
    for number, writes in enumerate(rounds):
        for act, key in writes:
            if act == "set":
                cache.set(f"k{key}", f"v{number}")
            else:
                cache.delete(f"k{key}")
        checkpointer.checkpoint_now()
    (section,) = composed_sections(open_chain(store.open()))
    restored = sm.Service("gateway", registry=_SHARED_REGISTRY)
    again = restored.register(KVCacheV2(clock=_now))
    restored.start_from(store)
    assert section.data == {"entries": {k: dict(v) for k, v in again.entries.items()}}
    assert list(again.entries) == list(section.data["entries"])


# --- migrate ------------------------------------------------------------------------------


def test_migrate_rewrites_a_v2_chain_as_a_v1_snapshot_for_a_rollback(
    chained: Chained, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The rollback case: the store holds only a chain of v2 pieces; migrate composes
    it and writes one full v1 snapshot, which release 1 restores."""
    out = tmp_path / "gateway-v1.smsnap"
    result = run(
        capsys,
        "migrate",
        str(chained.path),
        "-o",
        str(out),
        "--to",
        "kvcache=1",
        "--allow-lossy",
        *REGISTRY,
    )
    assert result.code == 0, result.err
    newest = chained.pieces[-1]
    assert result.out.splitlines() == [
        f"composed checkpoint chain of 3 pieces into snapshot {newest.snapshot_id} generation 3",
        "kvcache/default: kvcache 2 -> 1 (drop_ttl [lossy])",
        f"wrote {out} ({out.stat().st_size} bytes, 1 section)",
    ]
    snapshot = open_snapshot(out.read_bytes())
    assert snapshot.header.base is None
    assert snapshot.header.generation == 3
    assert snapshot.header.meta["migrated_from"] == newest.snapshot_id
    assert [s.version for s in snapshot.header.sections] == [1]
    v1 = sm.Service("gateway", registry=build_registry())
    cache = v1.register(KVCacheV1())
    v1.restore(out.read_bytes())
    assert dict(cache.entries) == {k: e["value"] for k, e in chained.entries().items()}


def test_migrate_writes_a_chain_as_one_full_snapshot_at_the_same_version(
    chained: Chained, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "flat.smsnap"
    result = run(
        capsys, "migrate", str(chained.path), "-o", str(out), "--to", "kvcache=2", *REGISTRY
    )
    assert result.code == 0, result.err
    inspected = run(capsys, "inspect", str(out), "--dump", "kvcache")
    assert json.loads(inspected.out)["entries"] == chained.entries()


# --- damaged chains -----------------------------------------------------------------------


COMMANDS = [
    ["inspect", "{path}"],
    ["inspect", "{path}", "--verify"],
    ["inspect", "{path}", "--dump", "kvcache"],
    ["migrate", "{path}", "-o", "{out}", "--to", "kvcache=1", "--allow-lossy", *REGISTRY],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:3]))
def test_a_damaged_piece_is_a_one_line_error_naming_the_piece(
    chained: Chained, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    damaged = bytearray(chained.data)
    damaged[-40] ^= 0x01  # inside the last delta
    path = tmp_path / "damaged"
    path.write_bytes(damaged)
    out = tmp_path / "out.smsnap"
    argv = [part.format(path=path, out=out) for part in command]
    line = one_line_error(run(capsys, *argv), "corrupt: checkpoint chain piece 2:")
    assert "(at " in line and "offset" in line
    assert not out.exists()


@pytest.mark.parametrize("command", COMMANDS[1:], ids=lambda c: " ".join(c[:3]))
def test_a_broken_link_is_a_one_line_error(
    chained: Chained, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    """A chain missing its middle delta: each piece is sound, but the last names a base
    that is not the piece before it. --verify, --dump and migrate refuse it, as a
    service does."""
    base, _, last = split_chain(chained.data)
    path = tmp_path / "gapped"
    path.write_bytes(chain_frame([len(base), len(last)]) + bytes(base) + bytes(last))
    out = tmp_path / "out.smsnap"
    argv = [part.format(path=path, out=out) for part in command]
    line = one_line_error(
        run(capsys, *argv), "corrupt: checkpoint chain piece 1 does not follow piece 0:"
    )
    first, second, _ = chained.pieces
    assert f"expected base {first.snapshot_id} generation 1" in line
    assert f"got base {second.snapshot_id} generation 2" in line
    assert not out.exists()


def test_inspect_without_verify_shows_a_broken_link(
    chained: Chained, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, _, last = split_chain(chained.data)
    path = tmp_path / "gapped"
    path.write_bytes(chain_frame([len(base), len(last)]) + bytes(base) + bytes(last))
    result = run(capsys, "inspect", str(path))
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[1] == (
        "links      BROKEN: checkpoint chain piece 1 does not follow piece 0;"
        " a service refuses this chain"
    )
    assert lines[5].endswith("checkpoint chain piece 1 does not follow piece 0")
    info = json.loads(run(capsys, "inspect", str(path), "--json").out)
    assert [p["link"] for p in info["pieces"]] == [
        "ok",
        "checkpoint chain piece 1 does not follow piece 0",
    ]


def test_a_truncated_chain_is_a_one_line_error(
    chained: Chained, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cut"
    path.write_bytes(chained.data[:-100])
    line = one_line_error(run(capsys, "inspect", str(path)), "truncated:")
    assert "checkpoint chain piece 2 ends past the object" in line
    path.write_bytes(chained.data[:20])
    one_line_error(run(capsys, "inspect", str(path)), "truncated: checkpoint chain ends")


@pytest.mark.parametrize(
    ("offset", "value", "message"),
    [
        (
            12,
            0x55,
            "checkpoint chain frame's reserved field is 0x00000055, not zero (at offset 12)",
        ),
        (
            15,
            0x80,
            "checkpoint chain frame's reserved field is 0x80000000, not zero (at offset 12)",
        ),
        (8, 0, "checkpoint chain frame declares 0 pieces (at offset 8)"),
        (11, 0xFF, "checkpoint chain frame declares 4278190083 pieces (at offset 8)"),
    ],
)
def test_a_damaged_frame_header_names_the_field_and_its_offset(
    offset: int,
    value: int,
    message: str,
    chained: Chained,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The count (bytes 8..11) and the reserved field (bytes 12..15) are told apart."""
    data = bytearray(chained.data)
    data[offset] = value
    path = tmp_path / "damaged"
    path.write_bytes(data)
    line = one_line_error(run(capsys, "inspect", str(path)), "corrupt:")
    assert line.endswith(message), line


def test_a_chain_larger_than_the_limit_is_refused_before_it_is_read(chained: Chained) -> None:
    limit = len(chained.data)
    assert (
        read_snapshot_source(str(chained.path), limits=sm.DecodeLimits(max_snapshot_size=limit))
        == chained.data
    )
    with pytest.raises(sm.SnapshotError, match="checkpoint chain is larger than the reader"):
        read_snapshot_source(str(chained.path), limits=sm.DecodeLimits(max_snapshot_size=limit - 1))


def _piece(section_version: int, *, base: DeltaBase | None, data: object) -> bytes:
    producer = Producer.current("gateway")
    encoded = encode_snapshot(
        [SectionInput("kvcache", "default", section_version, "f" * 32, data)],
        producer=producer,
        generation=1 if base is None else base.generation + 1,
        base=base,
    )
    return encoded.to_bytes()


def test_a_delta_that_cannot_be_composed_is_a_one_line_error_naming_the_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = _piece(2, base=None, data={"entries": {}})
    header = open_snapshot(base).header
    link = DeltaBase(snapshot_id=header.snapshot_id, generation=header.generation)
    path = tmp_path / "chain"
    cases = [
        (
            _piece(3, base=link, data={"state": {"entries": {}}, "deleted": {"entries": []}}),
            "the section is at version 3 and the base's at 2",
        ),
        (
            _piece(2, base=link, data={"state": {}, "deleted": {"entries": "k1"}}),
            "a delta section is a map of 'state' (a map), 'deleted'",
        ),
        (
            _piece(2, base=link, data={"state": {"entries": {}}, "deleted": {"entries": [[1]]}}),
            "a deleted key of record field 'entries' is a list",
        ),
    ]
    for delta, why in cases:
        path.write_bytes(chain_frame([len(base), len(delta)]) + base + delta)
        line = one_line_error(
            run(capsys, "inspect", str(path), "--dump", "kvcache"),
            "invalid_data: checkpoint chain piece 1 cannot be composed:",
        )
        assert why in line and line.endswith("(at section 'kvcache/default')")


# --- list ---------------------------------------------------------------------------------


def test_list_kinds_tells_snapshots_from_chains(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    service = sm.Service("gateway", registry=build_registry())
    cache = service.register(KVCacheV2(clock=_now))
    service.start_cold("a new cache")
    (tmp_path / "bucket").mkdir()
    url = f"file://{tmp_path}/bucket/gateway"
    store = ObjectStore(url, keep=3)
    for i in range(20):  # a delta of one record in twenty stays a delta
        cache.set(f"k{i}", "v")
    service.commit(store)  # generation 1: a full snapshot
    checkpointer = sm.Checkpointer(
        service, store, quiesce=threading.Lock(), incremental=True, max_delta_ratio=100.0
    )
    checkpointer.checkpoint_now()  # 2: a chain of its base alone
    cache.set("k2", "v")
    checkpointer.checkpoint_now()  # 3: the base and a delta
    result = run(capsys, "list", url, "--kinds")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[2].split()[-1] == "KIND"
    assert [line.split("  ")[-1].strip() for line in lines[3:]] == [
        "chain of 2 pieces",
        "chain of 1 piece",
        "snapshot",
    ]
    rows = json.loads(run(capsys, "list", url, "--kinds", "--json").out)["generations"]
    assert [(row["kind"], row["pieces"]) for row in rows] == [
        ("chain", 2),
        ("chain", 1),
        ("snapshot", None),
    ]
    plain = json.loads(run(capsys, "list", url, "--json").out)["generations"]
    assert all("kind" not in row for row in plain)  # without --kinds, no object is read
    # The current generation's etag changed, so it is read whole and checked against
    # the digest its commit recorded; an older one is judged from its first bytes.
    for row in rows[0], rows[2]:
        path = Path(row["object"].removeprefix("file://"))
        path.write_bytes(bytes(path.stat().st_size))
    damaged = json.loads(run(capsys, "list", url, "--kinds", "--json").out)["generations"]
    assert [row["kind"] for row in damaged] == ["unreadable", "chain", "unknown"]
    assert damaged[0]["error"].startswith("open ")


# --- keys and damage of any kind ----------------------------------------------------------


def test_an_authenticated_chain_needs_its_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = b"a key of at least sixteen bytes, for tests"
    (tmp_path / "key").write_bytes(key)
    service = sm.Service("gateway", registry=build_registry(), key=key)
    cache = service.register(KVCacheV2(clock=_now))
    service.start_cold("a new cache")
    store = sm.TmpfsStore(tmp_path / "signed")
    checkpointer = sm.Checkpointer(
        service, store, quiesce=threading.Lock(), incremental=True, max_delta_ratio=100.0
    )
    for round_ in range(2):
        cache.set(f"k{round_}", "v")
        checkpointer.checkpoint_now()
    path = str(tmp_path / "signed" / "current")
    one_line_error(
        run(capsys, "inspect", path),
        "auth: checkpoint chain piece 0: snapshot is authenticated but no key was given",
    )
    signed = run(capsys, "inspect", path, "--verify", "--key-file", str(tmp_path / "key"))
    assert signed.code == 0, signed.err
    assert "HMAC-SHA256" in signed.out
    out = tmp_path / "v1.smsnap"
    result = run(
        capsys,
        "migrate",
        path,
        "-o",
        str(out),
        "--to",
        "kvcache=1",
        "--allow-lossy",
        "--key-file",
        str(tmp_path / "key"),
        *REGISTRY,
    )
    assert result.code == 0, result.err
    assert open_snapshot(out.read_bytes(), key=key).authenticated


@pytest.fixture(scope="module")
def sound_chain(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return Chained(tmp_path_factory.mktemp("chain") / "gateway").data


def damaged(sound: bytes, flips: list[tuple[int, int]], cut: int | None, tail: bytes) -> bytes:
    """``sound`` with bytes flipped, then cut short, then with ``tail`` appended."""
    data = bytearray(sound)
    for at, mask in flips:
        data[at % len(data)] ^= mask
    if cut is not None:
        del data[cut % len(data) :]
    return bytes(data + tail)


def inspect_damaged(folder: Path, data: bytes, sound: bytes) -> None:
    """inspect, --verify and --dump of ``data``: the chain or one error line."""
    path = folder / "chain"
    path.write_bytes(data)
    for options in ([], ["--verify"], ["--dump", "kvcache"]):
        code = main_quietly(["inspect", str(path), *options])
        assert code == 0 if data == sound else code in (0, 1)


_flips = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(1, 255)), max_size=3)
_tails = st.one_of(st.just(b""), st.binary(max_size=64))


@given(
    flips=_flips,
    cut=st.one_of(st.none(), st.integers(0, 80), st.integers(0, 1 << 20)),  # the frame too
    tail=_tails,
)
def test_a_damaged_chain_gives_only_one_line_errors(
    sound_chain: bytes,
    tmp_path_factory: pytest.TempPathFactory,
    flips: list[tuple[int, int]],
    cut: int | None,
    tail: bytes,
) -> None:
    """For any bytes flipped, any truncation and any bytes appended to a real chain:
    inspect --verify and --dump print the chain or one error line, never a traceback."""
    data = damaged(sound_chain, flips, cut, tail)
    inspect_damaged(tmp_path_factory.mktemp("damaged"), data, sound_chain)


def main_quietly(argv: list[str]) -> int:
    """main() with its output thrown away, its error line checked; a foreign exception
    would propagate."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(argv, out=io.StringIO())
    lines = err.getvalue().splitlines()
    assert len(lines) == (1 if code else 0), lines
    assert not lines or lines[0].startswith(ERROR_PREFIX)
    return code


def test_negative_control_a_chain_reader_that_leaks_is_caught(
    sound_chain: bytes,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The property above catches a frame reader that trusts the bytes it reads: on a
    truncated frame it raises struct.error, which the command line does not translate."""
    import struct

    from statemigrate._runtime import _chainread

    def naive_split(data: Any) -> list[memoryview]:
        struct.unpack_from("<8sIIQ", data)  # the frame of one piece, unchecked
        return split_chain(data)

    monkeypatch.setattr(_chainread, "split_chain", naive_split)
    folder = tmp_path_factory.mktemp("leaky")

    @given(cut=st.integers(0, 40), tail=_tails)
    @settings(database=None, phases=[Phase.generate])  # found is enough: no shrinking
    def same_property(cut: int, tail: bytes) -> None:
        inspect_damaged(folder, damaged(sound_chain, [], cut, tail), sound_chain)

    with pytest.raises(struct.error):
        same_property()


FLOAT_KEYED_MODULE = """
from typing_extensions import TypedDict
import statemigrate as sm


class Prices(TypedDict):
    prices: dict[float, int]


registry = sm.Registry()
registry.add_schema("prices", 1, Prices)


@registry.migratable("prices", version=1)
class Holder:
    def __init__(self) -> None:
        self.prices = sm.TrackedDict()
"""


def test_dump_with_the_registry_matches_keys_by_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A float key deleted as ``-0.0`` where the base holds ``0.0``: ``--dump`` with the
    registry composes the chain as a restore does (the record is gone); by text alone,
    without it, the record stays."""
    name = f"float_keyed_{abs(hash(tmp_path)) % 10**8}"
    (tmp_path / f"{name}.py").write_text(FLOAT_KEYED_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    module = __import__(name)
    service = sm.Service("prices", registry=module.registry)
    holder = service.register(module.Holder())
    holder.prices.update((float(i), i) for i in range(2_000))
    service.start_cold("test")
    store = sm.TmpfsStore(tmp_path / "store")
    checkpointer = sm.Checkpointer(service, store, quiesce=threading.Lock(), incremental=True)
    checkpointer.checkpoint_now()
    del holder.prices[-0.0]
    checkpointer.checkpoint_now()
    assert checkpointer.chain_length == 2
    chain = str(tmp_path / "store" / "current")
    by_value = run(capsys, "inspect", chain, "--dump", "prices", "--registry", f"{name}:registry")
    assert by_value.code == 0, by_value
    assert "0.0" not in json.loads(by_value.out)["prices"]
    by_text = run(capsys, "inspect", chain, "--dump", "prices")
    assert "0.0" in json.loads(by_text.out)["prices"]
