"""A service on the uvicorn or hypercorn adapter that a signal stops; prints a line
after ``run`` returns, where a final checkpoint would go.

    python run_until_signal.py uvicorn|hypercorn PORT
"""

from __future__ import annotations

import sys
from typing import Any

import statemigrate as sm
from statemigrate.integrations import hypercorn, uvicorn
from statemigrate.integrations.asgi import Receive, Scope, Send


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def main() -> None:
    server, port = sys.argv[1], int(sys.argv[2])
    service = sm.Service("signalled")
    service.start_cold("nothing to keep")
    run = uvicorn.run if server == "uvicorn" else hypercorn.run
    options: dict[str, Any] = {"on_serving": lambda _: print("serving", flush=True)}
    if server == "uvicorn":
        options["config"] = {"log_level": "warning"}
    report = run(app, service, host="127.0.0.1", port=port, **options)
    print(f"run returned {report}", flush=True)


if __name__ == "__main__":
    main()
