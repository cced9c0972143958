"""Service: registration, snapshots, commits, restore sources, policy, reports, logging, keys."""

from __future__ import annotations

import gc
import json
import logging
import weakref
from typing import Annotated, Any, TypeVar, assert_type, get_type_hints

import pytest
from pydantic import Field
from restore_children.components import (
    Counters,
    Failpoints,
    Fault,
    Tags,
    build_registry,
    canonical,
    exports,
    set_state,
)
from typing_extensions import TypedDict

from statemigrate import (
    CommitReport,
    ConfigurationError,
    ExportError,
    LossyMigrationError,
    MemoryStore,
    NoMigrationPathError,
    RegistrationError,
    Registry,
    RestoreError,
    Service,
    SnapshotError,
    SourceTypeError,
    StateMigrateError,
    StoreError,
    TmpfsStore,
    UnknownComponentError,
    migratable,
    open_snapshot,
)
from statemigrate._runtime._service import GENERATION_LIMIT, choose_versions
from statemigrate._snapshot._encode import SectionInput, encode_snapshot
from statemigrate._snapshot._header import Producer
from statemigrate.reference import KVCacheV1, KVCacheV2, KVCacheV3
from statemigrate.reference import build_registry as reference_registry

REGISTRY = build_registry()
PHASES = ["read", "verify", "decode", "migrate", "validate", "apply"]
KEY = b"0123456789abcdef-key"
V1_STATE = {"entries": {"a": "1", "b": "2"}}


def kv1(state: dict[str, Any] = V1_STATE) -> KVCacheV1:
    cache = KVCacheV1()
    set_state(cache, REGISTRY, state)
    return cache


def kv3(hits: int = 7) -> KVCacheV3:
    cache = KVCacheV3()
    set_state(
        cache, REGISTRY, {"entries": {"live": {"data": "x", "expires_at": 1.5, "hits": hits}}}
    )
    return cache


def service(*objs: object, **kw: Any) -> Service:
    made = Service("svc", registry=kw.pop("registry", REGISTRY), **kw)
    for obj in objs:
        made.register(obj)
    return made


# --- construction and membership ------------------------------------------------------


def test_a_service_and_its_restored_state_go_with_their_last_reference() -> None:
    """No reference cycle holds a Service: with the collector off, it and the state it
    restored are freed as soon as the caller drops them. In a cycle they would wait
    for a full collection, and a restore moves everything to the oldest generation,
    so a replaced Service's state could live on beside its successor's."""
    store = MemoryStore()
    service(kv1()).commit(store)
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        restored = service(KVCacheV1())
        restored.restore(store.open())
        gone = weakref.ref(restored)
        del restored
        assert gone() is None
    finally:
        if was_enabled:
            gc.enable()


