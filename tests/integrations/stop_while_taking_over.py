"""A service on the aiohttp, uvicorn or hypercorn adapter whose successor is sent a stop
signal while it takes the state over.

    python stop_while_taking_over.py aiohttp|uvicorn|hypercorn PORT DIR
    STOP_WHILE_TAKING_OVER_DIR=DIR python -m uvicorn --fd N stop_while_taking_over:application

Each process writes its pid to DIR/pid once it serves (from uvicorn's command line:
once started cold, or once it took the state over), and DIR/exit.PID with how
``run`` returned. The application's shutdown (the lifespan's, aiohttp's cleanup)
writes DIR/shutdown.PID. A process restoring a snapshot writes its pid to DIR/importing,
then waits, inside the restore, until DIR/go exists: the test sends the stop signal
then. When DIR/fail exists, the restore fails instead. Its one component counts the
entries it holds; DIR/restored.PID says how many came back. ``POST /add`` adds an
entry and answers how many there are.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from typing_extensions import TypedDict

import statemigrate as sm
from statemigrate.integrations.asgi import Receive, Scope, Send

WAIT = 60.0  # a guard against a hung test, not a figure

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

REGISTRY = sm.Registry()


class Entries(TypedDict):
    entries: dict[str, int]


REGISTRY.add_schema("entries", 1, Entries)


def _folder() -> Path:
    return Path(os.environ.get("STOP_WHILE_TAKING_OVER_DIR") or sys.argv[3])


def _shut_down(folder: Path) -> None:
    (folder / f"shutdown.{os.getpid()}").touch()


@REGISTRY.migratable("entries", version=1)
class Held:
    """Its own export and import, with the records protocol: so a handoff pre-copies
    (round 0 while the old process serves), and its import of round 0 is where the
    successor waits for DIR/go."""

    def __init__(self) -> None:
        self.entries: sm.TrackedDict[str, int] = sm.TrackedDict()

    def tracked_records(self) -> dict[str, sm.TrackedDict[str, int]]:
        return {"entries": self.entries}

    def export_records(self, field: str, keys: Iterable[str]) -> dict[str, int]:
        return {key: self.entries[key] for key in keys if key in self.entries}

    def import_records(
        self, field: str, records: Mapping[str, int], deleted: Sequence[str], moved: int = 0
    ) -> None:
        self.entries.update(records)
        for key in deleted:
            self.entries.pop(key, None)

    def export_state(self) -> Entries:
        return {"entries": dict(self.entries)}

    def import_state(self, state: Entries) -> None:
        folder = _folder()
        if (folder / "fail").exists():
            raise RuntimeError("this release cannot take the state")
        (folder / "importing").write_text(str(os.getpid()))
        end = time.monotonic() + WAIT
        while not (folder / "go").exists() and time.monotonic() < end:
            time.sleep(0.01)
        self.entries = sm.TrackedDict(state["entries"])
        (folder / f"restored.{os.getpid()}").write_text(str(len(self.entries)))


def on_serving(folder: Path) -> None:
    (folder / "pid.new").write_text(str(os.getpid()))
    (folder / "pid.new").replace(folder / "pid")


def asgi_app(
    held: Held, started: Callable[[], object] = lambda: None
) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = "startup" if message["type"] == "lifespan.startup" else "shutdown"
                if kind == "startup":
                    started()
                else:
                    _shut_down(_folder())  # as an application closes its pools
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        while (await receive()).get("more_body"):
            pass
        body = b"ok"
        if scope["method"] == "POST" and scope["path"] == "/add":
            held.entries[f"k{len(held.entries)}"] = len(held.entries)
            body = str(len(held.entries)).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    return app


def main() -> None:
    server, port, folder = sys.argv[1], int(sys.argv[2]), _folder()
    service = sm.Service("stopping", registry=REGISTRY)
    held = service.register(Held())
    held.entries.update({f"k{i}": i for i in range(50)})
    options: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "on_serving": lambda _: on_serving(folder),
    }
    if server == "aiohttp":
        from aiohttp import web

        from statemigrate.integrations.aiohttp import run_app

        async def add(request: web.Request) -> web.Response:
            held.entries[f"k{len(held.entries)}"] = len(held.entries)
            return web.Response(text=str(len(held.entries)))

        async def cleanup(app: web.Application) -> None:
            _shut_down(folder)

        app = web.Application()
        app.router.add_post("/add", add)
        app.on_cleanup.append(cleanup)
        report = run_app(app, service, **options)
    elif server == "uvicorn":
        from statemigrate.integrations import uvicorn

        report = uvicorn.run(
            asgi_app(held), service, config={"log_level": "warning"}, **options
        )
    else:
        from statemigrate.integrations import hypercorn

        # Its drain waits the keep-alive timeout out: 1 s, not 5, keeps the tests short.
        report = hypercorn.run(
            asgi_app(held), service, config={"keep_alive_timeout": 1}, **options
        )
    how = "handed over" if report is not None else "stopped"
    (folder / f"exit.{os.getpid()}").write_text(how)


def fd_application() -> Any:
    """What ``uvicorn --fd N stop_while_taking_over:application`` serves."""
    from statemigrate.handoff import started_by_handoff
    from statemigrate.integrations import uvicorn

    folder = _folder()
    service = sm.Service("stopping", registry=REGISTRY)
    held = service.register(Held())
    held.entries.update({f"k{i}": i for i in range(50)})

    def started() -> None:
        if not started_by_handoff():
            on_serving(folder)  # a cold start; a successor says so once it took over

    return uvicorn.hot_restart(
        asgi_app(held, started), service, on_take_over=lambda _: on_serving(folder)
    )


if __name__ == "__main__":
    main()
elif os.environ.get("STOP_WHILE_TAKING_OVER_DIR"):
    application = fd_application()
