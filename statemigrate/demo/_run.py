"""The scripted demo: fill, load, upgrade v1 -> v3, roll back, upgrade again, verify.

:func:`run_demo` starts the cache server (release 1) on 127.0.0.1, fills it, starts
the load generator in another process, and asks the server three times to hand
itself over to another release: 1 -> 3, 3 -> 1 (a rollback, through the lossy
downgrade, which the request allows explicitly), 1 -> 3. Then it stops the load,
reads the final state and checks every acknowledged write against it, and sums up
the latency of the requests, overall and within each handoff (optionally drawn as a
picture, :mod:`statemigrate.demo._plot`). Every wait is
bounded, and ends as soon as the process it waits on dies (the run then stops with
that process's error, in :attr:`DemoReport.error`); every process it started is
killed on the way out.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from statemigrate.demo._latency import LatencySummary, summarize
from statemigrate.demo._load import OUTCOMES, fill_value
from statemigrate.demo._plot import Window, write_plot
from statemigrate.demo._procs import ChildExited, ChildGroup, Event

__all__ = ["DemoReport", "HandoffPhase", "run_demo"]

_BATCH = 5_000
_WAIT = 60.0  # seconds: a hang guard for every single wait, never a measurement

_GONE_WAIT = 1.0  # seconds: after a failed request, time for a dead child's pipe to close

SERVER = ("-m", "statemigrate.demo._server")
"""The demo server's command after the interpreter."""

#: The handoffs of the run: (from release, to release, allow_lossy).
PLAN = ((1, 3, False), (3, 1, True), (1, 3, False))


@dataclass
class HandoffPhase:
    """One handoff of the run, as the old generation reported it."""

    source: int
    target: int
    ok: bool
    reason: str | None = None
    steps: list[str] = field(default_factory=list)
    snapshot_size: int = 0
    """The bytes sent in the pause: the last delta, or the whole snapshot."""
    pause_ms: float = 0.0
    rounds: list[dict[str, Any]] = field(default_factory=list)
    """The pre-copy pieces sent while serving (round 0, then the deltas)."""
    final: str = ""
    """What the pause carried: ``delta``, ``full`` (the fallback) or ``snapshot``."""
    fallback: str | None = None
    fork_ms: float = 0.0
    timings_ms: dict[str, float] = field(default_factory=dict)
    restore_ms: dict[str, float] = field(default_factory=dict)
    entries_after: int = 0
    window: tuple[float, float] = (0.0, 0.0)
    """When the upgrade request was sent and answered (``time.time()`` seconds)."""
    latency: LatencySummary = field(default_factory=LatencySummary)
    """The load's requests that started within :attr:`window`."""