@pytest.mark.parametrize(
    ("args", "kw", "option", "detail"),
    [
        (("",), {}, "name", "1..200 characters, not 0"),
        (("x" * 201,), {}, "name", "1..200 characters, not 201"),
        ((b"svc",), {}, "name", "a str, not bytes"),
        (("svc",), {"key": b"short"}, "key", "at least 16 bytes"),
        (("svc",), {"limits": 5}, "limits", "a DecodeLimits or None, not int"),
        (("svc",), {"limits": {"max_sections": 1}}, "limits", "or None, not dict"),
    ],
    ids=["empty name", "long name", "bytes name", "short key", "int limits", "dict limits"],
)
def test_bad_constructor_arguments_are_refused_with_an_error_of_the_tree(
    args: tuple[Any], kw: dict[str, Any], option: str, detail: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Service(*args, **kw)
    error = caught.value
    assert isinstance(error, StateMigrateError) and isinstance(error, ValueError)
    assert error.option == option and detail in error.detail
    assert str(error) == f"{option}: {error.detail}"
    assert "short" not in str(error)  # the key itself is never shown


def test_unregistering_an_unknown_component_names_what_is_registered() -> None:
    svc = service(KVCacheV3())
    with pytest.raises(UnknownComponentError) as caught:
        svc.unregister("kvcache", instance="b")
    assert isinstance(caught.value, KeyError)  # as before, for callers that catch that
    assert str(caught.value) == "unknown component 'kvcache/b'; registered: kvcache/default"
    svc.unregister("kvcache")
    with pytest.raises(UnknownComponentError, match="registered: none"):
        svc.unregister("kvcache")


def test_unregistering_the_object_rather_than_its_name_is_one_line() -> None:
    cache = KVCacheV3()
    svc = service(cache)
    expected = "^component: must be a name \\(a str\\), not KVCacheV3"
    with pytest.raises(ConfigurationError, match=expected):
        svc.unregister(cache)  # type: ignore[arg-type]
    assert len(svc.components) == 1


def test_register_returns_its_argument_typed_as_it_is() -> None:
    """``cache = service.register(Cache())`` is typed as ``Cache`` (a type variable
    binds the argument's type to the result), not as ``object``."""
    cache = KVCacheV3()
    registered = Service("svc", registry=REGISTRY).register(cache)
    assert_type(registered, KVCacheV3)  # for a type checker run over the tests
    assert registered is cache
    hints = get_type_hints(Service.register)
    assert isinstance(hints["obj"], TypeVar) and hints["return"] is hints["obj"]


def test_register_keeps_order_and_refuses_duplicates_and_strangers() -> None:
    svc = Service("svc", registry=REGISTRY)
    first, second = KVCacheV3(), KVCacheV3()
    assert svc.register(first, instance="a") is first
    svc.register(second, instance="b")
    svc.register(Counters())
    assert [e.key for e in svc.components] == ["kvcache/a", "kvcache/b", "counters/default"]
    assert svc.versions() == {"kvcache": 3, "counters": 2}
    with pytest.raises(RegistrationError, match="already registered"):
        svc.register(KVCacheV3(), instance="a")
    with pytest.raises(RegistrationError, match="not a migratable"):
        svc.register(object())
    with pytest.raises(RegistrationError, match="instance name"):
        svc.register(KVCacheV3(), instance="")
    svc.unregister("kvcache", instance="b")
    assert [e.key for e in svc.components] == ["kvcache/a", "counters/default"]
    with pytest.raises(UnknownComponentError):
        svc.unregister("kvcache", instance="b")


def test_registering_the_class_instead_of_an_instance_is_refused() -> None:
    """The class carries the mark too, so it was registered; its unbound export_state
    then failed every snapshot with a bare TypeError, and every restore."""
    svc = Service("svc", registry=REGISTRY)
    with pytest.raises(RegistrationError) as caught:
        svc.register(KVCacheV3)
    assert str(caught.value) == (
        "KVCacheV3 is a class; register an instance of it: register(KVCacheV3(...))"
    )
    assert svc.components == ()


@pytest.mark.parametrize("instance", [5, None, b"pages"], ids=repr)
def test_an_instance_name_that_is_no_str_is_refused(instance: Any) -> None:
    """Before, ``instance=5`` raised ``TypeError: object of type 'int' has no len()``."""
    svc = Service("svc", registry=REGISTRY)
    with pytest.raises(RegistrationError) as caught:
        svc.register(KVCacheV3(), instance=instance)
    assert str(caught.value) == (
        f"instance name must be a str of 1..200 characters, not {type(instance).__qualname__}"
    )
    assert svc.components == ()


@pytest.mark.parametrize("name", ["gate\nFORGED ERROR line", "a\u2028b", "nul\x00"], ids=repr)
def test_a_service_name_with_a_control_character_is_refused(name: str) -> None:
    with pytest.raises(ConfigurationError, match="a service name must be printable"):
        Service(name, registry=REGISTRY)
    assert Service("gateway ünïcode", registry=REGISTRY).name == "gateway ünïcode"


@pytest.mark.parametrize("instance", ["a\nb", "tab\there", "bell\x07"], ids=repr)
def test_an_instance_name_with_a_control_character_is_refused(instance: str) -> None:
    # Shown in log lines: a newline would forge a line of its own.
    svc = Service("svc", registry=REGISTRY)
    with pytest.raises(RegistrationError, match="instance name must be printable"):
        svc.register(KVCacheV3(), instance=instance)
    assert svc.components == ()
    svc.register(KVCacheV3(), instance="pages ünïcode")  # spaces and letters are fine


def test_a_snapshot_whose_component_export_raises_is_an_export_error() -> None:
    """The component's own error went out raw, though snapshot() documents ExportError
    for a state that cannot be written; it stays chained."""

    class Broken(Counters):
        def export_state(self) -> Any:
            raise RuntimeError("export boom\nsecond line")

    svc = service(kv3(), Broken())
    with pytest.raises(ExportError) as caught:
        svc.snapshot()
    error = caught.value
    assert isinstance(error.__cause__, RuntimeError)
    assert (error.component, error.version, error.path) == ("counters", 2, "(root)")
    assert str(error) == (
        "counters version 2 cannot be snapshotted: at (root):"
        " export_state() raised RuntimeError: export boom"
    )
    with pytest.raises(ExportError):
        svc.commit(MemoryStore())


def test_register_fails_at_once_for_a_version_without_a_schema() -> None:
    @migratable("kvcache", version=9)
    class Future:
        entries: dict[str, str] = {}

    with pytest.raises(UnknownComponentError):
        Service("svc", registry=REGISTRY).register(Future())


def test_readable_versions_lists_every_version_with_a_path() -> None:
    svc = service(KVCacheV1(), Counters())
    assert svc.readable_versions() == {"kvcache": [1, 2, 3], "counters": [1, 2]}
    lonely = Registry()
    lonely.add_schema("tags", 1, dict[str, Any])
    lonely.add_schema("tags", 2, dict[str, Any])

    @migratable("tags", version=2)
    class Two:
        def export_state(self) -> dict[str, Any]:
            return {}

        def import_state(self, state: dict[str, Any]) -> None: ...

    assert service(Two(), registry=lonely).readable_versions() == {"tags": [2]}


def test_choose_versions_prefers_the_live_version_then_the_highest_common_one() -> None:
    assert choose_versions({"a": 3}, {"a": [1, 2, 3]}, {"a": [1, 2, 3]}) == {"a": 3}
    assert choose_versions({"a": 3}, {"a": [1, 2]}, {"a": [1, 2, 3]}) == {"a": 2}
    assert choose_versions({"a": 3}, {"a": [1, 2]}, {"a": [1, 3]}) == {"a": 1}
    with pytest.raises(ValueError, match="a: this process has v3, successor reads \\[1\\]"):
        choose_versions({"a": 3, "b": 1}, {"a": [1], "b": [1]}, {"a": [3]})
    with pytest.raises(ValueError, match="a: this process has v3, successor reads nothing"):
        choose_versions({"a": 3}, {"a": []}, {"a": [3]})
    # A component the successor does not know is sent as it is, for it to carry.
    assert choose_versions({"a": 3, "q": 1}, {"a": [3]}, {"a": [3], "q": [1]}) == {"a": 3, "q": 1}


# --- snapshot -------------------------------------------------------------------------


def test_snapshot_reports_its_sections_sizes_and_growing_generations() -> None:
    svc = service(kv3(), Counters())
    encoded, report = svc.snapshot(meta={"deploy": "blue"})
    blob = encoded.to_bytes()
    assert report.size == encoded.size == len(blob)
    assert [(s.component, s.instance, s.version) for s in report.sections] == [
        ("kvcache", "default", 3),
        ("counters", "default", 2),
    ]
    header = open_snapshot(blob).header
    assert [s.raw_size for s in report.sections] == [s.raw_size for s in header.sections]
    assert [s.stored_size for s in report.sections] == [s.stored_size for s in header.sections]
    assert all(
        s.chunks == len(h.chunks) for s, h in zip(report.sections, header.sections, strict=True)
    )
    assert header.meta == {"deploy": "blue"}
    assert header.producer.service == "svc"
    assert report.snapshot_id == header.snapshot_id
    assert [report.generation, svc.snapshot()[1].generation, svc.snapshot()[1].generation] == [
        1,
        2,
        3,
    ]
    assert set(report.timings) == {"export", "migrate", "encode"}
    json.dumps(report.to_plain())


def test_snapshot_with_a_target_writes_the_older_version_and_leaves_live_state_alone() -> None:
    cache = kv3()
    svc = service(cache)
    live = exports(svc)
    encoded, report = svc.snapshot(targets={"kvcache": 1}, allow_lossy=True)
    assert report.sections[0].version == 1
    assert report.sections[0].steps == ("kvcache 3 -> 1 (downgrade_3_to_1)",)
    assert exports(svc) == live  # the steps got a copy, not the live entries
    older = service(KVCacheV1())
    older.restore(encoded.to_bytes())
    assert exports(older)["kvcache/default"] == canonical({"entries": {"live": "x"}})


def test_snapshot_targets_that_cannot_be_reached_are_refused() -> None:
    svc = service(kv3())
    with pytest.raises(LossyMigrationError):
        svc.snapshot(targets={"kvcache": 1})
    with pytest.raises(NoMigrationPathError):
        svc.snapshot(targets={"kvcache": 9}, allow_lossy=True)


# --- commit and restore sources -------------------------------------------------------


def test_commit_and_restore_through_a_memory_store() -> None:
    store = MemoryStore(name="m")
    committed = service(kv1()).commit(store, meta={"why": "test"})
    assert isinstance(committed, CommitReport)
    assert committed.describe() == "memory:m"
    assert committed.snapshot.size == len(store.open())
    assert "memory:m" in committed.summary()
    reader = service(KVCacheV2())
    report = reader.restore(committed)
    assert report.components[0].steps == ("kvcache 1 -> 2 (add_ttl)",)
    assert reader.restore(committed.ref).skipped is True


def test_commit_and_restore_through_a_tmpfs_store(tmp_path: Any) -> None:
    with TmpfsStore(tmp_path / "snapshots") as store:
        committed = service(kv1()).commit(store)
        reader = service(KVCacheV3())
        report = reader.restore(committed)
        assert report.size == committed.snapshot.size
    upgraded = {
        k: {"data": v, "expires_at": None, "hits": 0} for k, v in V1_STATE["entries"].items()
    }
    assert exports(reader)["kvcache/default"] == canonical({"entries": upgraded})


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_restore_accepts_any_bytes_like_source(kind: type) -> None:
    blob = service(kv1()).snapshot()[0].to_bytes()
    reader = service(KVCacheV1())
    reader.restore(kind(blob))
    assert exports(reader)["kvcache/default"] == canonical(V1_STATE)


def test_restore_and_start_from_take_what_snapshot_returns() -> None:
    encoded, _ = service(kv1()).snapshot()
    reader = service(KVCacheV1())
    reader.restore(encoded)
    assert exports(reader)["kvcache/default"] == canonical(V1_STATE)
    starting = service(KVCacheV1())
    assert starting.start_from(encoded) is not None
    assert exports(starting)["kvcache/default"] == canonical(V1_STATE)


@pytest.mark.parametrize("source", ["snapshots/latest.smsnap", 42, [b"parts"]])
def test_a_source_restore_cannot_read_is_a_type_error_of_the_tree(source: Any) -> None:
    reader = service(kv3())
    before = exports(reader)
    with pytest.raises(SourceTypeError) as caught:
        reader.restore(source)
    with pytest.raises(SourceTypeError):
        reader.start_from(source)
    error = caught.value
    assert isinstance(error, TypeError) and isinstance(error, StateMigrateError)
    assert error.value is source
    assert str(error) == (
        "source: a snapshot source is bytes, the encoded snapshot Service.snapshot()"
        " returns first, a store reference or a CommitReport, not"
        f" {type(source).__qualname__}"
    )
    assert exports(reader) == before
    assert reader.status.state == "starting"


def test_the_pair_snapshot_returns_is_refused_with_the_way_to_pass_it() -> None:
    # "a snapshot source is ... what Service.snapshot() returns ... not tuple" was
    # given for just what snapshot() returns.
    writer = service(kv3())
    pair = writer.snapshot()
    reader = service(kv3())
    with pytest.raises(SourceTypeError) as caught:
        reader.restore(pair)  # type: ignore[arg-type]
    assert str(caught.value).endswith(
        "not the (encoded, report) pair Service.snapshot() returns; give its first item:"
        " encoded, report = service.snapshot(), then restore(encoded)"
    )
    assert reader.status.state == "starting"
    reader.restore(pair[0])


def test_a_memoryview_that_is_not_contiguous_is_a_source_type_error() -> None:
    """Accepted as a memoryview, it failed later with a raw TypeError of the cast."""
    blob = service(kv1()).snapshot()[0].to_bytes()
    strided = memoryview(blob * 2)[::2]
    reader = service(KVCacheV1())
    before = exports(reader)
    with pytest.raises(SourceTypeError) as caught:
        reader.restore(strided)
    assert str(caught.value).endswith(
        "not a memoryview that is not contiguous (bytes() copies it)"
    )
    assert exports(reader) == before
    assert reader.status.state == "starting"


def test_a_store_that_cannot_open_fails_in_read_and_changes_nothing() -> None:
    class Gone:
        def open(self) -> bytes:
            raise StoreError("open", "memory:gone", "no snapshot has been committed")

        def describe(self) -> str:
            return "memory:gone"

    reader = service(kv3())
    before = exports(reader)
    with pytest.raises(RestoreError) as caught:
        reader.restore(Gone())
    assert caught.value.phase == "read"
    assert isinstance(caught.value.__cause__, StoreError)
    assert exports(reader) == before


def test_restoring_advances_the_generation_of_later_snapshots() -> None:
    writer = service(kv1())
    for _ in range(4):
        encoded, _ = writer.snapshot()
    assert encoded.header.generation == 4
    reader = service(KVCacheV1())
    reader.restore(encoded.to_bytes())
    assert reader.snapshot()[1].generation == 5


# --- refused snapshots: another service's, a generation no count reaches ---------------


def _snapshot_of(name: str, *, generation: int = 1) -> bytes:
    """A snapshot of ``V1_STATE`` as service ``name`` at ``generation`` would write it."""
    section = SectionInput(
        "kvcache", "default", 1, REGISTRY.schema_for("kvcache", 1).fingerprint, V1_STATE
    )
    encoded = encode_snapshot([section], producer=Producer.current(name), generation=generation)
    return encoded.to_bytes()


def test_a_snapshot_of_another_service_is_refused_unless_allowed() -> None:
    blob = _snapshot_of("billing")
    reader = service(kv1({"entries": {"live": "x"}}))
    before = exports(reader)
    with pytest.raises(RestoreError) as caught:
        reader.restore(blob)
    assert caught.value.phase == "verify"
    assert "service 'billing', not 'svc'" in str(caught.value)
    assert "allow_other_service=True" in str(caught.value)
    assert exports(reader) == before
    assert not reader.restore(blob, allow_other_service=True).skipped
    assert exports(reader)["kvcache/default"] == canonical(V1_STATE)


@pytest.mark.parametrize("generation", [2**63 - 1, 2**62], ids=["format maximum", "limit"])
def test_a_generation_no_count_reaches_is_refused_and_snapshots_go_on(generation: int) -> None:
    """A snapshot claiming a generation snapshots cannot count up to (forged, or
    damaged before it was sealed) is refused, so the service's own counter stays
    usable: every later snapshot and commit works."""
    reader = service(kv1({"entries": {"live": "x"}}))
    before = exports(reader)
    with pytest.raises(RestoreError) as caught:
        reader.restore(_snapshot_of("svc", generation=generation))
    assert caught.value.phase == "verify"
    assert f"generation {generation} " in str(caught.value)
    assert exports(reader) == before
    assert [reader.snapshot()[1].generation for _ in range(2)] == [1, 2]
    assert reader.commit(MemoryStore()).snapshot.generation == 3


def test_the_highest_generation_accepted_leaves_room_for_more_snapshots() -> None:
    assert GENERATION_LIMIT == 2**62  # half the header's range (generations < 2**63)
    reader = service(KVCacheV1())
    reader.restore(_snapshot_of("svc", generation=GENERATION_LIMIT - 1))
    assert exports(reader)["kvcache/default"] == canonical(V1_STATE)
    generations = [reader.commit(MemoryStore()).snapshot.generation for _ in range(3)]
    assert generations == [GENERATION_LIMIT + n for n in range(3)]


# --- restoring a snapshot again ---------------------------------------------------------

COUNTS = {"counts": {"hits": 3, "misses": 1}, "total": 4}


def counters(state: dict[str, Any] | None = None, **kw: Any) -> Counters:
    made = Counters(**kw)
    set_state(made, REGISTRY, state or {"counts": {}, "total": 0})
    return made


def test_restoring_again_restores_only_the_components_registered_since() -> None:
    """Idempotence is per component: a component registered after a restore is restored
    from the same snapshot, while those already restored from it are left alone."""
    blob = service(kv1(), counters(COUNTS)).snapshot()[0].to_bytes()
    cache = KVCacheV1()
    reader = service(cache)
    assert reader.restore(blob).unknown == ("counters/default",)
    cache.set("changed", "since")  # a second restore must not undo this
    late = counters()
    reader.register(late)
    second = reader.restore(blob)
    assert not second.skipped
    assert [c.component for c in second.components] == ["counters"]
    assert second.already_restored == ("kvcache/default",)
    assert second.unknown == () and second.missing == ()
    assert "already restored: kvcache/default" in second.summary()
    assert exports(reader)["counters/default"] == canonical(COUNTS)
    assert cache.get("changed") == "since"
    third = reader.restore(blob)
    assert third.skipped and third.components == ()
    assert third.already_restored == ("kvcache/default", "counters/default")
    # A new instance under an unregistered name is a component not restored yet.
    reader.unregister("counters")
    fresh = counters()
    reader.register(fresh)
    assert [c.component for c in reader.restore(blob).components] == ["counters"]
    assert exports(reader)["counters/default"] == canonical(COUNTS)
    assert cache.get("changed") == "since"


def test_components_registered_since_are_restored_all_or_nothing() -> None:
    """When one of the components still to restore fails, the others of them are rolled
    back, the ones restored before are untouched, and a retry restores them all."""
    blob = service(kv1(), Tags(["t"], owner="me"), counters(COUNTS)).snapshot()[0].to_bytes()
    cache = KVCacheV1()
    reader = service(cache)
    reader.restore(blob)
    cache.set("changed", "since")
    fail = Failpoints()
    late_tags, late_counters = Tags(["live"], owner="ops"), counters(fail=fail)
    reader.register(late_tags)
    reader.register(late_counters)
    before = exports(reader)
    fail.arm("import", 0, Fault(ValueError))
    with pytest.raises(RestoreError) as caught:
        reader.restore(blob)
    assert (caught.value.phase, caught.value.component) == ("apply", "counters/default")
    assert caught.value.rollback_failed == ()
    assert exports(reader) == before
    fail.disarm()
    report = reader.restore(blob)
    assert [c.component for c in report.components] == ["tags", "counters"]
    assert (late_tags.tags, late_tags.owner) == (["t"], "me")
    assert exports(reader)["counters/default"] == canonical(COUNTS)
    assert cache.get("changed") == "since"


# --- policy for unknown sections and missing components --------------------------------


def test_unknown_sections_and_missing_components_are_reported_by_default() -> None:
    blob = service(kv1(), Counters()).snapshot()[0].to_bytes()
    cache, tags = KVCacheV1(), Tags(["keep"], owner="me")
    reader = service(cache, tags)
    tags_before = exports(reader)["tags/default"]
    report = reader.restore(blob)
    assert report.unknown == ("counters/default",)
    assert report.missing == ("tags/default",)
    assert [c.component for c in report.components] == ["kvcache"]
    assert exports(reader)["kvcache/default"] == canonical(V1_STATE)
    assert exports(reader)["tags/default"] == tags_before
    assert "not claimed: counters/default" in report.summary()
    assert "not in snapshot: tags/default" in report.summary()


@pytest.mark.parametrize("extra", ["unknown", "missing"])
@pytest.mark.parametrize("how", ["service", "call"])
def test_strict_mode_refuses_unknown_and_missing_without_touching_state(
    extra: str, how: str
) -> None:
    writers = [kv1()] + ([Counters()] if extra == "unknown" else [])
    blob = service(*writers).snapshot()[0].to_bytes()
    readers: list[object] = [kv3()] + ([Tags(["keep"])] if extra == "missing" else [])
    reader = service(*readers, strict=how == "service")
    before = exports(reader)
    with pytest.raises(RestoreError) as caught:
        reader.restore(blob, strict=True if how == "call" else None)
    assert caught.value.phase == "verify"
    name = "counters/default" if extra == "unknown" else "tags/default"
    assert name in str(caught.value)
    assert "strict" in str(caught.value)
    assert exports(reader) == before
    # The call's choice overrides the service's.
    assert reader.restore(blob, strict=False).skipped is False


# --- reports and logging --------------------------------------------------------------


def test_the_restore_report_has_every_phase_steps_and_sizes() -> None:
    writer = service(kv1(), Counters())
    encoded, written = writer.snapshot()
    blob = encoded.to_bytes()
    reader = service(KVCacheV2(), Counters())
    report = reader.restore(blob)
    assert list(report.timings) == PHASES
    assert all(seconds >= 0 for seconds in report.timings.values())
    assert report.size == len(blob)
    assert report.snapshot_id == written.snapshot_id
    assert report.generation == written.generation == 1
    kv, counters = report.components
    assert (kv.component, kv.instance, kv.source_version, kv.target_version) == (
        "kvcache", "default", 1, 2,
    )  # fmt: skip
    assert kv.steps == ("kvcache 1 -> 2 (add_ttl)",)
    assert counters.steps == ()
    assert [(c.raw_size, c.stored_size) for c in report.components] == [
        (s.raw_size, s.stored_size) for s in written.sections
    ]
    assert kv.fingerprint_matches and counters.fingerprint_matches
    plain = report.to_plain()
    assert json.loads(json.dumps(plain))["components"][0]["steps"] == ["kvcache 1 -> 2 (add_ttl)"]
    assert "1 steps" in report.summary() and "2 components" in report.summary()
    skipped = reader.restore(blob)
    assert skipped.skipped and list(skipped.timings) == ["read", "verify"]
    assert skipped.summary().endswith("skipped: already restored")


def test_snapshot_restore_skip_and_failure_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="statemigrate")
    writer = service(kv1())
    blob = writer.commit(MemoryStore()).open()
    reader = service(KVCacheV3())
    reader.restore(blob)
    reader.restore(blob)
    with pytest.raises(RestoreError):
        service(KVCacheV3(), key=KEY).restore(blob)  # no MAC: fails in verify
    with pytest.raises(RestoreError):
        service(kv3()).restore(blob[:-1])
    records = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "statemigrate"]
    # One line for the commit: the snapshot's, with the commit and the store added.
    snapshots = [m for _, m in records if m.startswith("snapshot ")]
    assert len(snapshots) == 1 and "-> memory:memory" in snapshots[0]
    restored = [m for level, m in records if level == "INFO" and m.startswith("restored ")]
    assert len(restored) == 1
    assert "1 components, 1 steps" in restored[0]
    assert all(phase in restored[0] for phase in PHASES)
    assert sum(m.endswith("skipped: already restored") for _, m in records) == 1
    reader_bad = service(kv3())
    with pytest.raises(RestoreError):
        _restore_with_failing_validation(reader_bad)
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 3
    assert "during verify" in errors[0] and "auth" in errors[0]
    assert "during verify" in errors[1] and "truncated" in errors[1]
    assert "during validate in kvcache/default" in errors[2]


