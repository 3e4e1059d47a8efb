#!/usr/bin/env python3
"""Small-batch benchmark: what one in-flight batch of one job costs the server, beside asyncio
holding the same number of tasks.

Usage: bench/small_batches.py [--batches 10000] [--binary target/release/fanout]

Starts `fanout serve` on memory:// (loopback, a port of its own), reads its RSS (VmRSS) once it
is idle, POSTs N async batches of one 60-second sleep each (`Prefer: respond-async`, 16
connections), reads its RSS again while all N are in flight, and reports the difference per
batch. Then runs asyncio with N tasks each waiting on a sleep (`asyncio.create_task`, as the
seed's model) and reports its RSS growth per task the same way. Loopback only.
"""

import argparse
import concurrent.futures
import http.client
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import load as base  # noqa: E402  (free_port)

# A pending task record's own size (`size_of::<TaskRecord>()`, no job id): what a one-job
# batch holds for its task, and what the goal leaves out.
TASK_RECORD = 296

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ASYNCIO = r"""
import asyncio, sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
async def main(n):
    await asyncio.sleep(0.2)
    idle = rss()
    tasks = [asyncio.create_task(asyncio.sleep(60)) for _ in range(n)]
    await asyncio.sleep(0.5)
    held = rss()
    print(idle, held)
    for t in tasks:
        t.cancel()
asyncio.run(main(int(sys.argv[1])))
"""



def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def post_many(port, n, body):
    """N POSTs over 16 keep-alive connections; the status codes seen."""
    def worker(count):
        codes = {}
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for _ in range(count):
            conn.request("POST", "/batches", body=body,
                         headers={"content-type": "application/json", "prefer": "respond-async"})
            r = conn.getresponse()
            r.read()
            codes[r.status] = codes.get(r.status, 0) + 1
        conn.close()
        return codes
    share = [n // 16 + (1 if i < n % 16 else 0) for i in range(16)]
    total = {}
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        for codes in pool.map(worker, share):
            for k, v in codes.items():
                total[k] = total.get(k, 0) + v
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=10000)
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "fanout"))
    args = ap.parse_args()
    n = args.batches
    port = base.free_port()
    proc = subprocess.Popen([args.binary, "serve", "--listen", f"127.0.0.1:{port}", "--database-url", "memory://",
                             "--max-queue", str(max(n * 2, 20000))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "warn"})
    try:
        for _ in range(100):
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.05)
        # Warm the allocator and the connection paths with a few batches first.
        post_many(port, 64, json.dumps({"jobs": [{"kind": "sleep", "duration_ms": 1}]}))
        time.sleep(1)
        idle = rss_kb(proc.pid)
        codes = post_many(port, n, json.dumps({"jobs": [{"kind": "sleep", "duration_ms": 60000}]}))
        time.sleep(1)
        held = rss_kb(proc.pid)
    finally:
        proc.terminate()
        proc.wait()
    out = subprocess.run([sys.executable, "-c", ASYNCIO, str(n)], capture_output=True, text=True, check=True).stdout
    a_idle, a_held = map(int, out.split())
    per = (held - idle) * 1024 / n
    a_per = (a_held - a_idle) * 1024 / n
    print(f"\n{n:,} in-flight one-job batches (a 60 s sleep each), memory://, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; answers {codes}\n")
    print("| holder | RSS idle | RSS holding | per batch / task |")
    print("|---|---:|---:|---:|")
    print(f"| fanout serve | {idle / 1024:.1f} MB | {held / 1024:.1f} MB | {per / 1024:.2f} KB |")
    print(f"| asyncio, a task per job | {a_idle / 1024:.1f} MB | {a_held / 1024:.1f} MB | {a_per / 1024:.2f} KB |")
    beyond = per - TASK_RECORD
    verdict = "met" if beyond <= 4096 else "MISSED"
    print(f"\nbeyond its task record ({TASK_RECORD} bytes): {beyond / 1024:.2f} KB; goal ≤ 4 KB: {verdict}")


if __name__ == "__main__":
    main()