@dataclass
class DemoReport:
    """The outcome of :func:`run_demo`; ``passed`` is what the exit status reflects."""

    entries: int
    clients: int
    sent: int = 0
    ok: int = 0
    server_errors: int = 0
    refused: int = 0
    reset: int = 0
    timeouts: int = 0
    errors: int = 0
    writes_acked: int = 0
    lost: int = 0
    unexpected: int = 0
    uncertain: int = 0
    entries_before: int = 0
    entries_after: int = 0
    handoffs: list[HandoffPhase] = field(default_factory=list)
    latency: LatencySummary = field(default_factory=LatencySummary)
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    error: str | None = None
    """Why the run stopped before its end (a child's error, a failed request), if it did."""

    @property
    def passed(self) -> bool:
        """No lost write, no refusal, reset, 5xx or other error, every handoff done."""
        return (
            self.error is None
            and not self.problems
            and self.lost == 0
            and self.unexpected == 0
            and self.server_errors == 0
            and self.refused == 0
            and self.reset == 0
            and self.timeouts == 0
            and self.errors == 0
            and len(self.handoffs) == len(PLAN)
            and all(h.ok for h in self.handoffs)
        )

    def to_plain(self) -> dict[str, Any]:
        """JSON-ready data, ``passed`` included."""
        return {**asdict(self), "passed": self.passed}

    def render(self) -> str:
        """The human report printed at the end of the run."""
        lines = [
            f"statemigrate demo: {self.entries:,} entries, {self.clients} clients,"
            f" {len(self.handoffs)} handoffs in {self.seconds:.1f} s",
            "",
            f"  requests sent       {self.sent:>10,}",
            f"  ok                  {self.ok:>10,}",
            f"  5xx answers         {self.server_errors:>10,}",
            f"  refused             {self.refused:>10,}",
            f"  reset               {self.reset:>10,}",
            f"  timeouts            {self.timeouts:>10,}",
            f"  errors              {self.errors:>10,}",
            f"  writes acknowledged {self.writes_acked:>10,}",
            f"  acknowledged lost   {self.lost:>10,}",
            f"  entries before/after {self.entries_before:,} / {self.entries_after:,}",
            "",
            "  handoff       ok  in pause    pause  spawn  handshake precopy  export  transfer"
            "  ready   total  (ms)",
        ]
        for h in self.handoffs:
            t = h.timings_ms
            lines.append(
                f"  v{h.source} -> v{h.target}     {'yes' if h.ok else 'NO ':3}"
                f" {h.snapshot_size / 1024:7.0f} KiB {h.pause_ms:7.1f}"
                + "".join(
                    f" {t.get(name, 0.0):{width}.1f}"
                    for name, width in (
                        ("spawn", 6),
                        ("handshake", 10),
                        ("precopy", 7),
                        ("export", 7),
                        ("transfer", 9),
                        ("ready", 6),
                        ("total", 7),
                    )
                )
            )
            detail = ", ".join(h.steps) or "no migration on export"
            restore = sum(h.restore_ms.values())
            failed = "" if h.ok else f"; FAILED: {h.reason}"
            lines.append(f"      {detail}; successor restore {restore:.1f} ms{failed}")
            if h.ok:
                lines.append(f"      {_precopy_line(h)}")
        lines.append("")
        lines.append(f"  {'latency':<20}{'requests':>10} {'p50':>8} {'p99':>8} {'max':>9}")
        lines.append(f"  {'whole run':<20}{_latency_row(self.latency)}")
        for h in self.handoffs:
            label = f"during v{h.source} -> v{h.target}"
            lines.append(f"  {label:<20}{_latency_row(h.latency)}")
        lines.append("")
        lines.append(
            "  pause = writers held, from pause() to the successor confirming it serves;"
            " handshake includes the successor's start-up and imports"
        )
        for problem in self.problems:
            lines.append(f"  problem: {problem}")
        if self.error is not None:
            lines.append(f"  stopped: {self.error}")
        lines.append(f"  result: {'PASS' if self.passed else 'FAIL'}")
        return "\n".join(lines)


def _precopy_line(h: HandoffPhase) -> str:
    """What pre-copy did in one handoff, in one line."""
    if not h.rounds:
        reason = f": {h.fallback}" if h.fallback else ""
        return f"no pre-copy rounds; the whole snapshot in the pause{reason}"
    deltas = [r for r in h.rounds if r["kind"] == "delta"]
    text = (
        f"pre-copy: {len(h.rounds)} rounds while serving (round 0 {h.rounds[0]['size'] / 1024:.0f}"
        f" KiB, fork {h.fork_ms:.1f} ms"
    )
    if deltas:
        sizes = ", ".join(f"{r['size']:,} B/{r['records']:,} records" for r in deltas)
        text += f"; deltas {sizes}"
    if h.final == "delta":
        return text + f"); last delta {h.snapshot_size:,} B in the pause"
    return text + f"); full snapshot in the pause: {h.fallback}"


def _latency_row(summary: LatencySummary) -> str:
    return (
        f"{summary.requests:>10,} {summary.p50_ms:8.2f} {summary.p99_ms:8.2f}"
        f" {summary.max_ms:9.2f} ms"
    )


class _Http:
    """Small blocking HTTP calls to the demo server, one connection each."""

    def __init__(self, port: int) -> None:
        self.port = port

    def call(
        self, method: str, path: str, body: bytes | None = None, *, timeout: float = _WAIT
    ) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            for _ in range(200):  # a 503 only while a handoff settles
                conn.request(method, path, body=body)
                response = conn.getresponse()
                data = response.read()
                if response.status != 503:
                    return response.status, data
                conn.close()
                time.sleep(0.01)
            raise RuntimeError(f"{method} {path}: still 503 after 200 tries")
        finally:
            conn.close()

    def json(self, method: str, path: str, body: bytes | None = None) -> Any:
        status, data = self.call(method, path, body)
        if status >= 400 and status != 409:
            raise RuntimeError(f"{method} {path}: HTTP {status}: {data[:200]!r}")
        return json.loads(data)


def _ms(timings: dict[str, float]) -> dict[str, float]:
    return {name: round(seconds * 1000, 2) for name, seconds in timings.items()}


