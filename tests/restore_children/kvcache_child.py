"""One release of a service holding the reference cache, run as its own process.

Reads a JSON request on stdin, prints a JSON result on stdout::

    {"version": 1,                    # which release runs: KVCacheV1, V2 or V3
     "store": "/dev/shm/.../snaps",   # the TmpfsStore directory shared by the releases
     "state": {...} | null,           # a state to start from (plain data of `version`)
     "restore": true,                 # restore the store's latest snapshot first
     "allow_lossy": false,            # ... through lossy steps too
     "ops": [["get", "a"], ["set", "c", "3", 3600.0]],   # then use the cache
     "commit": {"kvcache": 1} | {} | null}   # then commit, for these target versions

The result holds the pid, the restore report (or the restore error), the export after
everything, and the snapshot report of the commit. A failed restore exits with 3.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from statemigrate import RestoreError, Service, TmpfsStore, export_component, import_component
from statemigrate.reference import KVCacheV1, KVCacheV2, KVCacheV3, build_registry

CLASSES: dict[int, Any] = {1: KVCacheV1, 2: KVCacheV2, 3: KVCacheV3}


def main() -> int:
    request = json.load(sys.stdin)
    registry = build_registry()
    version = request["version"]
    cache = CLASSES[version]()
    if request.get("state") is not None:
        schema = registry.schema_for("kvcache", version)
        import_component(cache, schema.validate(request["state"]), registry=registry)
    service = Service("kvcache-demo", code_version=f"release-{version}", registry=registry)
    service.register(cache)
    result: dict[str, Any] = {"pid": os.getpid()}
    with TmpfsStore(request["store"]) as store:
        if request.get("restore"):
            try:
                report = service.restore(
                    store.open(), allow_lossy=request.get("allow_lossy", False)
                )
            except RestoreError as exc:
                cause = exc.__cause__
                result["error"] = {
                    "phase": exc.phase,
                    "component": exc.component,
                    "cause": type(cause).__name__ if cause is not None else None,
                    "export": export_component(cache, registry=registry),
                }
                print(json.dumps(result))
                return 3
            result["restore"] = report.to_plain()
        for op, key, *args in request.get("ops", []):
            if op == "get":
                cache.get(key)
            elif op == "set":
                value, *ttl = args
                if version == 1:
                    cache.set(key, value)
                else:
                    cache.set(key, value, ttl=ttl[0] if ttl else None)
        result["export"] = export_component(cache, registry=registry)
        targets = request.get("commit")
        if targets is not None:
            encoded, snapshot = service.snapshot(targets=targets, allow_lossy=True)
            store.commit(encoded.parts)
            result["snapshot"] = snapshot.to_plain()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
