"""The worker's HTTP client against aiohttp's, on the same loop and the same nginx.

    .venv/bin/python -m bench.http_client --requests 10000 --concurrency 64

Each round sends ``--requests`` GETs to a local nginx (one worker process, answering 204,
keep-alive) with ``--concurrency`` in flight, on uvloop as the worker does, first through
``HttpRunner`` (the worker's runner: policy-free, but with its URL check, headers and
outcome) over ``workers.targets.http_client``, then through an ``aiohttp.ClientSession``
request that reads the same excerpt. Printed: CPU-microseconds of this process per request
and requests per second, the median of 3 rounds each, and the ratio. The kernel's loopback
work for a request is charged partly to this process, so both figures include it.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import uvloop

from bench.capacity import NGINX_CONF
from schemas.v1.addresses import AddressGuard
from schemas.v1.targets import HttpTarget
from workers.targets.base import Attempt
from workers.targets.http import HttpRunner
from workers.targets.http_client import HttpClient

EXCERPT = 1024


async def timed(
    send: Callable[[int], Awaitable[int]], n: int, concurrency: int
) -> tuple[float, float]:
    """(CPU-us per request, requests per second) of ``n`` sends, ``concurrency`` at once."""
    slots = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with slots:
            status = await send(i)
            if status != 204:
                raise RuntimeError(f"nginx answered {status}")

    await asyncio.gather(*(one(i) for i in range(concurrency * 2)))  # connections warm
    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one(i) for i in range(n)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return 1e6 * cpu / n, n / wall


async def rounds(url: str, n: int, concurrency: int) -> dict[str, list[tuple[float, float]]]:
    guard = AddressGuard.from_allowlist(["127.0.0.1"])
    client = HttpClient(guard)
    runner = HttpRunner(client, EXCERPT)
    attempt = Attempt(execution_id=uuid.uuid4(), job_id=uuid.uuid4(), user_id="u", attempt=1)

    # Made before the rounds: validating a job's target is the shard's and the worker's
    # door, not the request's cost.
    targets = [
        HttpTarget(type="http", method="GET", url=f"{url}?job_id={i}&sched=0")
        for i in range(max(n, concurrency * 2))
    ]

    async def kjs(i: int) -> int:
        outcome = await runner(targets[i], attempt)
        return outcome.http_status or 0

    session = aiohttp.ClientSession()

    async def plain_aiohttp(i: int) -> int:
        headers = {"Idempotency-Key": str(attempt.execution_id)}
        async with session.get(str(targets[i].url), headers=headers, allow_redirects=False) as r:
            await r.content.read(EXCERPT)
            return r.status

    out: dict[str, list[tuple[float, float]]] = {"kjs": [], "aiohttp": []}
    try:
        for _ in range(3):
            out["kjs"].append(await timed(kjs, n, concurrency))
            out["aiohttp"].append(await timed(plain_aiohttp, n, concurrency))
    finally:
        await client.close()
        await session.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--port", type=int, default=18298)
    parser.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kjs-http-client-"))
    (work / "body").mkdir()
    (work / "nginx.conf").write_text(NGINX_CONF.format(dir=work, port=args.port))

    async def run() -> dict[str, list[tuple[float, float]]]:
        nginx = await asyncio.create_subprocess_exec(
            args.nginx, "-c", str(work / "nginx.conf"), "-p", str(work)
        )
        try:
            url = f"http://127.0.0.1:{args.port}/job"
            for _ in range(100):  # nginx listening
                try:
                    _, w = await asyncio.open_connection("127.0.0.1", args.port)
                    w.close()
                    break
                except OSError:
                    await asyncio.sleep(0.05)
            return await rounds(url, args.requests, args.concurrency)
        finally:
            nginx.terminate()
            await nginx.wait()

    try:
        results = uvloop.run(run())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med = {
        k: (statistics.median(c for c, _ in v), statistics.median(r for _, r in v))
        for k, v in results.items()
    }
    for name, (cpu, rate) in med.items():
        print(f"{name:8s} {cpu:6.1f} CPU-us per request  {rate:8.0f} requests/s  (median of 3)")
    print(f"aiohttp / kjs CPU per request: {med['aiohttp'][0] / med['kjs'][0]:.1f}x")


if __name__ == "__main__":
    main()
