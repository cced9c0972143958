"""Restore a batch of committed zoo snapshots in a fresh process, and judge each one.

Run as ``python -m zoo.restore_batch REQUEST RESULT`` from the tests directory.
REQUEST is a pickle of a list of cases ``{"name", "index", "store", "expected"}``: the
zoo schema, the example number, the TmpfsStore directory the snapshot was committed to,
and the state that was committed. RESULT receives a JSON list with, per case, its
``name``, ``index``, ``outcome`` and ``detail``:

- ``exact``: restored, and exactly equal to the committed state (values and types);
- ``unrestorable``: the restore raised;
- ``changed``: restored, but not exactly equal (``detail`` says where).

Nothing here shares memory with the process that committed: the schemas are imported
afresh, as they would be by the next release of a service.
"""

from __future__ import annotations

import json
import pickle
import sys
from typing import Any

from statemigrate import Service, TmpfsStore
from statemigrate.testing._exact import exact_differences
from zoo.table import Holder, registry_for


def judge(case: dict[str, Any], classes: dict[str, Any]) -> dict[str, Any]:
    """Restore one case and say how it came back."""
    name = case["name"]
    if name not in classes:
        classes[name] = registry_for(name)
    registry, holder_class = classes[name]
    holder: Holder = holder_class(None)
    service = Service("zoo", registry=registry)
    service.register(holder)
    verdict = {"name": name, "index": case["index"]}
    try:
        with TmpfsStore(case["store"]) as store:
            service.restore(store.open())
    except Exception as exc:  # any failure to restore a committed snapshot is the finding
        return {**verdict, "outcome": "unrestorable", "detail": f"{type(exc).__name__}: {exc}"}
    changed = exact_differences(case["expected"], holder.state)
    if changed:
        return {**verdict, "outcome": "changed", "detail": "; ".join(changed)}
    return {**verdict, "outcome": "exact", "detail": ""}


def main(argv: list[str]) -> int:
    request, result = argv
    with open(request, "rb") as file:
        cases: list[dict[str, Any]] = pickle.load(file)
    classes: dict[str, Any] = {}
    verdicts = [judge(case, classes) for case in cases]
    with open(result, "w", encoding="utf-8") as file:
        # ensure_ascii: a detail may quote a lone surrogate, which UTF-8 cannot hold.
        json.dump(verdicts, file, ensure_ascii=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
