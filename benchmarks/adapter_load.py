"""Independent load clients that never retry (wrk, ab) across an adapter's upgrade and
rollback: what a user's client would see at the switch.

The project's own load client (tests/integrations/loadclient.py) is written against
the same rules, but it is ours; wrk and ab are not. For each client this starts the
example service at release 1 (examples/aiohttp_cache, under a ``app.py`` link as a
deployment tool would lay it out), runs the client, upgrades to release 2 by
``SIGUSR2`` while it runs, runs it again and rolls back to release 1, and prints per
run what the client counted: requests, socket errors (connect, read, write, timeout)
ab's "length" failures (a body unlike the first) and answers other than 2xx.
Every count but requests should be 0.

    .venv/bin/python benchmarks/adapter_load.py              # wrk, ab -k, ab; 1 round
    .venv/bin/python benchmarks/adapter_load.py --rounds 3 --seconds 10

Opt-in, not part of the test suite: it needs ``wrk`` and ``ab`` on PATH (Debian and
Ubuntu: ``apt-get install wrk apache2-utils``) and says so when they are missing.
Clients: ``wrk`` (keep-alive, 4 connections, half PUTs of new keys, half GETs of
preloaded ones), ``ab -k`` (keep-alive) and ``ab`` (a new connection per request),
each as two ``ab`` processes side by side, one sending PUTs and one GETs.
"""

from __future__ import annotations

import argparse
import ctypes
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "aiohttp_cache"
KEYS = 100
PR_SET_CHILD_SUBREAPER = 36

WRK_SCRIPT = """\
-- Half PUTs of new keys, half GETs of preloaded keys; wrk never retries.
local n = 0
request = function()
  n = n + 1
  if n % 2 == 1 then
    return wrk.format("PUT", "/cache/wrk-" .. n, nil, "value-" .. n)
  end
  return wrk.format("GET", "/cache/k" .. (n % KEYS))
end
"""

_SERVING = re.compile(r"release (\d+) serving on http://[^:]+:(\d+) \(pid (\d+)\)")


@dataclass
class Counts:
    """What one client run counted."""

    requests: int = 0
    connect: int = 0
    read: int = 0
    write: int = 0
    timeout: int = 0
    length: int = 0  # ab: a body of another length than the first answer's
    non_2xx: int = 0

    def add(self, other: Counts) -> None:
        for name in vars(self):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def errors(self) -> int:
        return self.connect + self.read + self.write + self.timeout + self.length + self.non_2xx


def ask(port: int, method: str, path: str, body: str | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=body)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


