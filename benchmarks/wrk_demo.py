"""Count what a client that never retries sees across the demo's handoffs: wrk.

Starts the demo server (release 1), fills it, runs ``wrk`` (keep-alive connections, a
mix of PUTs of fresh keys and GETs of filled ones, from a Lua script) for a few
seconds, and meanwhile hands the server over v1 -> v3 and back v3 -> v1 (allowing the
lossy downgrade) with ``POST /admin/upgrade``. Prints wrk's counts of socket errors and
non-2xx answers per run; every one of them is a request a browser would have shown
as failed. Then checks that every filled entry survived both handoffs.

Opt-in and not part of the tests: it needs ``wrk`` (Debian: ``apt-get install wrk``).

    python benchmarks/wrk_demo.py [--runs 3] [--seconds 6] [--connections 16]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from adapter_load import ask as call
from adapter_load import parse_wrk

FILL = 2_000

LUA = r"""
local n = 0
request = function()
  n = n + 1
  if n % 2 == 1 then
    return wrk.format("PUT", "/kv/wrk-" .. tostring(n) .. "-" .. tostring(math.random(1e9)),
                      nil, "written by wrk")
  end
  return wrk.format("GET", "/kv/fill:" .. tostring(n % %FILL%))
end
""".replace("%FILL%", str(FILL))


def one_run(seconds: float, connections: int, script: Path) -> dict[str, object]:
    last_pid = 0
    server = subprocess.Popen(
        [sys.executable, "-m", "statemigrate.demo._server", "--release", "1"],
        stdout=subprocess.PIPE,
    )
    try:
        assert server.stdout is not None
        ready = json.loads(server.stdout.readline())
        port = int(ready["port"])
        batch = {f"fill:{i}": f"value {i}" for i in range(FILL)}
        assert call(port, "POST", "/batch", json.dumps(batch))[0] == 200
        threading.Thread(target=lambda: [server.stdout.read()], daemon=True).start()  # type: ignore[union-attr]
        wrk = subprocess.Popen(
            ["wrk", "-t2", f"-c{connections}", f"-d{max(1, round(seconds))}s", "-s", str(script),
             f"http://127.0.0.1:{port}/"],
            stdout=subprocess.PIPE, text=True,
        )
        handoffs = []
        time.sleep(seconds / 3)
        for target, lossy in ((3, False), (1, True)):
            status, body = call(
                port, "POST", f"/admin/upgrade?to={target}" + ("&allow_lossy=1" if lossy else "")
            )
            report = json.loads(body)
            handoffs.append((status, round(report.get("pause", 0) * 1000, 1)))
            time.sleep(seconds / 3)
        output, _ = wrk.communicate(timeout=seconds + 60)
        if wrk.returncode != 0 or "requests in" not in output:
            raise RuntimeError(f"wrk failed ({wrk.returncode}): {output}")
        found = [call(port, "GET", f"/kv/fill:{i}")[0] for i in range(0, FILL, 7)]
        last_pid = json.loads(call(port, "GET", "/stats")[1])["pid"]
        counts = parse_wrk(output)
        return {
            "requests": counts.requests,
            "socket_errors": counts.connect + counts.read + counts.write + counts.timeout,
            "non_2xx": counts.non_2xx,
            "handoffs(status, pause ms)": handoffs,
            "filled entries missing": sum(status != 200 for status in found),
        }
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        if last_pid:  # the last generation is no child of ours
            os.kill(last_pid, signal.SIGTERM)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install wrk); nothing measured")
        return 2
    with tempfile.TemporaryDirectory() as scratch:
        script = Path(scratch) / "mix.lua"
        script.write_text(LUA)
        for run in range(1, args.runs + 1):
            print(f"run {run}: {one_run(args.seconds, args.connections, script)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
