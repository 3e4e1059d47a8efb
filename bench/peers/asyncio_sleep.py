#!/usr/bin/env python3
"""The hand-written peer of a batch of sleep jobs: asyncio.gather over N sleeps.

Usage: bench/peers/asyncio_sleep.py N SECONDS
Prints one line: wall=<s>s overhead=<pct>% maxrss=<MB>MB
"""

import asyncio
import resource
import sys
import time


async def main(n, seconds):
    start = time.perf_counter()
    await asyncio.gather(*(asyncio.sleep(seconds) for _ in range(n)))
    return time.perf_counter() - start


if __name__ == "__main__":
    n, seconds = int(sys.argv[1]), float(sys.argv[2])
    wall = asyncio.run(main(n, seconds))
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"wall={wall:.3f}s overhead={(wall / seconds - 1) * 100:.1f}% maxrss={rss_mb:.0f}MB")