class Deployment:
    """The example behind an ``app.py`` link; each release a process on one listener.

    This process is made a child subreaper, so that each generation, orphaned when
    the one that started it exits, becomes our child and is reaped here.
    """

    def __init__(self, folder: Path) -> None:
        self.link = folder / "app.py"
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.deploy(1)
        self.first = subprocess.Popen(
            [sys.executable, str(self.link), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.wait_generation(1)

    def _read(self) -> None:
        assert self.first.stdout is not None
        for line in self.first.stdout:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()

    def deploy(self, release: int) -> None:
        staged = self.link.with_name("app.py.new")
        staged.unlink(missing_ok=True)
        staged.symlink_to(EXAMPLE / f"app_v{release}.py")
        staged.replace(self.link)

    def generations(self) -> list[tuple[int, int, int]]:
        with self.changed:
            found = [_SERVING.search(line) for line in self.lines]
        return [(int(m[1]), int(m[2]), int(m[3])) for m in found if m]

    def wait_generation(self, count: int, deadline: float = 60.0) -> None:
        end = time.monotonic() + deadline
        with self.changed:
            while len(self.generations()) < count:
                if time.monotonic() > end:
                    raise SystemExit(f"no new generation within {deadline} s: {self.lines}")
                self.changed.wait(0.1)

    @property
    def port(self) -> int:
        return self.generations()[0][1]

    def switch_to(self, release: int) -> None:
        """Hand over to ``release`` and wait until the old generation has exited."""
        count = len(self.generations())
        old = self.generations()[-1][2]
        self.deploy(release)
        os.kill(old, signal.SIGUSR2)
        self.wait_generation(count + 1)
        self._reap(old)

    def _reap(self, pid: int) -> None:
        if pid == self.first.pid:
            self.first.wait()
        else:
            os.waitpid(pid, 0)

    def stop(self) -> None:
        pid = self.generations()[-1][2] if self.generations() else self.first.pid
        try:
            os.kill(pid, signal.SIGTERM)
            self._reap(pid)
        except (ProcessLookupError, ChildProcessError):
            pass
        if self.first.poll() is None:
            self.first.kill()
            self.first.wait()
        self.reader.join(timeout=10)
        if self.first.stdout is not None:
            self.first.stdout.close()


def parse_wrk(output: str) -> Counts:
    counts = Counts()
    if found := re.search(r"(\d+) requests in", output):
        counts.requests = int(found[1])
    if found := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    ):
        counts.connect, counts.read, counts.write, counts.timeout = map(int, found.groups())
    if found := re.search(r"Non-2xx or 3xx responses: (\d+)", output):
        counts.non_2xx = int(found[1])
    return counts


def parse_ab(output: str) -> Counts:
    counts = Counts()
    if found := re.search(r"Complete requests:\s+(\d+)", output):
        counts.requests = int(found[1])
    if found := re.search(
        r"\(Connect: (\d+), Receive: (\d+), Length: (\d+), Exceptions: (\d+)\)", output
    ):
        connect, receive, length, exceptions = map(int, found.groups())
        counts.connect = connect
        counts.read = receive + exceptions
        counts.length = length
    if found := re.search(r"Non-2xx responses:\s+(\d+)", output):
        counts.non_2xx = int(found[1])
    if found := re.search(r"apr_\w+: .*\((\d+)\)", output):  # ab gave up on an error
        counts.read += 1
    return counts


def _client_commands(client: str, port: int, seconds: float, folder: Path) -> list[list[str]]:
    url = f"http://127.0.0.1:{port}/"
    if client == "wrk":
        script = folder / "mix.lua"
        script.write_text(WRK_SCRIPT.replace("KEYS", str(KEYS)))
        return [["wrk", "-t2", "-c4", f"-d{seconds:g}s", "-s", str(script), url]]
    body = folder / "value.txt"
    body.write_text("a value written by ab")
    keep = ["-k"] if client == "ab -k" else []
    # -r: go on after a socket error (and count it); -n after -t: no 50,000 cap.
    common = ["ab", "-q", "-r", *keep, "-c", "2", "-t", f"{seconds:g}", "-n", "100000000"]
    return [
        [*common, "-u", str(body), "-T", "text/plain", f"{url}cache/ab"],
        [*common, f"{url}cache/k1"],
    ]


def run_client(
    client: str,
    deployment: Deployment,
    release: int,
    seconds: float,
    folder: Path,
    *,
    show: bool = False,
) -> Counts:
    """Run ``client`` for ``seconds``; switch to ``release`` a quarter of the way in."""
    commands = _client_commands(client, deployment.port, seconds, folder)
    processes = [
        subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for c in commands
    ]
    started = time.monotonic()
    outputs: list[str] = []
    try:
        time.sleep(seconds / 4)
        deployment.switch_to(release)
        if time.monotonic() - started > seconds:
            raise SystemExit(
                f"adapter_load: the switch ended after {client} did; give it more --seconds"
            )
        for process in processes:
            output, _ = process.communicate(timeout=seconds * 4 + 60)
            outputs.append(output)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    total = Counts()
    for output in outputs:
        if show:
            print(output)
        total.add(parse_wrk(output) if client == "wrk" else parse_ab(output))
    return total


def _check_cache(port: int, release: int) -> str:
    kept = 0
    served_by = set()
    for i in range(KEYS):
        status, body = ask(port, "GET", f"/cache/k{i}")
        if status == 200:
            answer = json.loads(body)
            kept += answer["value"] == f"v{i}"
            served_by.add(answer["release"])
    ok = kept == KEYS and served_by == {release}
    return f"cache {kept}/{KEYS} kept, release {sorted(served_by)}" + ("" if ok else "  <-- !")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="how many times to run it all")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each client run")
    parser.add_argument(
        "--clients", default="wrk,ab -k,ab", help="comma-separated: wrk, 'ab -k', ab"
    )
    parser.add_argument("--show-output", action="store_true", help="print each client's output")
    args = parser.parse_args()
    clients = [c.strip() for c in args.clients.split(",") if c.strip()]
    unknown = [c for c in clients if c not in {"wrk", "ab -k", "ab"}]
    if unknown:
        parser.error(f"unknown client(s): {', '.join(unknown)}")
    missing = sorted({c.split()[0] for c in clients if shutil.which(c.split()[0]) is None})
    if missing:
        print(
            f"adapter_load: {' and '.join(missing)} not found on PATH; install them"
            " (Debian/Ubuntu: apt-get install wrk apache2-utils) or pick other --clients",
            file=sys.stderr,
        )
        return 2
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print("adapter_load: cannot become a child subreaper (prctl)", file=sys.stderr)
        return 2

    print(
        f"{'round':<6}{'client':<8}{'switch':<17}{'requests':>9}"
        f"{'connect':>8}{'read':>6}{'write':>6}{'timeout':>8}{'length':>7}{'non-2xx':>8}  after"
    )
    failed = 0
    for round_ in range(1, args.rounds + 1):
        for client in clients:
            with tempfile.TemporaryDirectory(prefix="adapter-load-") as tmp:
                folder = Path(tmp)
                deployment = Deployment(folder)
                try:
                    for i in range(KEYS):
                        ask(deployment.port, "PUT", f"/cache/k{i}", f"v{i}")
                    for release, name in ((2, "upgrade 1 -> 2"), (1, "rollback 2 -> 1")):
                        counts = run_client(
                            client, deployment, release, args.seconds, folder, show=args.show_output
                        )
                        failed += counts.errors()
                        print(
                            f"{round_:<6}{client:<8}{name:<17}{counts.requests:>9}"
                            f"{counts.connect:>8}{counts.read:>6}{counts.write:>6}"
                            f"{counts.timeout:>8}{counts.length:>7}{counts.non_2xx:>8}"
                            f"  {_check_cache(deployment.port, release)}",
                            flush=True,
                        )
                finally:
                    deployment.stop()
    print(f"errors and non-2xx answers in all: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
