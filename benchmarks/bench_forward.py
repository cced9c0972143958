"""Requests passed on to a successor at once, as at a handoff's switch: the adapters'
own forwarding threads against the event loop's default executor, same run.

When the state moves, the old process passes on the next request of every keep-alive
connection it holds, all at about the same moment. A stand-in successor (aiohttp,
in this process) answers each after ``--answer-ms``; the figure is the time until the
last of ``N`` concurrent requests has its answer, the fastest of ``--repeat`` rounds.
The baseline runs the same blocking ``forward`` through ``asyncio.to_thread``, as the
adapters did before they had threads of their own.

    .venv/bin/python benchmarks/bench_forward.py
    .venv/bin/python benchmarks/bench_forward.py --counts 16,64 --answer-ms 5 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from statemigrate.integrations._forward import Address, forward, forward_async

Forwarder = Callable[[Address], Awaitable[object]]


async def _adapters(address: Address) -> object:
    return await forward_async(address, "GET", "/", [("Host", "bench")])


async def _default_executor(address: Address) -> object:
    return await asyncio.to_thread(forward, address, "GET", "/", [("Host", "bench")])


async def _all_answered(forwarder: Forwarder, address: Address, count: int, repeat: int) -> float:
    fastest = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        await asyncio.gather(*(forwarder(address) for _ in range(count)))
        fastest = min(fastest, time.perf_counter() - started)
    return fastest


async def _run(counts: list[int], answer_seconds: float, repeat: int) -> list[dict[str, float]]:
    async def answer(request: web.Request) -> web.Response:
        await asyncio.sleep(answer_seconds)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    address = ("127.0.0.1", runner.addresses[0][1])
    rows = []
    try:
        for count in counts:
            # Alternated, so that drift on a shared machine weighs on both alike.
            ours = base = float("inf")
            for _ in range(2):
                base = min(base, await _all_answered(_default_executor, address, count, repeat))
                ours = min(ours, await _all_answered(_adapters, address, count, repeat))
            rows.append({"requests": count, "adapters_ms": ours * 1000,
                         "default_executor_ms": base * 1000, "ratio": ours / base})
    finally:
        await runner.cleanup()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="6,16,32", help="concurrent requests, comma-separated")
    parser.add_argument("--answer-ms", type=float, default=10.0, help="the successor's answer time")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="one JSON object per count")
    args = parser.parse_args()
    counts = [int(text) for text in args.counts.split(",")]
    rows = asyncio.run(_run(counts, args.answer_ms / 1000, args.repeat))
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return
    print(f"requests passed on at once, successor answering each in {args.answer_ms:g} ms;"
          f" fastest of {args.repeat}")
    print(f"{'requests':>8}  {'adapters':>10}  {'default executor':>16}  ratio")
    for row in rows:
        print(f"{row['requests']:>8}  {row['adapters_ms']:>8.1f}ms  "
              f"{row['default_executor_ms']:>14.1f}ms  {row['ratio']:.2f}x")


if __name__ == "__main__":
    main()
