"""A key-value cache served by uvicorn (or hypercorn) with hot restarts: release 2.

    PUT /cache/{key}   body = the value      -> 204 once stored
    GET /cache/{key}   -> 200 {"key", "value", "release"} | 404

Release 2 (``KVCacheV2``) gives every entry an expiry deadline; its state is migrated
from release 1's on the way in. Rolling back to release 1 drops the deadlines, a
lossy step this release allows (``allow_lossy``). See README.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import statemigrate as sm
from statemigrate.integrations import hypercorn, uvicorn
from statemigrate.integrations.asgi import Receive, Scope, Send, Trial
from statemigrate.reference import KVCacheV2, build_registry

RELEASE = 2

cache = KVCacheV2()
service = sm.Service("uvicorn-cache", code_version=f"release-{RELEASE}", registry=build_registry())
service.register(cache)


async def respond(send: Send, status: int, body: dict[str, Any] | None = None) -> None:
    payload = b"" if body is None else json.dumps(body).encode()
    headers = [(b"content-type", b"application/json")] if body is not None else []
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The service itself: a plain ASGI application."""
    if scope["type"] != "http":
        return  # no lifespan work of its own
    prefix, _, key = scope["path"].partition("/cache/")
    if prefix or not key:
        await respond(send, 404)
    elif scope["method"] == "PUT":
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        cache.set(key, body.decode())
        await respond(send, 204)
    elif scope["method"] == "GET":
        value = cache.get(key)
        if value is None:
            await respond(send, 404)
        else:
            await respond(send, 200, {"key": key, "value": value, "release": RELEASE})
    else:
        await respond(send, 405)


# For `uvicorn --fd N app:application` (a listener passed by systemd, say).
application = uvicorn.hot_restart(app, service, allow_lossy=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--server", choices=["uvicorn", "hypercorn"], default="uvicorn")
    parser.add_argument("--pidfile", type=Path, help="written once serving: kill -USR2 $(cat it)")
    parser.add_argument("--keep-alive", type=float, default=5.0, help="idle connection timeout")
    parser.add_argument(
        "--trial-dir", type=Path, help="put each upgrade on trial (statemigrate trial ...)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")  # handoff reports

    def serving(listener: object) -> None:
        if args.pidfile is not None:
            args.pidfile.with_suffix(".tmp").write_text(f"{os.getpid()}\n")
            args.pidfile.with_suffix(".tmp").replace(args.pidfile)

    # Release 2 may be rolled back to release 1, which drops expiry deadlines.
    options: dict[str, Any] = {"on_serving": serving, "allow_lossy": True}
    if args.trial_dir is not None:
        # Reverted to this release's own file, not the app.py link (the next release's
        # by then).
        argv = [sys.executable, os.path.realpath(__file__), *sys.argv[1:]]
        options["trial"] = Trial(directory=args.trial_dir, argv=argv)
    if args.server == "uvicorn":
        config = {"log_level": "warning", "timeout_keep_alive": args.keep_alive}
        uvicorn.run(app, service, host=args.host, port=args.port, config=config, **options)
    else:
        config = {"keep_alive_timeout": args.keep_alive}
        hypercorn.run(app, service, host=args.host, port=args.port, config=config, **options)


if __name__ == "__main__":
    main()
