"""ObjectStore on Azure Blob Storage and Google Cloud Storage: settings and errors
without a server; with STATEMIGRATE_AZURITE=1, Azure's conditional requests, errors,
settings from the environment and a keyed service through an az:// URL on Azurite.
No GCS emulator on PyPI or npm serves obstore's GCS client (see docs/stores.md)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import obstore
import pytest
from _store_helpers import scratch_dir
from _store_helpers.azurite import ACCOUNT, ACCOUNT_KEY, AZURITE, Azurite
from _store_helpers.conditions import assert_enforces_conditions
from _store_helpers.object_server import free_port
from _store_helpers.payload import make_payload

from statemigrate import Service, StoreError
from statemigrate.reference import KVCacheV3, build_registry
from statemigrate.stores import ObjectStore

FAIL_FAST: dict[str, Any] = {"retries": 0, "timeout": 5.0, "connect_timeout": 2.0}
GOOD = make_payload(1, 2_000)


@pytest.fixture(autouse=True)
def no_cloud_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test says where its settings come from: none leak in from the caller."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "AZURE_", "AZURITE_", "GOOGLE_")):
            monkeypatch.delenv(name)


@pytest.fixture
def gcs_account() -> Iterator[Path]:
    """A service-account file that points obstore's GCS client at a server on loopback
    without OAuth, as one points it at an emulator."""
    with scratch_dir() as path:
        account = path / "gcs.json"
        account.write_text(json.dumps({
            "gcs_base_url": f"http://127.0.0.1:{free_port()}",
            "disable_oauth": True,
            "client_email": "",
            "private_key": "",
            "private_key_id": "",
        }))
        yield account


def test_the_gcs_emulator_settings_send_requests_to_the_base_url(gcs_account: Path) -> None:
    """A service-account file with gcs_base_url and disable_oauth sends every request
    to that URL, unsigned: with nothing listening there, the error names it."""
    base_url = json.loads(gcs_account.read_text())["gcs_base_url"]
    store = ObjectStore(
        "gs://snapshots/app",
        config={"service_account": str(gcs_account)},
        client_options={"allow_http": True},
        **FAIL_FAST,
    )
    for action in (store.open, lambda: store.commit(GOOD)):
        with pytest.raises(StoreError) as info:
            action()
        assert info.value.detail.startswith("cannot reach the server")
        assert f"GET {base_url}/snapshots/app%2Fcurrent" in info.value.detail


@pytest.mark.parametrize("scheme", ["az", "gs"])
def test_a_plain_http_endpoint_without_allow_http_names_the_backends_variable(
    scheme: str, gcs_account: Path
) -> None:
    """The error for an http:// endpoint without allow_http names the environment
    variable of the URL's backend, not S3's."""
    if scheme == "az":
        url, variable = "az://snapshots/app", "AZURE_ALLOW_HTTP=true"
        config = {
            "account_name": ACCOUNT,
            "access_key": ACCOUNT_KEY,
            "endpoint": f"http://127.0.0.1:{free_port()}/{ACCOUNT}",
        }
    else:
        url, variable = "gs://snapshots/app", "GOOGLE_ALLOW_HTTP=true"
        config = {"service_account": str(gcs_account)}
    store = ObjectStore(url, config=config, **FAIL_FAST)
    with pytest.raises(StoreError) as info:
        store.commit(GOOD)
    assert "allow_http is not set" in info.value.detail
    assert variable in info.value.detail and "AWS_" not in info.value.detail


def test_a_deleted_object_is_missing_when_its_conditional_get_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Azure (Azurite, at least) answers a GET with If-Match for a blob that is gone
    with 412, where S3 answers 404: opening a deleted generation says it is missing
    all the same, with the digest recorded (current) or not (an older generation)."""

    class PreconditionError(Exception):
        """Named as obstore names the error of a 412."""

    real_get = obstore.get

    def get_as_azure_does(store: Any, path: str, *, options: Any = None) -> Any:
        if options and options.get("if_match"):
            try:
                obstore.head(store, path)
            except FileNotFoundError:
                raise PreconditionError("412 Precondition Failed: ConditionNotMet") from None
        return real_get(store, path, options=options)

    store = ObjectStore("memory://", keep=3)
    for number in (1, 2, 3):
        store.commit(make_payload(number, 700))
    monkeypatch.setattr(obstore, "get", get_as_azure_does)
    for ref in (store.ref(1), store.ref()):
        obstore.delete(store._backend.store, store._backend.key(ref._target.object))
        with pytest.raises(StoreError, match=r"is missing \(deleted after its commit\?\)"):
            ref.open()


