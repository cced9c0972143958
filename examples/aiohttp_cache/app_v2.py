"""A key-value cache served by aiohttp, release 2: entries may expire.

    PUT /cache/{key}[?ttl=SECONDS]   body = the value  -> 204 once stored
    GET /cache/{key}   -> 200 {"key": ..., "value": ..., "release": 2} | 404

Release 2 stores the cache in schema version 2, where each entry carries an expiry
deadline. Upgrading from release 1 migrates every entry (``expires_at=None``: never
expires); rolling back to release 1 drops the deadlines. See README.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from pathlib import Path

from aiohttp import web

import statemigrate as sm
from statemigrate.integrations.aiohttp import Trial, run_app
from statemigrate.reference import KVCacheV2, build_registry

RELEASE = 2


def build_app(cache: KVCacheV2) -> web.Application:
    async def put(request: web.Request) -> web.Response:
        ttl = request.query.get("ttl")
        try:
            seconds = float(ttl) if ttl is not None else None
        except ValueError:
            raise web.HTTPBadRequest(text="ttl must be a number of seconds\n") from None
        cache.set(request.match_info["key"], await request.text(), ttl=seconds)
        return web.Response(status=204)

    async def get(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        value = cache.get(key)
        if value is None:
            raise web.HTTPNotFound()
        return web.json_response({"key": key, "value": value, "release": RELEASE})

    app = web.Application()
    app.add_routes([web.put("/cache/{key}", put), web.get("/cache/{key}", get)])
    return app


def say(line: str) -> None:
    # One write per line: the releases share this stdout, and print() writes the
    # newline apart, so two releases' lines could mix.
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def trial(directory: Path | None) -> Trial | None:
    """Each successor on trial, reverted to this release's own file (not the app.py
    link, which points to the next release by then)."""
    if directory is None:
        return None
    argv = [sys.executable, os.path.realpath(__file__), *sys.argv[1:]]
    return Trial(directory=directory, argv=argv)


def main() -> None:
    parser = argparse.ArgumentParser(description="A key-value cache, release 2.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument("--pidfile", type=Path, help="each release writes its pid here")
    parser.add_argument(
        "--trial-dir", type=Path, help="put each upgrade on trial (statemigrate trial ...)"
    )
    args = parser.parse_args()
    logging.basicConfig(format="%(message)s")
    logging.getLogger("statemigrate").setLevel(logging.INFO)

    # Cache schema version 2: key -> {"value", "expires_at"}.
    cache = KVCacheV2()
    service = sm.Service(
        "aiohttp-cache", code_version=f"release-{RELEASE}", registry=build_registry()
    )
    service.register(cache)

    def serving(listener: socket.socket) -> None:
        host, port = listener.getsockname()[:2]
        if args.pidfile is not None:
            args.pidfile.with_suffix(".tmp").write_text(f"{os.getpid()}\n")
            args.pidfile.with_suffix(".tmp").replace(args.pidfile)
        say(f"release {RELEASE} serving on http://{host}:{port} (pid {os.getpid()})")

    report = run_app(
        build_app(cache),
        service,
        host=args.host,
        port=args.port,
        on_serving=serving,
        trial=trial(args.trial_dir),
    )
    if report is not None:
        say(f"release {RELEASE} (pid {os.getpid()}) {report.summary()}")


if __name__ == "__main__":
    main()
