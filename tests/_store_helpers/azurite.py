"""For the object store's tests on Azure Blob Storage: Azurite, Microsoft's emulator
(``npm install -g azurite``), started on loopback with a free port, and places in it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from email.utils import formatdate
from typing import Any

from _store_helpers.object_server import HOST, Place, free_port
from statemigrate import StoreError

AZURITE = os.environ.get("STATEMIGRATE_AZURITE") == "1"
"""STATEMIGRATE_AZURITE=1 adds Azurite (``npm install -g azurite``) to the places the
object store is tested on; select those tests with ``-m azurite``."""

ACCOUNT = "devstoreaccount1"
# Azurite's well-known development account key, the same in every installation.
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
CONTAINER = "snapshots"
_API_VERSION = "2021-08-06"


class Azurite:
    """A running Azurite blob service: each :meth:`place` is a fresh prefix of its
    container ``snapshots``."""

    def __init__(self, port: int) -> None:
        self.endpoint = f"http://{HOST}:{port}/{ACCOUNT}"
        self.config = {
            "account_name": ACCOUNT,
            "access_key": ACCOUNT_KEY,
            "endpoint": self.endpoint,
        }

    def options(self) -> dict[str, Any]:
        """``config`` and ``client_options`` for an ObjectStore on this server."""
        return {"config": dict(self.config), "client_options": {"allow_http": True}}

    def place(self) -> Place:
        return Place("azurite", f"az://{CONTAINER}/{uuid.uuid4().hex[:12]}", self.options())

    def create_container(self, name: str) -> None:
        """Create a container; obstore has no call for that. Azurite checks every
        request's SharedKey signature, so this one is signed as the Blob service
        documents it."""
        date = formatdate(usegmt=True)
        path = f"/{ACCOUNT}/{name}"
        # Verb, eleven empty standard headers, the x-ms- headers, the resource.
        to_sign = "\n".join(
            ["PUT", *[""] * 11, f"x-ms-date:{date}", f"x-ms-version:{_API_VERSION}",
             f"/{ACCOUNT}{path}", "restype:container"]
        )
        digest = hmac.new(base64.b64decode(ACCOUNT_KEY), to_sign.encode(), hashlib.sha256)
        signature = base64.b64encode(digest.digest()).decode()
        request = urllib.request.Request(
            f"http://{self.endpoint.split('/')[2]}{path}?restype=container",
            method="PUT",
            headers={
                "x-ms-date": date,
                "x-ms-version": _API_VERSION,
                "Authorization": f"SharedKey {ACCOUNT}:{signature}",
                "Content-Length": "0",
            },
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 201


@contextmanager
def running_azurite() -> Iterator[Azurite]:
    """``azurite-blob`` on loopback only, its port chosen free, its data in memory,
    with the container ``snapshots``."""
    azurite = shutil.which("azurite-blob")
    assert azurite is not None, "STATEMIGRATE_AZURITE=1 needs `npm install -g azurite`"
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="statemigrate-azurite-") as scratch:
        with open(os.path.join(scratch, "log"), "wb") as log:
            server = subprocess.Popen(
                [azurite, "--blobHost", HOST, "--blobPort", str(port),
                 "--inMemoryPersistence", "--disableTelemetry", "--silent"],
                stdout=log, stderr=subprocess.STDOUT, cwd=scratch,
            )
            try:
                emulator = Azurite(port)
                _wait_until_serving(emulator, server)
                yield emulator
            finally:
                server.terminate()
                server.wait(timeout=60)


def _wait_until_serving(emulator: Azurite, server: subprocess.Popen[bytes]) -> None:
    for _ in range(240):
        assert server.poll() is None, "azurite-blob exited; see its log"
        try:
            emulator.create_container(CONTAINER)
        except OSError:  # not listening yet
            time.sleep(0.25)
            continue
        store = emulator.place().store(retries=0, timeout=5.0)
        try:
            store.commit(b"probe")
        except StoreError as exc:
            raise AssertionError(f"Azurite serves, but a commit failed: {exc}") from exc
        return
    raise AssertionError("azurite-blob did not serve within a minute")
