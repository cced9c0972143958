"""The schema zoo: every committed snapshot of every zoo schema restores exactly in a
fresh process, or the library refused it early with a clear error."""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from zoo.table import BY_NAME, ZOO, registry_for

from statemigrate import Service, StateMigrateError, TmpfsStore

TESTS = Path(__file__).resolve().parents[1]
SHM = "/dev/shm"

EXACT = "exact"
REFUSED_REGISTRATION = "refused at registration"
REFUSED_SNAPSHOT = "refused at snapshot"
UNRESTORABLE = "unrestorable"
CHANGED = "changed"
UNCLEAR = "unclear refusal"
OUTCOMES = (EXACT, REFUSED_REGISTRATION, REFUSED_SNAPSHOT, UNRESTORABLE, CHANGED, UNCLEAR)
BROKEN = (UNRESTORABLE, CHANGED, UNCLEAR)  # the outcomes that break the promise
# States per schema: the soak profile's count, else 30 whatever the profile (the CI
# profile's per schema would take minutes over the zoo's 40-odd schemas).
EXAMPLES = (
    settings().max_examples if settings.get_current_profile_name() == "soak" else 30
)


@pytest.fixture
def store_root() -> Iterator[Path]:
    """Where the snapshots are committed: tmpfs when there is one, as in production."""
    base = SHM if os.path.isdir(SHM) else None
    root = tempfile.mkdtemp(dir=base, prefix="statemigrate-zoo-")
    try:
        yield Path(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def refusal(exc: BaseException, component: str) -> tuple[str, str]:
    """Judge an error raised before anything was committed.

    A refusal keeps the promise when it is a ``StateMigrateError`` whose message is one
    line naming the component and its version (1).
    """
    text = f"{type(exc).__name__}: {exc}"
    clear = (
        isinstance(exc, StateMigrateError)
        and "\n" not in str(exc).strip()
        and component in str(exc)
        and re.search(r"\b(?:version\s*[=:]?\s*|v)1\b", str(exc)) is not None
    )
    return ("", text) if clear else (UNCLEAR, text)


def commit_examples(
    name: str, root: Path, cases: list[dict[str, Any]], seen: dict[str, Counter[str]]
) -> dict[str, str]:
    """Draw states of zoo schema ``name`` and commit each to its own TmpfsStore.

    Committed states join ``cases`` for the fresh process; refusals are counted in
    ``seen`` here. Returns the first detail of each outcome.
    """
    details: dict[str, str] = {}
    try:
        registry, holder = registry_for(name)
    except Exception as exc:
        outcome, text = refusal(exc, name)
        seen[name][outcome or REFUSED_REGISTRATION] += 1
        details[outcome or REFUSED_REGISTRATION] = text
        return details
    schema = registry.schema_for(name, 1)
    index = 0

    @settings(
        database=None,
        deadline=None,
        max_examples=EXAMPLES,
        phases=[Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(BY_NAME[name].states(schema))
    def commit_one(state: Any) -> None:
        nonlocal index
        index += 1
        directory = root / f"{name}-{index}"
        service = Service("zoo", registry=registry)
        service.register(holder(state))
        try:
            with TmpfsStore(directory) as store:
                service.commit(store)
        except Exception as exc:
            outcome, text = refusal(exc, name)
            outcome = outcome or REFUSED_SNAPSHOT
            seen[name][outcome] += 1
            details.setdefault(outcome, f"{text}\n      state: {state!r}"[:600])
            return
        cases.append({"name": name, "index": index, "store": str(directory), "expected": state})

    commit_one()
    return details


def restore_in_fresh_process(cases: list[dict[str, Any]], work: Path) -> list[dict[str, Any]]:
    """Restore every committed case in one child process; return its verdicts."""
    request, result = work / "cases.pickle", work / "verdicts.json"
    request.write_bytes(pickle.dumps(cases))
    child = subprocess.run(
        [sys.executable, "-m", "zoo.restore_batch", str(request), str(result)],
        cwd=TESTS,
        capture_output=True,
        text=True,
        errors="backslashreplace",
        timeout=600,
    )
    assert child.returncode == 0, child.stderr[-4000:]
    verdicts: list[dict[str, Any]] = json.loads(result.read_text(encoding="utf-8"))
    assert len(verdicts) == len(cases)
    return verdicts


def render(seen: dict[str, Counter[str]], details: dict[str, dict[str, str]]) -> str:
    """The counts per schema and in total, then the first detail of every broken one."""
    width = max(len(name) for name in seen)
    head = f"{'schema':<{width}}  " + "  ".join(f"{o:>{len(o)}}" for o in OUTCOMES)
    lines = [head]
    total: Counter[str] = Counter()
    for name, counts in seen.items():
        total.update(counts)
        cells = "  ".join(f"{counts[o]:>{len(o)}}" for o in OUTCOMES)
        lines.append(f"{name:<{width}}  {cells}")
    cells = "  ".join(f"{total[o]:>{len(o)}}" for o in OUTCOMES)
    lines += [f"{'TOTAL':<{width}}  {cells}", ""]
    for name, counts in seen.items():
        for outcome in OUTCOMES:
            if counts[outcome] and outcome != EXACT and outcome in details[name]:
                lines.append(f"{name}: {outcome}: {details[name][outcome]}")
    return "\n".join(lines)


@pytest.mark.slow
def test_every_committed_snapshot_restores_exactly_or_is_refused_early(
    store_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Property: for every zoo schema and every generated state x, commit(x) either
    raises a one-line StateMigrateError naming the component and version (at
    registration or at snapshot), or restores in a fresh process to a state exactly
    equal to x: same values and same types, recursively. Never a committed snapshot
    that cannot be restored, never one restored changed."""
    assert len(ZOO) >= 40
    seen: dict[str, Counter[str]] = {entry.name: Counter() for entry in ZOO}
    details: dict[str, dict[str, str]] = {}
    cases: list[dict[str, Any]] = []
    for entry in ZOO:
        details[entry.name] = commit_examples(entry.name, store_root, cases, seen)
    committed = {(case["name"], case["index"]): case["expected"] for case in cases}
    for verdict in restore_in_fresh_process(cases, store_root):
        name, outcome = verdict["name"], verdict["outcome"]
        seen[name][outcome] += 1
        state = committed[(name, verdict["index"])]
        details[name].setdefault(outcome, f"{verdict['detail']}\n      state: {state!r}"[:600])
    report = render(seen, details)
    print(report)
    totals = [line for line in report.splitlines() if line.startswith(("schema", "TOTAL"))]
    with capsys.disabled():  # the counts belong in every run's output, CI's included
        print("\nschema zoo, outcomes of every generated state:\n" + "\n".join(totals))
    untested = [name for name, counts in seen.items() if not counts.total()]
    assert not untested, f"no example reached these schemas: {untested}"
    broken = {o: sum(counts[o] for counts in seen.values()) for o in BROKEN}
    assert broken == dict.fromkeys(BROKEN, 0), report