def run_demo(
    *,
    entries: int = 200_000,
    clients: int = 8,
    settle: float = 1.5,
    fresh_connections: bool = False,
    progress: Callable[[str], None] | None = None,
    server_argv: Sequence[str] | None = None,
    plot: Path | None = None,
) -> DemoReport:
    """Run the whole demo and return its report (see the module docstring).

    Args:
        entries: how many entries to fill the cache with before the load starts.
        clients: load generator threads.
        settle: seconds of load before, between and after the handoffs (each phase
            also waits for a minimum number of requests, so a slow machine still
            puts every handoff under load).
        fresh_connections: one request per connection instead of keep-alive.
        progress: called with a line of text at each step.
        server_argv: the command that starts the first server generation (``--release
            1`` is appended); the demo's own server by default. The tests pass a
            deliberately broken server here to show that the checks catch it.
        plot: where to draw throughput and latency over time, handoffs marked (an
            ``.html`` page, or SVG for any other name); nothing is drawn by default.
    """
    say = progress or (lambda line: None)
    began = time.monotonic()

    def note(text: str) -> None:
        say(f"[{time.monotonic() - began:5.1f}s] {text}")

    report = DemoReport(entries=entries, clients=clients)
    server: ChildGroup | None = None
    load: ChildGroup | None = None
    running: list[ChildGroup] = []  # the children that must not exit now
    with tempfile.TemporaryDirectory(prefix="statemigrate-demo-") as scratch:
        try:
            command = list(server_argv or [sys.executable, *SERVER])
            server = ChildGroup([*command, "--release", "1"], reaper=True, name="the demo server")
            running.append(server)
            first = server.wait_event("ready", generation=1, timeout=_WAIT)
            port = int(first["port"])
            api = _Http(port)
            note(f"server release 1 (pid {first['pid']}) serving on 127.0.0.1:{port}")
            _fill(api, entries)
            report.entries_before = int(api.json("GET", "/stats")["entries"])
            note(f"filled {report.entries_before:,} entries")

            out = os.path.join(scratch, "acked.json")
            argv = [sys.executable, "-m", "statemigrate.demo._load", "--port", str(port)]
            argv += ["--clients", str(clients), "--fills", str(entries), "--out", out]
            if fresh_connections:
                argv.append("--fresh")
            load = ChildGroup(argv, stdin=subprocess.PIPE, name="the load generator")
            running.append(load)
            minimum = max(300, 40 * clients)
            _settle(load, server, settle, minimum, note)
            for number, (source, target, lossy) in enumerate(PLAN, start=1):
                phase = _hand_over(api, server, number, source, target, lossy)
                report.handoffs.append(phase)
                verdict = "ok" if phase.ok else f"FAILED: {phase.reason}"
                note(
                    f"handoff {number}: v{source} -> v{target}"
                    f"{' (rollback, lossy allowed)' if lossy else ''}: {verdict};"
                    f" pause {phase.pause_ms:.1f} ms, {len(phase.rounds)} pre-copy rounds,"
                    f" {phase.snapshot_size:,} bytes in the pause ({phase.final or 'none'})"
                )
                if not phase.ok:
                    break
                _settle(load, server, settle, minimum, note)
            running.remove(load)
            _stop_load(load)
            done = load.wait_event("done", timeout=_WAIT)
            with open(out, encoding="utf-8") as handle:
                acked = json.load(handle)
            for name in OUTCOMES:
                setattr(report, name, int(done[name]))
            report.writes_acked = int(done["writes_acked"])
            report.problems.extend(f"load: {s}" for s in done.get("samples", []))
            if done.get("stuck"):
                report.problems.append(f"{done['stuck']} load threads did not stop")
            note(f"load stopped: {report.ok:,} ok, {report.server_errors:,} 5xx answers")
            _sum_latency(report, [(t, d) for t, d in acked.get("latencies", [])], plot)
            final = api.json("GET", "/admin/export")["entries"]
            # Release 3 keeps entries as {"data", "expires_at", "hits"}: compare the data.
            values = {k: v["data"] if isinstance(v, dict) else v for k, v in final.items()}
            _verify(report, values, acked, entries)
            note(
                f"verified {len(acked['acked']):,} acknowledged keys and {entries:,} filled"
                f" entries: {report.lost} lost"
            )
        except ChildExited as exc:
            report.error = str(exc)
            note(f"stopped: {exc}")
        except (OSError, RuntimeError, TimeoutError, ValueError, KeyError) as exc:
            report.error = f"{type(exc).__name__}: {exc}"
            for group in running:
                gone = group.exited(timeout=_GONE_WAIT)
                if gone is not None:
                    report.error = str(gone)  # the cause, not its echo in a failed request
                    break
            note(f"stopped: {report.error}")
        finally:
            if load is not None:
                load.kill()
            if server is not None:
                server.kill()
    report.seconds = time.monotonic() - began
    return report