# -- Azure Blob Storage (Azurite): opt-in -----------------------------------------------

if AZURITE:

    @pytest.mark.azurite
    def test_azurite_enforces_the_conditional_writes_the_store_relies_on(
        azurite: Azurite,
    ) -> None:
        """Against Azurite, obstore's create-only put is refused when the blob exists
        (If-None-Match: *), an update with a stale etag is refused (If-Match), and a GET
        with a stale If-Match is refused: what the store's commit and reads rely on."""
        raw = azurite.place().store()._backend.store
        assert_enforces_conditions(raw)

    @pytest.mark.azurite
    def test_a_missing_container_and_a_wrong_key_are_named(azurite: Azurite) -> None:
        options = azurite.options()
        missing = ObjectStore("az://no-such-container/app", **options, **FAIL_FAST)
        wrong_key = ObjectStore(
            azurite.place().url,
            config={**options["config"], "access_key": "d3Jvbmcga2V5"},
            client_options={"allow_http": True},
            **FAIL_FAST,
        )
        for action in (missing.open, lambda: missing.commit(GOOD)):
            with pytest.raises(StoreError, match=r"container does not exist \(ContainerNotFound\)"):
                action()
        for action in (wrong_key.open, lambda: wrong_key.commit(GOOD)):
            with pytest.raises(StoreError, match=r"access denied \(AuthorizationFailure\)"):
                action()

    @pytest.mark.azurite
    @pytest.mark.parametrize("how", ["account and endpoint", "use_emulator"])
    def test_settings_come_from_the_azure_environment(
        azurite: Azurite, monkeypatch: pytest.MonkeyPatch, how: str
    ) -> None:
        """With only a URL, the account, key and endpoint come from the AZURE_*
        variables (AZURE_ALLOW_HTTP for a plain-http endpoint included), or
        AZURE_STORAGE_USE_EMULATOR and AZURITE_BLOB_STORAGE_URL name the emulator."""
        if how == "use_emulator":
            variables = {
                "AZURE_STORAGE_USE_EMULATOR": "true",
                "AZURITE_BLOB_STORAGE_URL": azurite.endpoint.removesuffix(f"/{ACCOUNT}"),
            }
        else:
            variables = {
                "AZURE_STORAGE_ACCOUNT_NAME": ACCOUNT,
                "AZURE_STORAGE_ACCOUNT_KEY": ACCOUNT_KEY,
                "AZURE_STORAGE_ENDPOINT": azurite.endpoint,
                "AZURE_ALLOW_HTTP": "true",
            }
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        url = azurite.place().url
        ObjectStore(url, **FAIL_FAST).commit(GOOD)
        assert ObjectStore(url, **azurite.options()).open() == GOOD

    @pytest.mark.azurite
    def test_a_keyed_service_commits_and_restores_through_an_az_url(
        azurite: Azurite,
    ) -> None:
        """Service.commit and Service.restore on az://: the restored state is the one
        committed, and the previous generation restores too."""
        registry = build_registry()
        place = azurite.place()
        key = b"an azure key of 16+ bytes"
        writer = Service("gateway", key=key, registry=registry)
        cache = KVCacheV3()
        writer.register(cache)
        for value in ("first", "second"):
            cache.set("user:1", value)
            writer.commit(place.store())
        choices: list[tuple[Literal["current", "previous"], str]] = [
            ("current", "second"), ("previous", "first")
        ]
        for which, value in choices:
            reader = Service("gateway", key=key, registry=registry)
            restored = KVCacheV3()
            reader.register(restored)
            reader.restore(place.store().ref(which))
            assert restored.get("user:1") == value
