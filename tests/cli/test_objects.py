"""The command line on object-store URLs: inspect, list and migrate against moto's S3
server and file:// stores (Azurite's az:// too, with STATEMIGRATE_AZURITE=1), settings
from the environment or --store-option, keys, and one-line errors for every bad input
(server, bucket, credentials, pointer, URL)."""

from __future__ import annotations

import json
import os
import random
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import obstore
import pytest
from _store_helpers import scratch_dir
from _store_helpers.azurite import ACCOUNT, ACCOUNT_KEY, AZURITE, Azurite
from _store_helpers.fault_server import failing_server, hung_server
from _store_helpers.fifo import watched_fifo
from _store_helpers.object_server import KEYS, S3Server, free_port
from cli_helpers import one_error_line, run
from golden import PRODUCER
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import statemigrate as sm
from statemigrate._snapshot._encode import SectionInput, encode_snapshot
from statemigrate.cli._kinds import kind_of_generation
from statemigrate.reference import KVCacheV3, build_registry
from statemigrate.stores import ObjectStore, TmpfsStore

KEY = b"object-store cli key, 16+ bytes"
REGISTRY = ["--registry", "statemigrate.reference:build_registry"]


FRAGMENTS = "expected URL#current, URL#previous, URL#unrestored or URL#N"


@pytest.fixture(autouse=True)
def no_cloud_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test says where its settings come from: none leak in from the caller."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "AZURE_", "AZURITE_")):
            monkeypatch.delenv(name)


def new_bucket(s3: S3Server) -> str:
    bucket = f"cli-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(bucket)
    return bucket


def environment_for(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point obstore at the moto server the way an operator would: AWS_* variables."""
    for name, value in {
        "AWS_ENDPOINT_URL": s3.endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
    }.items():
        monkeypatch.setenv(name, value)


def store_options(s3: S3Server, **overrides: str) -> list[str]:
    """The same settings as --store-option arguments."""
    given = {"endpoint": s3.endpoint, **KEYS, "allow_http": "true", **overrides}
    return [part for key, value in given.items() for part in ("--store-option", f"{key}={value}")]


def commit_generations(
    url: str, count: int, *, key: bytes | None = None, keep: int = 2, **options: Any
) -> sm.Service:
    """``count`` commits of a small reference cache, each with meta ``n`` = its index."""
    cache = KVCacheV3()
    cache.set("user:1", "token")
    service = sm.Service("gateway", key=key, registry=build_registry())
    service.register(cache)
    store = ObjectStore(url, keep=keep, **options)
    for number in range(1, count + 1):
        service.commit(store, meta={"n": str(number)})
    return service


# -- inspect -----------------------------------------------------------------------------


@pytest.mark.slow
def test_inspect_reads_the_current_previous_or_a_numbered_generation(
    s3: S3Server, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With settings from the environment alone, inspect URL shows the current
    generation and says which object it read; #previous, #current and #N choose
    another, older kept generations (keep=3) included; --verify, --json and --dump
    work as for files."""
    environment_for(s3, monkeypatch)
    url = f"s3://{new_bucket(s3)}/gateway"
    commit_generations(url, 3, keep=3)

    shown = run(capsys, "inspect", url)
    assert shown.code == 0, shown.err
    first = shown.out.splitlines()[0]
    assert re.fullmatch(
        rf"object     {url}/generations/0{{19}}3\.[0-9a-f]{{32}}  \(generation 3, current\)",
        first,
    ), first
    assert "meta       n=3" in shown.out
    for fragment, n, note in [
        ("#current", 3, "generation 3, current"),
        ("#previous", 2, "generation 2, previous"),
        ("#2", 2, "generation 2, previous"),
        ("#0001", 1, "generation 1)"),
    ]:
        result = run(capsys, "inspect", url + fragment, "--verify")
        assert result.code == 0, result.err
        assert f"meta       n={n}" in result.out and note in result.out
        assert "verified" in result.out
    described = json.loads(run(capsys, "inspect", f"{url}#previous", "--json").out)
    assert described["object"]["generation"] == 2
    assert described["object"]["role"] == "previous"
    assert described["object"]["location"].startswith(f"{url}/generations/")
    assert described["meta"] == {"n": "2"}
    dumped = run(capsys, "inspect", url, "--dump", "kvcache")
    assert json.loads(dumped.out)["entries"]["user:1"]["data"] == "token"


def test_settings_can_come_from_the_command_line(
    s3: S3Server, capsys: pytest.CaptureFixture[str]
) -> None:
    """No AWS_* variable set: --store-option gives the endpoint, keys, region and the
    HTTP client's allow_http."""
    url = f"s3://{new_bucket(s3)}/gateway"
    commit_generations(url, 1, **s3.options())
    result = run(capsys, "inspect", url, *store_options(s3))
    assert result.code == 0, result.err
    assert "(generation 1, current)" in result.out


def test_the_key_file_applies_to_object_urls(
    s3: S3Server, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """An authenticated snapshot in a bucket needs --key-file, as a file does; a wrong
    key or none is one error line; migrate to a URL authenticates with the same key."""
    url = f"s3://{new_bucket(s3)}/gateway"
    commit_generations(url, 1, key=KEY, **s3.options())
    (tmp_path / "key").write_bytes(KEY + b"\n")
    (tmp_path / "wrong").write_bytes(b"x" * 32)
    options = store_options(s3)
    line = one_error_line(run(capsys, "inspect", url, *options))
    assert line.endswith(
        "auth: snapshot is authenticated but no key was given; pass --key-file PATH or set"
        " $STATEMIGRATE_KEY_FILE"
    )
    wrong = ["--key-file", str(tmp_path / "wrong")]
    line = one_error_line(run(capsys, "inspect", url, *options, *wrong))
    assert "auth: authentication code mismatch" in line
    good = run(capsys, "inspect", url, *options, "--key-file", str(tmp_path / "key"))
    assert good.code == 0 and "HMAC-SHA256" in good.out
    migrated = run(
        capsys,
        "migrate",
        url,
        "-o",
        f"{url}-v1",
        "--to",
        "kvcache=1",
        "--allow-lossy",
        "--key-file",
        str(tmp_path / "key"),
        *options,
        *REGISTRY,
    )
    assert migrated.code == 0, migrated.err
    line = one_error_line(run(capsys, "inspect", f"{url}-v1", *options))
    assert "authenticated but no key" in line
    again = run(capsys, "inspect", f"{url}-v1", *options, "--key-file", str(tmp_path / "key"))
    assert again.code == 0 and "HMAC-SHA256" in again.out


# -- list --------------------------------------------------------------------------------


def test_list_shows_generations_newest_first_with_sizes_ages_and_roles(
    s3: S3Server, capsys: pytest.CaptureFixture[str]
) -> None:
    """Kept generations, current and previous marked, and an object no commit won (a
    writer that died after its upload) marked as not committed; --json for scripts."""
    url = f"s3://{new_bucket(s3)}/gateway"
    commit_generations(url, 4, keep=3, **s3.options())
    store = ObjectStore(url, **s3.options())
    orphan = f"generations/{5:020d}.{'0' * 32}"
    obstore.put(store._backend.store, store._backend.key(orphan), b"never committed")
    result = run(capsys, "list", url, *store_options(s3))
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[:2] == [url, ""]
    assert lines[2].split() == ["GENERATION", "SIZE", "WRITTEN", "AGE", "ROLE"]
    rows = [line.split(maxsplit=5) for line in lines[3:]]
    assert [(row[0], row[-1]) for row in rows] == [
        ("5", "not committed"),
        ("4", "current"),
        ("3", "previous"),
        ("2", "older"),
    ]
    assert rows[0][1:3] == ["15", "B"]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row[3]) for row in rows)

    listed = json.loads(run(capsys, "list", url, "--json", *store_options(s3)).out)
    assert listed["location"] == url
    rows_json = listed["generations"]
    assert [(row["generation"], row["role"]) for row in rows_json] == [
        (5, "not committed"),
        (4, "current"),
        (3, "previous"),
        (2, "older"),
    ]
    assert rows_json[0]["size"] == len(b"never committed")
    assert rows_json[0]["object"] == f"{url}/{orphan}"
    assert all(row["age_seconds"] >= 0 and not row["missing"] for row in rows_json)


