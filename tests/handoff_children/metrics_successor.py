"""A release-2 successor with Prometheus metrics on; writes what it saw as one JSON line.

Usage: metrics_successor.py MODE OUTPUT

Modes:
    ok      take over the kvcache, then report its scrape, status and take-over report
    strict  register the kvcache under another instance and restore strictly: the
            restore fails (the snapshot's section is unclaimed), FAILED is sent; report
            the scrape and the status
"""

from __future__ import annotations

import json
import sys

from prometheus_client import CollectorRegistry, generate_latest

import statemigrate as sm
import statemigrate.metrics
from statemigrate.handoff import receive_handoff, take_over
from statemigrate.reference import KVCacheV2, build_registry


def main(mode: str, output: str) -> int:
    registry = CollectorRegistry()
    statemigrate.metrics.use_prometheus(registry)
    service = sm.Service("metrics-test", registry=build_registry())
    cache = service.register(KVCacheV2(), instance="default" if mode == "ok" else "other")
    before = service.status.to_plain()
    inheritance = receive_handoff()
    assert inheritance is not None, "not started by a handoff"
    event: dict[str, object] = {"before": before}
    with inheritance:
        try:
            report = take_over(service, inheritance, strict=mode == "strict")
        except sm.StateMigrateError as exc:
            event["error"] = str(exc)
        else:
            event["report"] = report.to_plain()
            event["entries"] = len(cache.entries)
    event["status"] = service.status.to_plain()
    event["scrape"] = generate_latest(registry).decode()
    with open(output, "a") as out:
        out.write(json.dumps(event) + "\n")
    return 0 if "report" in event else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
