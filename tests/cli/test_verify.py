"""``statemigrate verify``: whether each section of a snapshot would restore into a
release, found as a restore finds it, with exit 0 (every one would), 1 (one would not)
and 2 (no answer: bad input), and nothing written."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from chain_releases import restored_from_chain, write_chain
from cli_helpers import Result, run
from golden import reseal
from golden import split as take_apart

import statemigrate as sm
from statemigrate._runtime._chain import split_chain
from statemigrate._runtime._restoresource import GENERATION_LIMIT
from statemigrate._snapshot._encode import SectionInput, encode_snapshot
from statemigrate._snapshot._format import assemble
from statemigrate._snapshot._header import Producer
from statemigrate.reference import KVCacheV1, KVCacheV2, KVCacheV3, build_registry

REGISTRY = ["--registry", "statemigrate.reference:build_registry"]
ERROR_PREFIX = "statemigrate: error:"

pytestmark = pytest.mark.usefixtures("hermetic")


def _now() -> float:
    return 1_700_000_000.0  # a fixed clock keeps expiry deadlines reproducible


def one_error_line(result: Result, *fragments: str) -> str:
    """No answer: status 2, nothing on stdout, one error line, no traceback."""
    assert result.code == 2, result
    assert result.out == ""
    assert "Traceback" not in result.err
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith(ERROR_PREFIX), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def _write(path: Path, sections: list[SectionInput]) -> Path:
    path.write_bytes(encode_snapshot(sections, producer=Producer.current("verify")).to_bytes())
    return path


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder of its own, with no pyproject.toml above it, to run in and to check
    that nothing is written there."""
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "pyproject.toml").write_text('[project]\nname = "elsewhere"\n')
    monkeypatch.chdir(folder)
    return folder


@pytest.fixture
def v1_snapshot(tmp_path: Path) -> Path:
    """Two instances of the v1 cache, as a service running release 1 writes them."""
    sessions, pages = KVCacheV1(), KVCacheV1()
    sessions.set("user:0", "token-0")
    for i in range(50):
        pages.set(f"/page/{i}", "x" * i)
    service = sm.Service("gateway", code_version="1.0", registry=build_registry())
    service.register(sessions, instance="sessions")
    service.register(pages, instance="pages")
    encoded, _ = service.snapshot()
    path = tmp_path / "gateway-v1.smsnap"
    path.write_bytes(encoded.to_bytes())
    return path


@pytest.fixture
def v3_snapshot(tmp_path: Path) -> Path:
    cache = KVCacheV3(clock=_now)
    cache.set("alpha", "one", ttl=60)
    cache.get("alpha")
    service = sm.Service("gateway", code_version="3.0", registry=build_registry())
    service.register(cache)
    encoded, _ = service.snapshot()
    path = tmp_path / "gateway-v3.smsnap"
    path.write_bytes(encoded.to_bytes())
    return path


def _liar(tmp_path: Path) -> Path:
    """A section that claims version 3 but holds a version 1 entry, beside a sound one:
    validation against version 3 refuses the first."""
    v3 = build_registry().schema_for("kvcache", 3)
    good = {"entries": {"a": {"data": "one", "expires_at": None, "hits": 2}}}
    return _write(
        tmp_path / "liar.smsnap",
        [
            SectionInput("kvcache", "bad", 3, v3.fingerprint, {"entries": {"a": "plain"}}),
            SectionInput("kvcache", "good", 3, v3.fingerprint, good),
        ],
    )


def _misread(tmp_path: Path) -> Path:
    """A section written under version 3 by another schema (its fingerprint differs)
    that held its hits as text: read back, validation would make them a number."""
    data = {"entries": {"a": {"data": "one", "expires_at": None, "hits": "2"}}}
    return _write(
        tmp_path / "misread.smsnap",
        [SectionInput("kvcache", "default", 3, "0" * 32, data)],
    )


# --- would restore: status 0 ------------------------------------------------------------