def test_list_shows_every_role_of_a_generation(
    s3: S3Server, capsys: pytest.CaptureFixture[str]
) -> None:
    """The generation a start could not restore, made previous by the next commit, is
    both previous and unrestored: the ROLE column says both, and --json keeps
    ``role`` as it was and lists them all in ``roles``."""
    url = f"s3://{new_bucket(s3)}/gateway"
    store = ObjectStore(url, **s3.options())
    store.commit(b"not a snapshot")
    store.commit(b"nor this")
    cold = sm.Service("gateway", registry=build_registry(), on_restore_failure="serve_cold")
    cold.register(KVCacheV3())
    assert cold.start_from(store) is None
    cold.commit(store)
    result = run(capsys, "list", url, *store_options(s3))
    assert result.code == 0, result.err
    *table, blank, kept = result.out.splitlines()[3:]
    rows = [re.split(r"\s{2,}", line) for line in table]
    assert [(row[0], row[-1]) for row in rows] == [
        ("3", "current"),
        ("2", "previous, unrestored"),
    ]
    # Said after the table too, with what lets it go: an operator need not read roles.
    assert (blank, kept) == (
        "",
        "kept as unrestored: generation 2, which a start could not restore (or a pointer"
        " made anew found, its record lost); retention keeps"
        " it until `statemigrate forget-unrestored` lets it go",
    )
    listed = json.loads(run(capsys, "list", url, "--json", *store_options(s3)).out)
    assert [(row["generation"], row["role"], row["roles"]) for row in listed["generations"]] == [
        (3, "current", ["current"]),
        (2, "previous", ["previous", "unrestored"]),
    ]
    assert listed["unrestored"] == [2]