def _restore_with_failing_validation(reader: Service) -> None:
    """Restore a v3 snapshot with a negative hit count into ``reader``."""
    forged = Registry()
    for version, type_ in ((1, dict[str, Any]), (2, dict[str, Any]), (3, dict[str, Any])):
        forged.add_schema("kvcache", version, type_)
    writer = Service("svc", code_version="forger", registry=forged)
    cache = KVCacheV3()
    cache.import_state({"entries": {"k": {"data": "v", "expires_at": None, "hits": -1}}})
    writer.register(cache)
    reader.restore(writer.snapshot()[0].to_bytes())


class _LooseEntryV3(TypedDict):
    data: str
    expires_at: Annotated[float, Field(allow_inf_nan=False)] | None
    hits: int  # no lower bound: a different schema under the same version number


class _LooseV3(TypedDict):
    entries: dict[str, _LooseEntryV3]


def test_a_schema_changed_without_a_version_bump_is_reported_and_warned(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="statemigrate")
    loose = reference_registry()
    other = Registry()
    for version in (1, 2):
        other.add_schema("kvcache", version, loose.schema_for("kvcache", version).type)
    other.add_schema("kvcache", 3, _LooseV3)
    writer = service(kv3(), registry=other)
    reader = service(KVCacheV3())
    report = reader.restore(writer.snapshot()[0].to_bytes())
    assert report.components[0].fingerprint_matches is False
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        "kvcache/default: snapshot schema fingerprint for version 3 differs from this code's;"
        " checking that this code reads the section back as written"
    ]