def _fill(api: _Http, entries: int) -> None:
    for start in range(0, entries, _BATCH):
        batch = {f"fill:{i}": fill_value(i) for i in range(start, min(entries, start + _BATCH))}
        api.json("POST", "/batch", json.dumps(batch).encode())


def _settle(
    load: ChildGroup,
    server: ChildGroup,
    seconds: float,
    minimum: int,
    note: Callable[[str], None],
) -> None:
    """Let the load run ``seconds`` and at least ``minimum`` more ok requests (bounded).

    Raises:
        ChildExited: the load generator or the server died meanwhile.
    """
    start = _latest_progress(load)
    goal = start + minimum
    began = time.monotonic()
    deadline = began + _WAIT
    while time.monotonic() < deadline:
        time.sleep(0.05)
        load.check()
        server.check()
        if time.monotonic() - began >= seconds and _latest_progress(load) >= goal:
            break
    last = load.events[-1] if load.events else {}
    note(
        f"load: {int(last.get('ok', 0)):,} ok, {int(last.get('server_errors', 0)):,} 5xx,"
        f" {int(last.get('refused', 0))} refused, {int(last.get('reset', 0))} reset,"
        f" {int(last.get('errors', 0))} errors"
    )


def _latest_progress(load: ChildGroup) -> int:
    for event in reversed(load.events):
        if event.get("event") == "progress":
            return int(event["ok"])
    return 0


def _hand_over(
    api: _Http, server: ChildGroup, number: int, source: int, target: int, lossy: bool
) -> HandoffPhase:
    path = f"/admin/upgrade?to={target}" + ("&allow_lossy=1" if lossy else "")
    sent = time.time()
    result = api.json("POST", path)
    phase = HandoffPhase(source=source, target=target, ok=bool(result.get("ok")))
    phase.window = (sent, time.time())
    phase.timings_ms = _ms(result.get("timings", {}))
    if not phase.ok:
        phase.reason = f"{result.get('stage')}: {result.get('reason')}"
        return phase
    phase.steps = list(result["steps"])
    phase.snapshot_size = int(result["snapshot_size"])
    phase.pause_ms = round(float(result["pause"]) * 1000, 2)
    phase.rounds = list(result.get("rounds", []))
    phase.final = str(result.get("final", ""))
    phase.fallback = result.get("fallback")
    phase.fork_ms = round(float(result.get("fork", 0.0)) * 1000, 2)
    ready: Event = server.wait_event("ready", generation=number + 1, timeout=_WAIT)
    phase.restore_ms = _ms(ready.get("timings", {}))
    phase.steps += [f"restore: {step}" for step in ready.get("steps", [])]
    phase.entries_after = int(ready["entries"])
    server.wait_event("exit", generation=number, timeout=_WAIT)
    return phase


def _sum_latency(report: DemoReport, samples: list[tuple[float, float]], plot: Path | None) -> None:
    report.latency = summarize(samples)
    for phase in report.handoffs:
        phase.latency = summarize(samples, *phase.window)
    if plot is not None and samples:
        windows = [
            Window(h.window[0], h.window[1], f"v{h.source}->v{h.target} pause {h.pause_ms:.0f} ms")
            for h in report.handoffs
        ]
        title = (
            f"statemigrate demo: {report.entries:,} entries, {report.clients} clients,"
            f" {len(report.handoffs)} handoffs"
        )
        write_plot(plot, samples, windows, title=title, summary=report.render())


def _stop_load(load: ChildGroup) -> None:
    stdin = load.stdin
    if stdin is not None:
        try:
            stdin.write(b"stop\n")
            stdin.close()
        except OSError:
            pass  # it exited already; its "done" event (or its absence) tells


def _verify(report: DemoReport, final: dict[str, Any], acked: dict[str, Any], entries: int) -> None:
    """Count acknowledged writes missing or changed, and entries nobody wrote."""
    uncertain = set(acked["uncertain"])
    report.uncertain = len(uncertain)
    lost = 0
    for key, value in acked["acked"].items():
        if key in uncertain:
            continue
        if final.get(key) != value:
            lost += 1
            if lost <= 5:
                report.problems.append(f"{key}: acknowledged {value!r}, found {final.get(key)!r}")
    for index in range(entries):
        if final.get(f"fill:{index}") != fill_value(index):
            lost += 1
    report.lost = lost
    expected = {f"fill:{i}" for i in range(entries)}
    expected.update(k for k, v in acked["acked"].items() if v is not None)
    report.unexpected = len(set(final) - expected - uncertain)
    report.entries_after = len(final)
