#!/usr/bin/env python3
"""The hand-written peer of a load run: N GETs with asyncio and aiohttp under a semaphore.

Usage: bench/peers/aiohttp_load.py URL N CONCURRENCY   (needs `pip install aiohttp`)
Prints one line: rps=<n> p50=<ms>ms p99=<ms>ms errors=<n>
"""

import asyncio
import sys
import time

import aiohttp


async def main(url, n, concurrency):
    gate = asyncio.Semaphore(concurrency)
    latencies, errors = [], 0

    async def one(session):
        nonlocal errors
        async with gate:
            t = time.perf_counter()
            try:
                async with session.get(url) as r:
                    await r.read()
                    if r.status >= 400:
                        errors += 1
            except aiohttp.ClientError:
                errors += 1
            latencies.append((time.perf_counter() - t) * 1000)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()
        await asyncio.gather(*(one(session) for _ in range(n)))
        wall = time.perf_counter() - start
    latencies.sort()

    def pct(p):
        return latencies[min(len(latencies) - 1, int(len(latencies) * p))]

    print(f"rps={n / wall:.0f} p50={pct(0.50):.2f}ms p99={pct(0.99):.2f}ms errors={errors}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
