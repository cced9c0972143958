"""Release 1 of the example cache service, a WSGI application: string values
(the reference cache, schema v1).

    PUT /cache/{key}   body = the value        -> 200 once the value is stored
    GET /cache/{key}   -> 200 {"key": ..., "value": ..., "release": 1} | 404

Every answer names the worker's pid in ``X-Worker``: the state lives in the workers.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

import statemigrate as sm
from statemigrate.reference import KVCacheV1, build_registry

RELEASE = 1

cache = KVCacheV1()
service = sm.Service("gunicorn-cache", code_version=f"release-{RELEASE}", registry=build_registry())
service.register(cache)
lock = threading.Lock()  # a gthread worker serves several requests at once


def answer(start_response: Callable[..., Any], status: str, body: object) -> list[bytes]:
    data = json.dumps(body).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    start_response(status, [*headers, ("X-Worker", str(os.getpid()))])
    return [data]


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
    key = path.removeprefix("/cache/")
    if key == path or not key:
        return answer(start_response, "404 Not Found", {"error": "no such route"})
    if method == "PUT":
        value = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)).decode()
        with lock:
            cache.set(key, value)
        return answer(start_response, "200 OK", {"key": key, "release": RELEASE})
    if method == "GET":
        with lock:
            value = cache.get(key)
        if value is None:
            return answer(start_response, "404 Not Found", {"key": key})
        return answer(start_response, "200 OK", {"key": key, "value": value, "release": RELEASE})
    return answer(start_response, "405 Method Not Allowed", {"method": method})
