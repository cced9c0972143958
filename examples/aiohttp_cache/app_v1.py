"""A key-value cache served by aiohttp, release 1: its entries live through upgrades.

    PUT /cache/{key}   body = the value  -> 204 once stored
    GET /cache/{key}   -> 200 {"key": ..., "value": ..., "release": 1} | 404

Run it, upgrade it to release 2 and roll it back as README.md shows.
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
from statemigrate.reference import KVCacheV1, build_registry

RELEASE = 1


def build_app(cache: KVCacheV1) -> web.Application:
    async def put(request: web.Request) -> web.Response:
        cache.set(request.match_info["key"], await request.text())
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
    parser = argparse.ArgumentParser(description="A key-value cache, release 1.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument("--pidfile", type=Path, help="each release writes its pid here")
    parser.add_argument(
        "--trial-dir", type=Path, help="put each upgrade on trial (statemigrate trial ...)"
    )
    args = parser.parse_args()
    logging.basicConfig(format="%(message)s")
    logging.getLogger("statemigrate").setLevel(logging.INFO)

    # Cache schema version 1: a plain key -> value table.
    cache = KVCacheV1()
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
        # Release 1 is what a rollback returns to: it takes a newer cache too and drops
        # what it does not know (release 2's expiry deadlines).
        allow_lossy=True,
        on_serving=serving,
        trial=trial(args.trial_dir),
    )
    if report is not None:
        say(f"release {RELEASE} (pid {os.getpid()}) {report.summary()}")


if __name__ == "__main__":
    main()