def test_list_kinds_tells_a_damaged_generation_from_a_snapshot(
    s3: S3Server, capsys: pytest.CaptureFixture[str]
) -> None:
    """Objects the pointer does not record (an older generation, an object no commit
    won) cut short are ``damaged``, where their first bytes made them ``snapshot``;
    a recorded one that differs from its commit fails the digest check its changed
    etag sends it to, as ``inspect`` would."""
    url = f"s3://{new_bucket(s3)}/gateway"
    commit_generations(url, 3, keep=3, **s3.options())
    store = ObjectStore(url, **s3.options())
    objects, backend = {ref.generation: ref for ref in store.generations()}, store._backend

    def put(name: str, data: bytes) -> None:
        obstore.put(backend.store, backend.key(name), data)

    older, previous = bytes(objects[1].open()), bytes(objects[2].open())
    put(objects[1].describe().removeprefix(f"{url}/"), older[: len(older) - 100])
    flipped = bytearray(previous)
    flipped[-80] ^= 0x01
    put(objects[2].describe().removeprefix(f"{url}/"), bytes(flipped))
    put(f"generations/{4:020d}.{'0' * 32}", older[:40])  # a writer cut off mid-upload
    result = run(capsys, "list", url, "--kinds", *store_options(s3))
    assert result.code == 0, result.err
    rows = [re.split(r"\s{2,}", line) for line in result.out.splitlines()[3:]]
    assert [(row[0], row[-1]) for row in rows] == [
        ("4", "damaged (truncated)"),
        ("3", "snapshot"),
        ("2", "unreadable"),
        ("1", "damaged (truncated)"),
    ]
    listed = json.loads(run(capsys, "list", url, "--kinds", "--json", *store_options(s3)).out)
    by_generation = {row["generation"]: row for row in listed["generations"]}
    assert by_generation[1]["damage"] == "truncated"
    assert by_generation[1]["error"].startswith("truncated: snapshot is cut short")
    assert by_generation[2]["error"].endswith(
        "was replaced after it was committed (etag and xxh3-128 digest differ)"
    )
    assert "damage" not in by_generation[3] and "error" not in by_generation[3]