def test_a_version_this_code_has_no_schema_for_is_no_fingerprint_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Release-1 code restoring a version 2 snapshot through the downgrade step: there
    is no schema of version 2 here to differ from, so nothing is warned."""
    caplog.set_level(logging.DEBUG, logger="statemigrate")
    full = reference_registry()
    release1 = Registry()
    release1.add_schema("kvcache", 1, full.schema_for("kvcache", 1).type)
    down = next(s for s in full.steps("kvcache") if (s.source, s.target) == (2, 1))
    release1.add_migration(
        "kvcache", 2, 1, down.func, lossy=down.lost_fields, name=down.name, records=down.records
    )
    writer = service(KVCacheV2(), registry=full)
    reader = service(KVCacheV1(), registry=release1)
    report = reader.restore(writer.snapshot()[0], allow_lossy=True)
    assert report.components[0].steps == (str(down),)
    logged = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "statemigrate"]
    assert not [m for level, m in logged if level == "WARNING"]
    assert (
        "DEBUG",
        "kvcache/default: this code has no schema for the snapshot's version 2; its steps read it",
    ) in logged


# --- authentication -------------------------------------------------------------------


def test_an_authenticated_service_restores_its_own_snapshots() -> None:
    writer = service(kv1(), key=KEY)
    blob = writer.snapshot()[0].to_bytes()
    assert open_snapshot(blob, key=KEY).authenticated
    reader = service(KVCacheV1(), key=KEY)
    reader.restore(blob)
    assert exports(reader) == exports(writer)


@pytest.mark.parametrize(
    ("writer_key", "reader_key"),
    [(None, KEY), (b"another key of 20 b", KEY), (KEY, None)],
    ids=["unauthenticated", "wrong key", "reader without key"],
)
def test_snapshots_without_the_right_key_are_refused_in_verify(
    writer_key: bytes | None, reader_key: bytes | None
) -> None:
    blob = service(kv1(), key=writer_key).snapshot()[0].to_bytes()
    reader = service(kv3(), key=reader_key)
    before = exports(reader)
    with pytest.raises(RestoreError) as caught:
        reader.restore(blob)
    assert caught.value.phase == "verify"
    cause = caught.value.__cause__
    assert isinstance(cause, SnapshotError) and cause.kind == "auth"
    assert exports(reader) == before