def test_a_snapshot_that_restores_prints_each_section_and_exits_0(
    v1_snapshot: Path, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = v1_snapshot.read_bytes()
    result = run(capsys, "verify", str(v1_snapshot), *REGISTRY)
    assert (result.code, result.err) == (0, "")
    assert result.out.splitlines() == [
        "kvcache/sessions: 1 -> 3 would restore (upgrade_1_to_3)",
        "kvcache/pages: 1 -> 3 would restore (upgrade_1_to_3)",
    ]
    # Nothing written: not the snapshot, not a file beside it, not in the folder run in.
    assert v1_snapshot.read_bytes() == before
    assert sorted(p.name for p in v1_snapshot.parent.iterdir()) == ["gateway-v1.smsnap", "work"]
    assert [p.name for p in work.iterdir()] == ["pyproject.toml"]


def test_to_chooses_the_target_of_a_component(
    v1_snapshot: Path, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run(capsys, "verify", str(v1_snapshot), "--to", "kvcache=2", *REGISTRY)
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        "kvcache/sessions: 1 -> 2 would restore (add_ttl)",
        "kvcache/pages: 1 -> 2 would restore (add_ttl)",
    ]
    same = run(capsys, "verify", str(v1_snapshot), "--to", "kvcache=1", *REGISTRY)
    assert same.code == 0, same.err
    assert same.out.splitlines()[0] == "kvcache/sessions: 1 -> 1 would restore (no steps)"


def test_a_lossy_downgrade_needs_allow_lossy(
    v3_snapshot: Path, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    refused = run(capsys, "verify", str(v3_snapshot), "--to", "kvcache=1", *REGISTRY)
    assert (refused.code, refused.err) == (1, "")
    assert refused.out.splitlines() == [
        "kvcache/default: 3 -> 1 would NOT restore: loses data in kvcache 3 -> 1"
        " (downgrade_3_to_1); pass --allow-lossy-for kvcache (or --allow-lossy, for every"
        " component) to accept that"
    ]
    allowed = run(
        capsys, "verify", str(v3_snapshot), "--to", "kvcache=1", "--allow-lossy", *REGISTRY
    )
    assert (allowed.code, allowed.err) == (0, "")
    assert allowed.out.splitlines() == [
        "kvcache/default: 3 -> 1 would restore (downgrade_3_to_1 [lossy])"
    ]


# --- would not restore: status 1, the reason on the section's line -----------------------


def test_data_the_target_schema_refuses_would_not_restore(
    tmp_path: Path, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The refusal is the bad section's line; the sound section beside it is still
    checked and would restore."""
    result = run(capsys, "verify", str(_liar(tmp_path)), *REGISTRY)
    assert (result.code, result.err) == (1, "")
    bad, good = result.out.splitlines()
    assert bad.startswith(
        "kvcache/bad: 3 -> 3 would NOT restore: kvcache/bad does not fit schema version 3:"
    ), bad
    assert "entries" in bad
    assert good == "kvcache/good: 3 -> 3 would restore (no steps)"


def test_data_a_step_fails_on_would_not_restore(
    tmp_path: Path, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _liar(tmp_path)
    result = run(capsys, "verify", str(path), "--to", "kvcache=1", "--allow-lossy", *REGISTRY)
    assert result.code == 1, result.err
    bad, good = result.out.splitlines()
    assert bad.startswith("kvcache/bad: 3 -> 1 would NOT restore: "), bad
    assert "downgrade_3_to_1" in bad and "TypeError" in bad
    assert good == "kvcache/good: 3 -> 1 would restore (downgrade_3_to_1 [lossy])"


def test_data_written_by_another_schema_of_the_version_would_not_restore(
    tmp_path: Path, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run(capsys, "verify", str(_misread(tmp_path)), *REGISTRY)
    assert result.code == 1, result.err
    (line,) = result.out.splitlines()
    assert line.startswith("kvcache/default: 3 -> 3 would NOT restore: "), line
    assert "written by a different schema" in line and "hits" in line, line


def _with_blobs(tmp_path: Path) -> Path:
    """A snapshot of the v3 cache and of a component ``blobs`` the reference lacks."""
    v3 = build_registry().schema_for("kvcache", 3)
    return _write(
        tmp_path / "two.smsnap",
        [
            SectionInput("kvcache", "default", 3, v3.fingerprint, {"entries": {}}),
            SectionInput("blobs", "default", 1, "", {"blobs": {}}),
        ],
    )


def test_a_component_the_registry_does_not_know_would_not_restore(
    tmp_path: Path, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _with_blobs(tmp_path)
    result = run(capsys, "verify", str(path), *REGISTRY)
    assert (result.code, result.err) == (1, "")
    assert result.out.splitlines() == [
        "kvcache/default: 3 -> 3 would restore (no steps)",
        "blobs/default: version 1 would NOT restore: unknown component 'blobs';"
        " registered: kvcache; a restore carries it unchanged into later snapshots, for a"
        " release that has the component (Registry.retire drops it on purpose)",
    ]


def test_a_component_the_release_retired_is_dropped_on_purpose_not_refused(
    tmp_path: Path, work: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _with_blobs(tmp_path)
    (work / "retiring.py").write_text(
        "from statemigrate.reference import build_registry\n\n\n"
        "def build():\n"
        "    registry = build_registry()\n"
        "    registry.retire('blobs')\n"
        "    return registry\n"
    )
    monkeypatch.syspath_prepend(str(work))
    result = run(capsys, "verify", str(path), "--registry", "retiring:build")
    assert (result.code, result.err) == (0, "")
    assert result.out.splitlines() == [
        "kvcache/default: 3 -> 3 would restore (no steps)",
        "blobs/default: version 1: the component is retired by this release; a restore"
        " drops it",
    ]
    result = run(capsys, "verify", str(path), "--registry", "retiring:build", "--json")
    sections = json.loads(result.out)["sections"]
    assert [(s["restores"], s["retired"]) for s in sections] == [(True, False), (True, True)]


def _restores(path: Path) -> bool:
    """Whether a service running the newest version of the cache restores ``path``."""
    service = sm.Service("gateway", registry=build_registry())
    for instance in ("default", "sessions", "pages", "bad", "good"):
        service.register(KVCacheV3(clock=_now), instance=instance)
    try:
        service.restore(path.read_bytes(), allow_other_service=True)
    except sm.RestoreError:
        return False
    return True


@pytest.mark.parametrize(("snapshot", "expected"), [("v1", 0), ("liar", 1), ("misread", 1)])
def test_the_verdict_is_what_a_restore_does(
    snapshot: str,
    expected: int,
    v1_snapshot: Path,
    tmp_path: Path,
    work: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """verify says "would restore" exactly when a service running the newest version
    restores the snapshot."""
    path = {"v1": v1_snapshot, "liar": _liar(tmp_path), "misread": _misread(tmp_path)}[snapshot]
    result = run(capsys, "verify", str(path), *REGISTRY)
    assert (result.code, _restores(path)) == (expected, expected == 0), result


def test_negative_control_a_verify_without_the_read_back_check_is_caught(
    tmp_path: Path, work: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without the check a restore makes before any step, verify would pass a snapshot
    that a restore refuses, and the agreement above would fail."""
    from statemigrate._runtime import _rewrite

    monkeypatch.setattr(_rewrite, "_check_read_back", lambda registry, section, data: None)
    path = _misread(tmp_path)
    result = run(capsys, "verify", str(path), *REGISTRY)
    assert (result.code, _restores(path)) == (0, False), result


def test_json_gives_every_verdict(
    tmp_path: Path, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run(capsys, "verify", str(_liar(tmp_path)), "--json", *REGISTRY)
    assert (result.code, result.err) == (1, "")
    info = json.loads(result.out)
    assert info["restores"] is False and info["composed"] is False
    bad, good = info["sections"]
    assert {key: bad[key] for key in ("component", "instance", "source", "target")} == {
        "component": "kvcache",
        "instance": "bad",
        "source": 3,
        "target": 3,
    }
    assert bad["restores"] is False
    assert bad["reason"].startswith("kvcache/bad does not fit schema version 3")
    assert good == {
        "component": "kvcache",
        "instance": "good",
        "source": 3,
        "target": 3,
        "restores": True,
        "retired": False,
        "steps": [],
        "lossy_steps": [],
        "reason": None,
    }


# --- checkpoint chains and deltas ------------------------------------------------------------


def _chain(directory: Path) -> Path:
    """A v2 cache checkpointed incrementally: a base and two deltas."""
    service = sm.Service("gateway", code_version="2.0", registry=build_registry())
    cache = service.register(KVCacheV2(clock=_now))
    service.start_cold("a new cache")
    store = sm.TmpfsStore(directory)
    checkpointer = sm.Checkpointer(
        service, store, quiesce=threading.Lock(), incremental=True, max_delta_ratio=100.0
    )
    for i in range(20):
        cache.set(f"k{i}", f"v{i}")
    checkpointer.checkpoint_now()
    cache.set("k0", "new")
    checkpointer.checkpoint_now()
    cache.delete("k1")
    checkpointer.checkpoint_now()
    assert checkpointer.chain_length == 3
    return directory / "current"


def test_a_chain_of_one_piece_is_one_piece(
    tmp_path: Path, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    service = sm.Service("gateway", code_version="2.0", registry=build_registry())
    service.register(KVCacheV2(clock=_now))
    service.start_cold("a new cache")
    checkpointer = sm.Checkpointer(
        service, sm.TmpfsStore(tmp_path / "store"), quiesce=threading.Lock(), incremental=True
    )
    checkpointer.checkpoint_now()
    result = run(capsys, "verify", str(tmp_path / "store" / "current"), *REGISTRY)
    assert result.code == 0, result.err
    assert result.out.startswith("composed checkpoint chain of 1 piece into snapshot "), result.out


def test_a_chain_is_composed_then_verified(
    tmp_path: Path, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run(capsys, "verify", str(_chain(tmp_path / "store")), *REGISTRY)
    assert (result.code, result.err) == (0, "")
    note, line = result.out.splitlines()
    assert note.startswith("composed checkpoint chain of 3 pieces into snapshot "), note
    assert line == "kvcache/default: 2 -> 3 would restore (add_hits)"


def test_a_lone_delta_is_refused(
    tmp_path: Path, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pieces = split_chain(_chain(tmp_path / "store").read_bytes())
    delta = tmp_path / "delta.smsnap"
    delta.write_bytes(bytes(pieces[1]))
    result = run(capsys, "verify", str(delta), *REGISTRY)
    one_error_line(result, "is a delta of", "only full snapshots are verified")


def _chain_verdict_and_restore(
    release: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[int, bool]:
    """``verify``'s status for release 1's chain in ``release`` (see chain_releases),
    and whether a service of that release restores the chain."""
    written = write_chain(refused_value=release == "refusing")
    path = tmp_path / "chain"
    path.write_bytes(written.chain)
    registry = ["--registry", f"chain_releases:{release}"]
    result = run(capsys, "verify", str(path), "--allow-lossy", *registry)
    try:
        restored_from_chain(release, written.chain)
    except sm.RestoreError:
        return result.code, False
    return result.code, True


@pytest.mark.parametrize(
    ("release", "expected"), [("drop_note", 0), ("int_keys", 0), ("refusing", 1)]
)
def test_the_verdict_on_a_chain_is_what_a_restore_does(
    release: str, expected: int, tmp_path: Path, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A chain of release 1 in a release whose upgrade is a whole-data step: verify
    composes the chain, the restore folds it, and both say the same (the ``refusing``
    step fails only on a value the last delta wrote)."""
    assert _chain_verdict_and_restore(release, tmp_path, capsys) == (expected, expected == 0)


def test_negative_control_a_restore_that_does_not_fold_the_chain_is_caught(
    tmp_path: Path, work: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A restore that applied the deltas as they are would fail where verify passes."""
    from statemigrate._runtime import _chainrestore

    monkeypatch.setattr(_chainrestore, "fold_reasons", lambda headers, entries, allow_lossy: [])
    assert _chain_verdict_and_restore("drop_note", tmp_path, capsys) == (0, False)


# --- no answer: status 2, one line ---------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "fragments"),
    [
        (["missing.smsnap"], ("open missing.smsnap: No such file or directory",)),
        (["SNAP", "--to", "nosuch=1"], ("snapshot has no section for nosuch",)),
        (["SNAP", "--to", "kvcache=9"], ("unknown component 'kvcache' version 9",)),
        (["SNAP", "--to", "kvcache=x"], ("argument --to: 'kvcache=x': expected",)),
        (["SNAP", "--to", "kvcache=1", "--to", "kvcache=2"], ("names component 'kvcache'",)),
        (["SNAP", "--registry", "no_such_module_q:build"], ("no_such_module_q",)),
        (["DAMAGED"], ("corrupt",)),
    ],
)
def test_bad_input_is_one_line_and_status_2(
    arguments: list[str],
    fragments: tuple[str, ...],
    v3_snapshot: Path,
    work: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    damaged = work / "damaged.smsnap"
    data = bytearray(v3_snapshot.read_bytes())
    data[len(data) // 2] ^= 0x10
    damaged.write_bytes(bytes(data))
    names = {"SNAP": str(v3_snapshot), "DAMAGED": str(damaged)}
    argv = [names.get(argument, argument) for argument in arguments]
    registry = [] if "--registry" in argv else REGISTRY
    one_error_line(run(capsys, "verify", *argv, *registry), *fragments)


def _forged(source: Path, target: Path, damage: str) -> Path:
    """``source`` resealed after ``damage``: every digest and header check passes."""
    header, chunks = take_apart(source.read_bytes())
    entry = header["sections"][0]["chunks"][0]
    if damage == "generation":
        header["generation"] = GENERATION_LIMIT
        target.write_bytes(reseal(header, chunks))
    elif damage == "codec":
        entry[0] = 7
        target.write_bytes(reseal(header, chunks))
    else:  # the chunk's checksum in the header no longer that of its bytes
        entry[3] ^= 1
        target.write_bytes(b"".join(assemble(header, chunks)))
    return target


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        ("codec", "unsupported_version: unknown chunk codec 7 (at section 'kvcache/default'"),
        ("checksum", "corrupt: chunk checksum mismatch"),
        (
            "generation",
            f"invalid_header: snapshot generation {GENERATION_LIMIT} is beyond what counting"
            " snapshots reaches",
        ),
    ],
)
def test_a_forged_snapshot_a_restore_refuses_is_no_answer(
    damage: str, said: str, v3_snapshot: Path, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Resealed after the damage, the snapshot passes its digest: a chunk that does not
    decode was a verdict ("would NOT restore", status 1) where a damaged snapshot is
    status 2, and a generation of 2**62, which a restore refuses, "would restore"
    (and migrate rewrote it). Each is now the one line of a damaged snapshot."""
    forged = _forged(v3_snapshot, work / "forged.smsnap", damage)
    one_error_line(run(capsys, "verify", str(forged), *REGISTRY), said)
    out = work / "out.smsnap"
    result = run(capsys, "migrate", str(forged), "-o", str(out), "--to", "kvcache=3", *REGISTRY)
    assert result.code == 1 and said in result.err, result
    assert not out.exists()
    service = sm.Service("gateway", registry=build_registry())
    service.register(KVCacheV3())
    with pytest.raises(sm.RestoreError) as refused:
        service.restore(forged.read_bytes())
    assert said.partition(": ")[2][:40] in str(refused.value)


def test_no_registry_named_is_one_line_and_status_2(
    v3_snapshot: Path, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a registry every section would be an unknown component: the command
    says what to name instead of judging every section."""
    result = run(capsys, "verify", str(v3_snapshot))
    assert result.code == 2
    one_error_line(result, "no component is registered", "--registry MODULE:NAME")


def test_verify_in_a_child_process_exits_with_its_answer(v3_snapshot: Path, work: Path) -> None:
    """The statuses reach the shell, and a failure is one line there too."""
    import subprocess
    import sys

    def child(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "statemigrate", "verify", *argv, *REGISTRY],
            capture_output=True,
            text=True,
            timeout=120,  # a bound on a hang, never a measurement
            stdin=subprocess.DEVNULL,
        )

    answers: dict[str, Any] = {
        "yes": child(str(v3_snapshot)),
        "no": child(str(v3_snapshot), "--to", "kvcache=1"),
        "none": child(str(work / "missing")),
    }
    assert {name: proc.returncode for name, proc in answers.items()} == {
        "yes": 0,
        "no": 1,
        "none": 2,
    }
    assert answers["no"].stderr == ""
    assert answers["none"].stdout == "" and len(answers["none"].stderr.splitlines()) == 1


def test_a_snapshot_without_sections_would_restore(
    tmp_path: Path, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run(capsys, "verify", str(_write(tmp_path / "empty.smsnap", [])), *REGISTRY)
    assert (result.code, result.err) == (0, "")
    assert result.out.splitlines() == [
        "(no sections)",
        "kvcache: not in the snapshot; restores nothing, and keeps what the release starts"
        " it with",
    ]


def test_a_component_the_snapshot_lacks_is_named_with_the_unknown_one(
    tmp_path: Path, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The new code renamed ``cache`` to ``kvcache``: the old section is unknown (a
    refusal) and the new component would start empty, which the lines say together."""
    path = _write(tmp_path / "renamed.smsnap", [SectionInput("cache", "default", 1, "", {})])
    result = run(capsys, "verify", str(path), *REGISTRY)
    assert result.code == 1
    assert result.out.splitlines()[-1] == (
        "kvcache: not in the snapshot; restores nothing, and keeps what the release starts"
        " it with"
    )
    result = run(capsys, "verify", str(path), "--json", *REGISTRY)
    assert json.loads(result.out)["not_in_snapshot"] == ["kvcache"]


def test_a_version_a_newer_release_wrote_says_how_to_fold_it_back(
    tmp_path: Path, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The reference registry reads kvcache up to version 3; a snapshot at version 4
    is a newer release's, whose downgrade steps this registry lacks: the verdict names
    the command that folds it back, as a start-up refusing it does."""
    path = _write(
        tmp_path / "newer.smsnap",
        [SectionInput("kvcache", "default", 4, "0" * 64, {"entries": {}})],
    )
    result = run(capsys, "verify", str(path), *REGISTRY)
    assert (result.code, result.err) == (1, "")
    [line] = result.out.splitlines()
    assert line.startswith("kvcache/default: 4 -> 3 would NOT restore: no migration path"), line
    assert line.endswith(
        "; a newer release wrote version 4: verify with its registry, or fold it back for"
        " this release with that registry: `statemigrate migrate SNAPSHOT -o OUT --to"
        " kvcache=3 --allow-lossy-for kvcache --registry MODULE:NAME` (docs/cli.md)"
    ), line


def test_many_components_the_snapshot_lacks_share_one_line(
    tmp_path: Path, work: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A snapshot of one section against a release of many components: one line names
    them all, rather than a line each burying the verdict."""
    (work / "many.py").write_text(
        "from typing_extensions import TypedDict\n"
        "from statemigrate.reference import build_registry\n\n\n"
        "class Empty(TypedDict):\n"
        "    n: int\n\n\n"
        "def build():\n"
        "    registry = build_registry()\n"
        "    for name in ('alpha', 'beta', 'gamma', 'delta'):\n"
        "        registry.add_schema(name, 1, Empty)\n"
        "    return registry\n"
    )
    monkeypatch.syspath_prepend(str(work))
    v3 = build_registry().schema_for("kvcache", 3)
    path = _write(
        tmp_path / "one.smsnap",
        [SectionInput("kvcache", "default", 3, v3.fingerprint, {"entries": {}})],
    )
    result = run(capsys, "verify", str(path), "--registry", "many:build")
    assert (result.code, result.err) == (0, "")
    assert result.out.splitlines() == [
        "kvcache/default: 3 -> 3 would restore (no steps)",
        "4 components are not in the snapshot: alpha, beta, delta, gamma; they restore"
        " nothing, and keep what the release starts them with",
    ]