@pytest.mark.slow
def test_kinds_of_a_copied_generation_are_judged_after_its_digest(s3: S3Server) -> None:
    """Copying a prefix re-parts a multipart generation: its etag is not the one its
    commit recorded, so the ranges conditional on it are refused. Such a generation
    alone is read whole and checked by its digest: the same bytes are a snapshot,
    other bytes under the new etag are unreadable, as ``inspect`` says."""
    data = random.Random(2).randbytes(11 << 20)
    blob = encode_snapshot(
        [SectionInput("blobs", "main", 1, "", data)], producer=PRODUCER
    ).to_bytes()
    store = ObjectStore(f"s3://{new_bucket(s3)}/gateway", **s3.options())
    entry = store.commit(blob).entry
    assert entry is not None and entry.etag is not None and entry.etag.endswith('-3"')
    key = store._backend.key(entry.object)
    obstore.put(store._backend.store, key, blob, chunk_size=8 << 20)  # as a copy writes it
    (ref,) = store.generations()
    assert kind_of_generation(ref) == {"kind": "snapshot", "pieces": None}
    changed = bytearray(blob)
    changed[len(blob) // 2] ^= 1  # inside a chunk, where only the digest can see it
    obstore.put(store._backend.store, key, bytes(changed), chunk_size=8 << 20)
    (ref,) = store.generations()
    found = kind_of_generation(ref)
    assert found["kind"] == "unreadable"
    assert found["error"].endswith("(etag and xxh3-128 digest differ)")


def test_list_marks_a_committed_object_that_is_gone(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with scratch_dir() as path:
        url = f"file://{path}/app"
        commit_generations(url, 2)
        current = ObjectStore(url).ref().entry
        assert current is not None
        os.unlink(f"{path}/app/{current.object}")
        result = run(capsys, "list", url)
        assert result.code == 0, result.err
        assert result.out.splitlines()[3].split()[-4:] == ["-", "current", "(object", "missing)"]


def test_list_and_inspect_say_when_the_pointer_is_missing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With the pointer deleted, the generation objects are listed as "no pointer"
    (not as objects no commit won), inspecting the store says how to restore one,
    and URL#N still reads generation N."""
    with scratch_dir() as path:
        url = f"file://{path}/app"
        commit_generations(url, 3)
        os.unlink(f"{path}/app/current")
        result = run(capsys, "list", url)
        assert result.code == 0, result.err
        assert [line.split()[-2:] for line in result.out.splitlines()[3:]] == [
            ["no", "pointer"],
            ["no", "pointer"],
        ]
        line = one_error_line(run(capsys, "inspect", url))
        assert "app/current: is missing, but 2 generation objects are present" in line
        assert "URL#3" in line
        assert run(capsys, "inspect", f"{url}#3").code == 0


def test_list_and_inspect_by_number_go_on_when_the_pointer_is_damaged(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """A pointer that is not ours is the one thing a listing cannot read: the objects
    are listed with roles unknown and one warning line that says how to repair,
    URL#N still reads generation N (the store's digest check skipped, said in the
    log, in the output and in --json), and what needs the pointer (URL,
    forget-unrestored) is one line saying to delete it."""
    with scratch_dir() as path:
        url = f"file://{path}/app"
        commit_generations(url, 3)
        intact = run(capsys, "inspect", f"{url}#3")
        assert intact.code == 0 and "checked" not in intact.out
        origin = json.loads(run(capsys, "inspect", f"{url}#3", "--json").out)["object"]
        assert origin["store_digest_checked"] is True
        assert origin["store_digest_skipped"] is None
        with open(f"{path}/app/current", "wb") as pointer:
            pointer.write(b'{"format": "statemig')
        for kinds in ([], ["--kinds"]):
            result = run(capsys, "list", url, *kinds)
            assert result.code == 0, result.err
            rows = [line.split() for line in result.out.splitlines()[3:]]
            assert [row[0] for row in rows] == ["3", "2"]
            # SIZE is two words (3.1 KiB): the role and the kind are counted from the end
            assert [row[-1 - len(kinds)] for row in rows] == ["unknown", "unknown"]
            if kinds:
                assert [row[-1] for row in rows] == ["snapshot", "snapshot"]
            (warning,) = result.err.splitlines()
            assert warning.startswith("statemigrate: warning: open ")
            assert "app/current: is not a valid pointer" in warning
            assert "delete it to repair" in warning
            assert warning.endswith("roles unknown until it is deleted")

        listed = run(capsys, "list", url, "--json")
        assert listed.code == 0, listed.err
        document = json.loads(listed.out)
        assert document["pointer"] == "damaged"
        assert "delete it to repair" in document["pointer_error"]
        rows = document["generations"]
        assert [(row["generation"], row["role"], row["roles"]) for row in rows] == [
            (3, "unknown", ["unknown"]),
            (2, "unknown", ["unknown"]),
        ]

        caplog.clear()
        inspected = run(capsys, "inspect", f"{url}#3", "--verify")
        assert inspected.code == 0, inspected.err
        assert "(generation 3)" in inspected.out
        assert "read without the store's digest check" in caplog.text
        (checked,) = [line for line in inspected.out.splitlines() if line.startswith("checked")]
        assert checked.startswith(
            "checked    not against the store's digest (the snapshot's own checks still"
            " apply): open file://"
        )
        assert "app/current: is not a valid pointer" in checked
        origin = json.loads(run(capsys, "inspect", f"{url}#3", "--json").out)["object"]
        assert origin["store_digest_checked"] is False
        assert "app/current: is not a valid pointer" in origin["store_digest_skipped"]

        for argv in (["inspect", url], ["forget-unrestored", url], ["inspect", f"{url}#previous"]):
            line = one_error_line(run(capsys, *argv))
            assert "app/current: is not a valid pointer" in line
            assert line.endswith(
                "delete it to repair: the generation objects stay, the store numbers past them,"
                " and the next commit keeps them all as unrestored, since this pointer may have"
                " recorded some (docs/stores.md, 'A missing pointer')"
            )


def test_list_of_a_damaged_pointer_and_no_generation_is_the_pointers_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with scratch_dir() as path:
        os.mkdir(f"{path}/app")
        with open(f"{path}/app/current", "wb") as pointer:
            pointer.write(b"[]")
        line = one_error_line(run(capsys, "list", f"file://{path}/app"))
        assert "app/current: is not a valid pointer" in line and "delete it to repair" in line


FIFO_COMMANDS = [
    ["list", "URL"],
    ["list", "URL", "--kinds"],
    ["list", "URL", "--json"],
    ["inspect", "URL"],
    ["inspect", "URL#2"],
    ["inspect", "URL#unrestored"],
    ["forget-unrestored", "URL"],
]


@pytest.mark.parametrize("argv", FIFO_COMMANDS, ids=" ".join)
def test_a_fifo_at_the_pointer_is_a_damaged_pointer_never_opened(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A FIFO with no writer at a file:// store's pointer once made every command wait
    for ever, out of reach of Ctrl-C: it is refused unopened, as a pointer not ours is
    (listing and URL#N go on, what needs the pointer is one line)."""
    with scratch_dir() as path:
        url = f"file://{path}/app"
        commit_generations(url, 2)
        with watched_fifo(path / "app" / "current") as watch:
            result = run(capsys, *[part.replace("URL", url) for part in argv])
        assert not watch.opened
        said = "is not a valid pointer (a FIFO, not a regular file); delete it to repair"
        if argv[0] == "list":
            assert result.code == 0, result.err
            if "--json" in argv:
                assert said in json.loads(result.out)["pointer_error"]
            else:
                (warning,) = result.err.splitlines()
                assert said in warning
        elif argv[1] == "URL#2":
            assert result.code == 0, result.err
            assert "meta       n=2" in result.out
        else:
            assert said in one_error_line(result)


@pytest.mark.parametrize(
    "argv", [argv for argv in FIFO_COMMANDS if argv[1] != "URL#unrestored"], ids=" ".join
)
@pytest.mark.parametrize("kind", ["FIFO", "directory"])
def test_a_generation_object_that_is_no_regular_file_is_refused_unopened(
    kind: str, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A FIFO (or a directory) in place of the object the pointer names is refused by
    what reads it, in one line, and never opened."""
    with scratch_dir() as path:
        url = f"file://{path}/app"
        commit_generations(url, 2)
        current = ObjectStore(url).ref().entry
        assert current is not None
        place = path / "app" / current.object
        if kind == "directory":
            place.unlink()
            place.mkdir()
            result = run(capsys, *[part.replace("URL", url) for part in argv])
            opened = False
        else:
            with watched_fifo(place) as watch:
                result = run(capsys, *[part.replace("URL", url) for part in argv])
            opened = watch.opened
        assert not opened
        if argv[:2] == ["inspect", "URL"] or argv[1] == "URL#2":
            line = one_error_line(result)
            assert line.endswith(
                f"open {url}/{current.object}: is a {kind}, not a regular file; refusing it"
            )
        else:
            assert result.code == 0, result.err


# -- forget-unrestored ------------------------------------------------------------------


def test_forget_unrestored_lets_retention_delete_the_kept_generations(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The generations a failed start kept are named as they are let go; the next
    commit's retention deletes them; run again, it says none is kept."""
    with scratch_dir() as path:
        url = f"file://{path}/app"
        service = commit_generations(url, 2)
        store = ObjectStore(url)
        store.keep_unread()  # what a start that could not read the store asks
        for _ in range(3):
            service.commit(store)
        assert [ref.role for ref in store.generations()][:2] == ["unrestored", "unrestored"]

        result = run(capsys, "forget-unrestored", url)
        assert result.code == 0, result.err
        assert result.out == (
            f"{url}: generations 1, 2 no longer kept as unrestored; the next commit's"
            " retention deletes them, unless they are among the generations `keep` holds\n"
        )
        service.commit(store)
        assert [ref.generation for ref in ObjectStore(url).generations()] == [5, 6]

        again = run(capsys, "forget-unrestored", url, "--json")
        assert again.code == 0, again.err
        assert json.loads(again.out) == {"location": url, "forgotten": []}
        # Indented with sorted keys, as every command's --json
        assert again.out == json.dumps(json.loads(again.out), indent=2, sort_keys=True) + "\n"
        none = run(capsys, "forget-unrestored", url)
        assert none.out == f"{url}: no generation is kept as unrestored\n"


def test_forget_unrestored_of_a_directory_says_which_file_to_remove(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A TmpfsStore keeps one copy, a file: the refusal names it and how to let it go,
    and nothing is removed."""
    store = TmpfsStore(tmp_path / "app")
    store.keep_unrestored(b"the state a start could not restore")
    kept = tmp_path / "app" / "unrestored"
    line = one_error_line(run(capsys, "forget-unrestored", str(tmp_path / "app")), code=2)
    assert line.startswith(
        "statemigrate: error: forget-unrestored is for object stores (s3://, gs://, az://,"
        " file://, memory://)"
    )
    assert f"keeps the snapshot a start could not restore as the file {kept}" in line
    assert line.endswith(f"remove it: `rm {kept}`")
    assert kept.exists()
    kept.unlink()
    line = one_error_line(run(capsys, "forget-unrestored", str(tmp_path / "app")), code=2)
    assert line.endswith("is a directory with no unrestored file: nothing is kept there")
    store.close()


def test_forget_unrestored_of_one_generation_speaks_of_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One generation let go is "it", not "them"."""
    with scratch_dir() as path:
        url = f"file://{path}/app"
        service = commit_generations(url, 1)
        store = ObjectStore(url)
        store.keep_unread()
        service.commit(store)
        result = run(capsys, "forget-unrestored", url)
        assert result.code == 0, result.err
        assert result.out == (
            f"{url}: generation 1 no longer kept as unrestored; the next commit's"
            " retention deletes it, unless it is among the generations `keep` holds\n"
        )


def test_forget_unrestored_of_an_empty_store_is_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with scratch_dir() as path:
        os.mkdir(f"{path}/empty")
        line = one_error_line(run(capsys, "forget-unrestored", f"file://{path}/empty"))
        assert line.endswith("empty/current: no snapshot has been committed")
        line = one_error_line(run(capsys, "forget-unrestored", f"file://{path}/missing"), 1)
        assert line.endswith("missing: no such directory")


@pytest.mark.parametrize(
    "pair", ["bogus=1", "keep=1", "max_size=-1", "part_size=1", "timeout=5", "retries=0"]
)
def test_a_store_option_a_file_url_does_not_take_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], pair: str
) -> None:
    """A file:// store takes no settings, of obstore's or the store's timeouts and
    retries (it sends no requests): a key given for one is refused, naming it, as an
    s3:// URL's unknown key is, before anything is read (it was ignored, with status 0)."""
    with scratch_dir() as path:
        url = f"file://{path}/app"
        ObjectStore(url).commit(b"snapshot")
        for command in ("list", "inspect", "forget-unrestored"):
            line = one_error_line(run(capsys, command, url, "--store-option", pair), 2)
            key = pair.split("=")[0]
            assert line == (
                f"statemigrate: error: argument --store-option: {key!r} is not a setting of"
                " file:// URLs, which take none (obstore's settings, the timeouts and"
                " retries are for s3://, gs:// and az:// URLs)"
            )
        assert run(capsys, "list", url).code == 0


@pytest.mark.parametrize(
    ("url", "what"),
    [
        ("s3://bucket/app", "obstore's S3Config keys such as endpoint, region and access_key_id"),
        ("gs://bucket/app", "obstore's GCSConfig keys such as service_account and"),
        ("az://container/app", "obstore's AzureConfig keys such as account_name"),
    ],
)
def test_a_store_option_obstore_does_not_take_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], url: str, what: str
) -> None:
    """An s3://, gs:// or az:// URL's unknown key is refused as a file:// URL's is: one
    line naming it and what is allowed, status 2 (it was obstore's words, status 1)."""
    scheme = url.split("://")[0]
    for command in ("list", "inspect", "forget-unrestored"):
        line = one_error_line(run(capsys, command, url, "--store-option", "bogus=1"), 2)
        assert line.startswith(
            f"statemigrate: error: argument --store-option: 'bogus' is not a setting of"
            f" {scheme}:// URLs ({what}"
        )
        assert line.endswith(
            "client options such as allow_http and proxy_url); or the store's timeout,"
            " connect_timeout, retry_timeout and retries"
        )


# -- migrate -----------------------------------------------------------------------------


def test_migrate_reads_and_writes_object_urls(
    s3: S3Server,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """URL to URL (the output is that prefix's next generation), URL to file, and file
    to URL; each result inspects with the versions asked for."""
    environment_for(s3, monkeypatch)
    bucket = new_bucket(s3)
    source, target = f"s3://{bucket}/gateway", f"s3://{bucket}/gateway-v1"
    commit_generations(source, 2)
    result = run(
        capsys,
        "migrate",
        f"{source}#previous",
        "-o",
        target,
        "--to",
        "kvcache=1",
        "--allow-lossy",
        *REGISTRY,
    )
    assert result.code == 0, result.err
    assert result.out.splitlines()[-1].startswith(f"wrote {target} generation 1 (")
    shown = run(capsys, "inspect", target, "--json")
    info = json.loads(shown.out)
    assert [section["version"] for section in info["sections"]] == [1]
    assert info["meta"]["n"] == "1" and "migrated_from" in info["meta"]

    local = tmp_path / "gateway-v1.smsnap"
    back = run(capsys, "migrate", target, "-o", str(local), "--to", "kvcache=3", *REGISTRY)
    assert back.code == 0, back.err
    again = run(
        capsys,
        "migrate",
        str(local),
        "-o",
        target,
        "--to",
        "kvcache=1",
        "--allow-lossy",
        *REGISTRY,
    )
    assert again.code == 0, again.err
    assert f"wrote {target} generation 2 (" in again.out
    assert "(generation 2, current)" in run(capsys, "inspect", target).out


def test_migrate_to_a_generation_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A commit always makes the next generation; the output names none, and nothing
    is written when it does."""
    with scratch_dir() as path:
        source = f"file://{path}/app"
        commit_generations(source, 1)
        line = one_error_line(
            run(
                capsys,
                "migrate",
                source,
                "-o",
                f"{source}-out#3",
                "--to",
                "kvcache=1",
                "--allow-lossy",
                *REGISTRY,
            )
        )
        assert line.endswith("a commit makes the next generation: give the URL without #...")
        assert not os.path.exists(f"{path}/app-out")


# -- one line for every bad input --------------------------------------------------------


@pytest.mark.slow
def test_an_unreachable_server_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    for command in ("inspect", "list"):
        line = one_error_line(
            run(
                capsys,
                command,
                "s3://bucket/app",
                "--store-option",
                f"endpoint={dead}",
                "--store-option",
                "allow_http=true",
                "--store-option",
                "region=us-east-1",
                "--store-option",
                "access_key_id=k",
                "--store-option",
                "secret_access_key=s",
            )
        )
        assert "cannot reach the server" in line


def fault_options(endpoint: str, *more: str) -> list[str]:
    given = [f"endpoint={endpoint}", "allow_http=true", *(f"{k}={v}" for k, v in KEYS.items())]
    return [part for pair in (*given, *more) for part in ("--store-option", pair)]


def test_a_server_error_is_one_line_with_its_status_and_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A 503 SlowDown answer: its status and S3's code, not obstore's raw message;
    retry_timeout=0 on the command line stops the retries (one request in all)."""
    with failing_server(503, "Slow Down", "SlowDown") as server:
        line = one_error_line(
            run(capsys, "list", "s3://snapshots/app",
                *fault_options(server.endpoint, "retry_timeout=0"))
        )
        assert line == (
            "statemigrate: error: open s3://snapshots/app/current: the store answered 503 Service"
            " Unavailable (SlowDown): the server is overloaded and asks for fewer requests;"
            " not retried"
        )
        assert server.requests == 1
        line = one_error_line(
            run(capsys, "inspect", "s3://snapshots/app",
                *fault_options(server.endpoint, "retries=2"))
        )
        assert "(SlowDown)" in line and line.endswith(" s") and "retried 2 times" in line
        assert server.requests == 4


def test_a_hung_server_is_no_answer_within_the_timeout_given_in_seconds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--store-option timeout=0.1 (plain seconds, as in Python) and retries=0 bound the
    wait; the line says the server gave no answer, not that it was out of reach."""
    with hung_server() as server:
        for command in ("list", "inspect"):
            line = one_error_line(
                run(capsys, command, "s3://snapshots/app",
                    *fault_options(server.endpoint, "timeout=0.1", "retries=0"))
            )
            assert re.search(
                rf": no answer from 127\.0\.0\.1:{server.port} within [0-9.]+ s \(1 request\)",
                line,
            ), line


def test_the_stores_timeouts_and_retries_are_taken_on_the_command_line(
    s3: S3Server, capsys: pytest.CaptureFixture[str]
) -> None:
    """timeout, connect_timeout, retry_timeout and retries, in seconds or with a unit,
    set the store's own arguments rather than reaching obstore as configuration."""
    url = f"s3://{new_bucket(s3)}/gateway"
    commit_generations(url, 1, **s3.options())
    for timeouts in (
        {"timeout": "3", "connect_timeout": "2.5", "retry_timeout": "5", "retries": "1"},
        {"timeout": "3s", "connect_timeout": "500ms", "retry_timeout": "1m"},
    ):
        result = run(capsys, "inspect", url, *store_options(s3, **timeouts))
        assert result.code == 0, result.err


def test_a_bad_timeout_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    line = one_error_line(
        run(capsys, "list", "s3://snapshots/app", "--store-option", "timeout=soon"), 2
    )
    assert line.endswith(
        "argument --store-option: timeout: must be seconds (3, 2.5) or a duration"
        " (500ms, 3s, 2m), more than 0 and at most a day, not 'soon'"
    )


def test_a_missing_bucket_is_one_line(s3: S3Server, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["inspect", "s3://no-such-bucket/app"], ["list", "s3://no-such-bucket/app"]):
        line = one_error_line(run(capsys, *argv, *store_options(s3)))
        assert "the bucket or container does not exist (NoSuchBucket)" in line


def test_no_current_pointer_is_one_line(s3: S3Server, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"s3://{new_bucket(s3)}/empty"
    line = one_error_line(run(capsys, "inspect", url, *store_options(s3)))
    assert line == f"statemigrate: error: open {url}/current: no snapshot has been committed"
    line = one_error_line(run(capsys, "inspect", f"{url}#previous", *store_options(s3)))
    assert line.endswith("no snapshot has been committed")
    line = one_error_line(run(capsys, "list", url, *store_options(s3)))
    assert line == f"statemigrate: error: list {url}: no snapshot has been committed"


def test_wrong_credentials_are_one_line(s3: S3Server, capsys: pytest.CaptureFixture[str]) -> None:
    """With moto checking signatures: the right keys read, a wrong secret and an unknown
    key id are each one line naming S3's error code."""
    url = f"s3://{new_bucket(s3)}/gateway"
    commit_generations(url, 1, **s3.options())
    client = {
        "endpoint_url": s3.endpoint,
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    iam = boto3.client("iam", **client)
    user = f"reader-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=user)
    iam.put_user_policy(
        UserName=user,
        PolicyName="s3",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
            }
        ),
    )
    key = iam.create_access_key(UserName=user)["AccessKey"]
    good = {"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]}
    s3.set_auth(True)
    try:
        assert run(capsys, "inspect", url, *store_options(s3, **good)).code == 0
        for wrong, code in [
            ({**good, "secret_access_key": "wrong"}, "SignatureDoesNotMatch"),
            (
                {"access_key_id": "AKIAUNKNOWNKEY000000", "secret_access_key": "x"},
                "InvalidAccessKeyId",
            ),
        ]:
            for command in ("inspect", "list"):
                line = one_error_line(run(capsys, command, url, *store_options(s3, **wrong)))
                assert f"access denied ({code})" in line
    finally:
        s3.set_auth(False)


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["inspect", "URL#"], 2, FRAGMENTS),
        (["inspect", "URL#0"], 2, FRAGMENTS),
        (["inspect", "URL#-1"], 2, FRAGMENTS),
        (["inspect", "URL#\u00b2"], 2, FRAGMENTS),
        (["inspect", "URL#" + "9" * 21], 2, FRAGMENTS),
        (["inspect", "URL#7"], 1, "there is no generation 7 (kept: 1, 2)"),
        (["inspect", "URL#Previous"], 2, "expected URL#current"),
        (["inspect", "memory://"], 1, "a memory:// store is private to one process"),
        (["inspect", "ftp://host/x"], 1, "unsupported URL"),
        (["inspect", "s3://[bucket/x"], 1, "not a valid URL"),
        (["inspect", "file://relative/x"], 1, "a file:// URL needs an absolute path"),
        (["inspect", "MISSING"], 1, "no such directory"),
        (["inspect", "FILE"], 1, "/a-file: is a file, not a directory"),
        (["list", "FILE"], 1, "/a-file: is a file, not a directory"),
        (["list", "FIFO"], 1, "/a-fifo: is not a directory"),
        (["list", "MISSING"], 1, "/missing: no such directory"),
        (
            ["inspect", "s3://bucket/x", "--store-option", "no_such_key=1"],
            2,
            "argument --store-option: 'no_such_key' is not a setting of s3:// URLs",
        ),
        (["inspect", "URL", "--store-option", "novalue"], 2, "expected KEY=VALUE"),
        (["inspect", "URL", "--store-option", "=x"], 2, "expected KEY=VALUE"),
        (["list", "URL#2"], 2, "names no generation; give it without #"),
        (["list", "memory://"], 1, "a memory:// store is private to one process"),
    ],
)
def test_bad_urls_and_options_are_one_line(
    argv: list[str], code: int, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with scratch_dir() as path:
        url = f"file://{path}/app"
        commit_generations(url, 2)
        (path / "a-file").write_bytes(b"")
        os.mkfifo(path / "a-fifo")
        places = {
            "URL": url,
            "MISSING": f"file://{path}/missing",
            "FILE": f"file://{path}/a-file",
            "FIFO": f"file://{path}/a-fifo",
        }
        argv = [
            re.sub(r"^(URL|MISSING|FILE|FIFO)", lambda m: places[m.group(1)], part) for part in argv
        ]
        line = one_error_line(run(capsys, *argv), code)
        assert message in line
        assert not os.path.exists(f"{path}/missing")  # reading never creates a directory


def test_a_generation_number_may_have_any_number_of_leading_zeros(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with scratch_dir() as path:
        url = f"file://{path}/app"
        commit_generations(url, 2)
        result = run(capsys, "inspect", f"{url}#{'0' * 5000}1")
        assert result.code == 0, result.err
        assert "meta       n=1" in result.out


@pytest.fixture(scope="module")
def file_store() -> Iterator[str]:
    """A file:// store with two generations, which the property test only reads."""
    with scratch_dir() as path:
        url = f"file://{path}/app"
        commit_generations(url, 2)
        yield url


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    fragment=st.one_of(
        st.sampled_from(["", "#", "#1", "#2", "#3", "#current", "#previous", "#01", "#x"]),
        st.text(max_size=10).map(lambda text: "#" + text),
    ),
    options=st.lists(
        st.one_of(
            st.sampled_from(["allow_http=true", "region=x", "bogus=1", "=", "a", "timeout=1s"]),
            st.text(max_size=12),
        ),
        max_size=3,
    ),
    command=st.sampled_from(["inspect", "list"]),
)
def test_any_fragment_or_store_option_keeps_the_contract(
    fragment: str,
    options: list[str],
    command: str,
    capsys: pytest.CaptureFixture[str],
    file_store: str,
) -> None:
    """For any fragment and any --store-option values on a file:// store, the command
    line exits 0 with output, or 1 or 2 (a usage error) with one error line."""
    argv = [command, file_store + fragment]
    for option in options:
        argv += ["--store-option", option]
    result = run(capsys, *argv)
    if result.code == 0:
        assert result.out and result.err == ""
    else:
        one_error_line(result, result.code if result.code == 2 else 1)


# -- Azure Blob Storage (Azurite): opt-in ------------------------------------------------

if AZURITE:

    @pytest.mark.azurite
    @pytest.mark.parametrize("settings_from", ["environment", "--store-option"])
    def test_inspect_and_list_read_az_urls(
        azurite: Azurite,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
        settings_from: str,
    ) -> None:
        """inspect and list on an az:// URL, with the account, key, endpoint and
        allow_http from the AZURE_* variables or from --store-option."""
        url = azurite.place().url
        commit_generations(url, 3, keep=3, **azurite.options())
        given = {
            "account_name": ACCOUNT,
            "access_key": ACCOUNT_KEY,
            "endpoint": azurite.endpoint,
            "allow_http": "true",
        }
        options: list[str] = []
        if settings_from == "environment":
            for name, value in zip(
                ["AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_ACCOUNT_KEY",
                 "AZURE_STORAGE_ENDPOINT", "AZURE_ALLOW_HTTP"],
                given.values(),
                strict=True,
            ):
                monkeypatch.setenv(name, value)
        else:
            options = [
                part for item in given.items() for part in ("--store-option", "=".join(item))
            ]
        shown = run(capsys, "inspect", f"{url}#previous", "--verify", *options)
        assert shown.code == 0, shown.err
        assert "(generation 2, previous)" in shown.out.splitlines()[0]
        assert "meta       n=2" in shown.out and "verified" in shown.out
        listed = run(capsys, "list", url, *options)
        assert listed.code == 0, listed.err
        rows = [line.split() for line in listed.out.splitlines()[3:]]
        assert [(row[0], row[-1]) for row in rows] == [
            ("3", "current"), ("2", "previous"), ("1", "older")
        ]
        missing = run(capsys, "list", "az://no-such-container/app", *options)
        assert "the bucket or container does not exist (ContainerNotFound)" in one_error_line(
            missing
        )
