"""docs/kubernetes.md runs as written: against moto's S3 server its glue restores, starts
cold with the reason logged, and restores across an upgrade, a rollback and a roll
forward; its service answers the probes and exports on preStop; its Deployment agrees
with both."""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import obstore
import pytest
import yaml
from _store_helpers.object_server import KEYS, S3Server, free_port

import statemigrate as sm
from statemigrate.reference import SCHEMAS, KVCacheV2, KVCacheV3, build_registry
from statemigrate.stores import ObjectStore

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "kubernetes.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)
KEY = b"kubernetes recipe key, from a Secret"


def blocks(language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(DOC.read_text()) if lang == language]


def module_source(name: str) -> str:
    (source,) = [body for body in blocks("python") if body.startswith(f"# file: {name}\n")]
    return source


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The doc's modules as files, and the older release's migrations."""
    path = tmp_path_factory.mktemp("kubernetes")
    for name in ("gateway_state.py", "gateway_main.py"):
        (path / name).write_text(module_source(name))
    (path / "key").write_bytes(KEY + b"\n")
    old = path / "migrations-release-a"
    old.mkdir()
    shutil.copy(REPO / "migrations" / "kvcache_0001_add_ttl.py", old)
    return path


@pytest.fixture(scope="module")
def glue(folder: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("gateway_state", folder / "gateway_state.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def base(s3: S3Server) -> str:
    bucket = f"k8s-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(bucket)
    return f"s3://{bucket}/prod"


def release_a(folder: Path) -> tuple[sm.Service, KVCacheV2]:
    """The older release: kvcache version 2, knowing nothing of version 3."""
    registry = sm.Registry()
    for version in (1, 2):
        registry.add_schema("kvcache", version, SCHEMAS[version])
    registry.load_migrations(folder / "migrations-release-a")
    service = sm.Service("gateway", key=KEY, registry=registry)
    cache = KVCacheV2()
    service.register(cache)
    return service, cache


def release_b() -> tuple[sm.Service, KVCacheV3]:
    """The newer release: kvcache version 3."""
    service = sm.Service("gateway", key=KEY, registry=build_registry())
    cache = KVCacheV3()
    service.register(cache)
    return service, cache


def test_every_python_block_is_one_of_the_two_modules_tested_here() -> None:
    assert [body.splitlines()[0] for body in blocks("python")] == [
        "# file: gateway_state.py", "# file: gateway_main.py",
    ]


def test_a_pod_with_nothing_to_restore_starts_cold_and_says_why(
    glue: ModuleType, base: str, s3: S3Server, caplog: pytest.LogCaptureFixture
) -> None:
    service, cache = release_b()
    with caplog.at_level(logging.INFO, logger="gateway.state"):
        assert glue.restore_at_start(service, base, **s3.options()) is False
    assert caplog.messages == [
        f"cold start: {base}/latest: open {base}/latest/current: no snapshot has been committed"
    ]
    assert len(cache) == 0


def test_a_restarted_pod_restores_what_the_stopped_one_exported(
    glue: ModuleType, base: str, s3: S3Server, caplog: pytest.LogCaptureFixture
) -> None:
    """Export on stop writes latest and the export for the release before; the next
    pod of the same release restores latest."""
    old, cache = release_b()
    cache.set("session:1", "alice")
    with caplog.at_level(logging.INFO, logger="gateway.state"):
        glue.export_at_stop(old, base, seconds=30, **s3.options())
    assert [message.split(": ")[0] for message in caplog.messages] == [
        f"exported to {base}/latest", f"exported to {base}/kvcache-2",
    ]
    new, restored = release_b()
    assert glue.restore_at_start(new, base, **s3.options()) is True
    assert restored.get("session:1") == "alice"
    assert ObjectStore(f"{base}/kvcache-2", **s3.options()).ref().generation == 1


def test_upgrade_rollback_and_roll_forward_each_restore_the_newest_state(
    glue: ModuleType, folder: Path, base: str, s3: S3Server
) -> None:
    """The table of docs/kubernetes.md, step by step: every pod restores the state the
    pod before it exported, whichever release either runs."""
    options = s3.options()
    a, a_cache = release_a(folder)
    a_cache.set("k", "written by A")
    glue.export_at_stop(a, base, seconds=30, **options)  # release A has nothing older

    b, b_cache = release_b()  # upgrade: latest is v2, B upgrades it
    assert glue.restore_at_start(b, base, **options)
    assert b_cache.get("k") == "written by A"
    b_cache.set("k", "written by B")
    glue.export_at_stop(b, base, seconds=30, **options)

    back, back_cache = release_a(folder)  # rollback: latest is v3, unknown to A
    assert glue.restore_at_start(back, base, **options)
    assert back_cache.get("k") == "written by B"
    back_cache.set("k", "written by A again")
    glue.export_at_stop(back, base, seconds=30, **options)

    forward, forward_cache = release_b()  # roll forward: not B's stale kvcache-3 data
    assert glue.restore_at_start(forward, base, **options)
    assert forward_cache.get("k") == "written by A again"


def test_a_damaged_or_unsigned_latest_is_a_cold_start_not_an_older_state(
    glue: ModuleType, folder: Path, base: str, s3: S3Server, caplog: pytest.LogCaptureFixture
) -> None:
    """When latest fails for any reason but being newer than the code, the pod starts
    cold rather than restore the export a newer release left long ago."""
    options = s3.options()
    b, b_cache = release_b()
    b_cache.set("k", "old state")
    glue.export_at_stop(b, base, seconds=30, **options)  # leaves kvcache-2 behind
    a, a_cache = release_a(folder)
    a_cache.set("k", "newer state")
    glue.export_at_stop(a, base, seconds=30, **options)
    latest = ObjectStore(f"{base}/latest", **options)
    entry = latest.ref().entry
    assert entry is not None
    raw = latest._backend
    damaged = bytearray(latest.open())
    damaged[-1] ^= 1
    obstore.put(raw.store, raw.key(entry.object), bytes(damaged))
    fresh, fresh_cache = release_a(folder)
    with caplog.at_level(logging.WARNING, logger="gateway.state"):
        assert glue.restore_at_start(fresh, base, **options) is False
    assert "was replaced after it was committed" in caplog.messages[-1]
    assert fresh_cache.get("k") is None

    unsigned = sm.Service("gateway", registry=build_registry())  # someone without the key
    unsigned.register(KVCacheV2())
    unsigned.commit(latest)
    with caplog.at_level(logging.WARNING, logger="gateway.state"):
        assert glue.restore_at_start(release_a(folder)[0], base, **options) is False
    assert "auth" in caplog.messages[-1]


def test_negative_control_a_glue_that_always_falls_back_restores_stale_state(
    folder: Path, base: str, s3: S3Server, tmp_path: Path
) -> None:
    """The same damaged latest, with a glue that tries the older export whatever the
    failure: it restores the state a newer release left behind, which the test above
    would refuse."""
    source = module_source("gateway_state.py")
    broken_source = source.replace("                break  #", "                continue  #")
    assert broken_source != source
    (tmp_path / "broken_state.py").write_text(broken_source)
    spec = importlib.util.spec_from_file_location("broken_state", tmp_path / "broken_state.py")
    assert spec is not None and spec.loader is not None
    broken = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(broken)
    options = s3.options()
    b, b_cache = release_b()
    b_cache.set("k", "old state")
    broken.export_at_stop(b, base, seconds=30, **options)
    sm.Service("gateway", registry=build_registry()).commit(  # unsigned: refused
        ObjectStore(f"{base}/latest", **options)
    )
    fresh, fresh_cache = release_a(folder)
    assert broken.restore_at_start(fresh, base, **options) is True
    assert fresh_cache.get("k") == "old state"


def test_an_export_past_its_deadline_is_skipped_and_logged(
    glue: ModuleType, base: str, s3: S3Server, caplog: pytest.LogCaptureFixture
) -> None:
    service, _ = release_b()
    with caplog.at_level(logging.INFO, logger="gateway.state"):
        glue.export_at_stop(service, base, seconds=0, **s3.options())
    assert caplog.messages == [f"export to {base}/latest skipped: the deadline has passed"]
    assert ObjectStore(f"{base}/latest", **s3.options()).generations() == []


@pytest.mark.slow
def test_an_export_to_a_bucket_that_never_answers_ends_at_its_deadline(
    glue: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    """The deadline bounds the whole export, not each request: a commit makes several
    requests, and one left running at the deadline is left behind."""
    service, _ = release_b()
    with socket.create_server(("127.0.0.1", 0)) as silent:  # connects, never answers
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        options = {
            "config": {"endpoint": endpoint, **KEYS},
            "client_options": {"allow_http": True},
            # Past the deadline, then gone without a word: nothing is left to log into
            # the tests after this one.
            "timeout": 6,
            "retries": 0,
            "warn_after": None,
        }
        with caplog.at_level(logging.INFO, logger="gateway.state"):
            glue.export_at_stop(service, "s3://silent/prod", seconds=2.5, **options)
    assert caplog.messages == [
        "export to s3://silent/prod/latest did not finish by the deadline; the pod stops"
    ]


def test_a_failed_export_is_logged_and_the_next_one_tried(
    glue: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    service, _ = release_b()
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    options = {
        "config": {"endpoint": endpoint, **KEYS},
        "client_options": {"allow_http": True},
        "retries": 0,
    }
    with caplog.at_level(logging.INFO, logger="gateway.state"):
        glue.export_at_stop(service, "s3://gone/prod", seconds=30, **options)
    assert [message.split(": ")[0] for message in caplog.messages] == [
        "export to s3://gone/prod/latest failed", "export to s3://gone/prod/kvcache-2 failed",
    ]


def test_the_statefulset_agrees_with_the_service() -> None:
    """The preStop and probe paths are the service's, the export's deadline is inside
    the grace period, the key file is on the Secret's volume, and each pod commits
    under a prefix named after it (one writer per prefix), which a StatefulSet keeps
    across restarts and rollouts."""
    (workload,) = [document for body in blocks("yaml") for document in [yaml.safe_load(body)]]
    assert workload["kind"] == "StatefulSet"
    spec = workload["spec"]
    assert spec["updateStrategy"]["type"] == "RollingUpdate"
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    env = {item["name"]: item["value"] for item in container["env"] if "value" in item}
    (pod_name,) = [item for item in container["env"] if item["name"] == "POD_NAME"]
    assert pod_name["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["STATE_URL"].endswith("/$(POD_NAME)")
    assert 0 < float(env["STATE_EXPORT_SECONDS"]) < pod["terminationGracePeriodSeconds"]
    main = module_source("gateway_main.py")
    assert container["lifecycle"]["preStop"]["httpGet"]["path"] == "/-/export"
    assert container["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    assert '"/-/export"' in main and '"/-/ready"' in main
    (mount,) = container["volumeMounts"]
    (volume,) = pod["volumes"]
    assert volume["name"] == mount["name"] and "secretName" in volume["secret"]
    assert env["STATEMIGRATE_KEY_FILE"].startswith(mount["mountPath"] + "/")


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.slow
def test_the_service_restores_then_is_ready_and_exports_on_prestop(
    folder: Path, base: str, s3: S3Server
) -> None:
    """gateway_main.py as a process, with the bucket's settings in its environment:
    it restores the previous pod's export, turns ready, and its preStop endpoint
    commits the state as the next generation of latest."""
    previous, cache = release_b()
    cache.set("user:7", "restored")
    previous.commit(ObjectStore(f"{base}/latest", **s3.options()))
    port = free_port()
    environment: dict[str, Any] = {
        **os.environ,
        "PYTHONPATH": str(folder), "PORT": str(port), "STATE_URL": base,
        "STATEMIGRATE_KEY_FILE": str(folder / "key"), "STATE_EXPORT_SECONDS": "30",
        "AWS_ENDPOINT_URL": s3.endpoint, "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
    }
    process = subprocess.Popen(
        [sys.executable, str(folder / "gateway_main.py")], env=environment,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        status = 0
        for _ in range(600):  # until the pod is ready (or the process died)
            assert process.poll() is None, process.communicate()
            try:
                status = _get(f"http://127.0.0.1:{port}/-/ready")
            except OSError:
                status = 0  # not listening yet
            if status == 200:
                break
            time.sleep(0.1)
        assert status == 200
        assert _get(f"http://127.0.0.1:{port}/-/export") == 200
        assert _get(f"http://127.0.0.1:{port}/-/ready") == 503  # out of the endpoints
    finally:
        process.kill()
        process.communicate()
    latest = ObjectStore(f"{base}/latest", **s3.options())
    assert latest.ref().generation == 2
    after, restored = release_b()
    after.restore(latest.ref())
    assert restored.get("user:7") == "restored"
