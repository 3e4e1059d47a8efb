#!/usr/bin/env python3
"""Page benchmark: what opening a large finished batch costs, read back from storage.

Usage: bench/page.py [--tasks 100000] [--rounds 5] [--binary target/release/fanout]
                     [--postgres postgres://postgres@127.0.0.1:5432/test] [--baseline OTHER]

Starts `fanout serve` on SQLite (and on a fresh PostgreSQL database with `--postgres`), runs
one gather batch of N 1 ms sleeps (`results: all`, so every task keeps a row), waits until the
store serves it, then times the reads the page makes when it opens the batch
(`GET /batches/{id}?results=none`, `/timeline`, a narrow `/timeline` window, `/latency`) and,
for scale, the whole batch (`GET /batches/{id}`): the median of `--rounds` reads each, and the
server's RSS after them. `--baseline` measures another build in the same run. Loopback only.
"""

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sleep as sleepbench  # noqa: E402  (free_port, start_server)
import storage  # noqa: E402  (fresh_pg)
from small_batches import rss_kb  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed_get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    began = time.perf_counter()
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    took = time.perf_counter() - began
    c.close()
    if r.status != 200:
        sys.exit(f"GET {path}: {r.status} {body[:200]!r}")
    return took, len(body)


def measure(binary, database_url, tasks, rounds):
    port = sleepbench.free_port()
    proc = sleepbench.start_server(binary, port, database_url)
    try:
        body = json.dumps({"jobs": [{"kind": "sleep", "duration_ms": 1}] * tasks})
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        c.request("POST", "/batches", body, {"Content-Type": "application/json"})
        r = c.getresponse()
        answer = json.loads(r.read())
        if r.status != 201:
            sys.exit(f"POST: {r.status} {answer}")
        bid = answer["id"]
        span = answer["wall_ms"]
        # The batch leaves memory once its last write is committed; give the writer time.
        time.sleep(3)
        paths = [
            ("batch, `results=none`", f"/batches/{bid}?results=none"),
            ("timeline, whole run", f"/batches/{bid}/timeline"),
            ("timeline, a tenth of the run", f"/batches/{bid}/timeline?from_ms={span * 0.45}"
             f"&to_ms={span * 0.55}"),
            ("latency", f"/batches/{bid}/latency"),
            ("the whole batch (not a page read)", f"/batches/{bid}"),
        ]
        out = []
        for name, path in paths:
            times = [timed_get(port, path)[0] * 1000 for _ in range(rounds)]
            out.append((name, statistics.median(times)))
        return out, rss_kb(proc.pid) / 1024
    finally:
        proc.kill()
        proc.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/fanout"))
    ap.add_argument("--baseline", help="another fanout binary, measured in the same run")
    ap.add_argument("--postgres", help="an admin URL; a fresh database is made for the run")
    args = ap.parse_args()

    builds = [("this build", args.binary)]
    if args.baseline:
        builds.append(("baseline", args.baseline))
    with tempfile.TemporaryDirectory() as tmp:
        stores = [("SQLite", lambda: f"sqlite://{tmp}/page{time.monotonic_ns()}.db")]
        if args.postgres:
            stores.append(("PostgreSQL", lambda: storage.fresh_pg(args.postgres)))
        print(f"{args.tasks:,} one-ms sleeps in one batch, finished and read back; "
              f"median of {args.rounds} reads, ms")
        for store, url in stores:
            results = [(label, *measure(binary, url(), args.tasks, args.rounds))
                       for label, binary in builds]
            head = "| read | " + " | ".join(label for label, _, _ in results) + " |"
            print(f"\n{store}\n\n{head}\n|---|" + "---:|" * len(results))
            for i, (name, _) in enumerate(results[0][1]):
                cells = " | ".join(f"{r[1][i][1]:,.1f}" for r in results)
                print(f"| {name} | {cells} |")
            cells = " | ".join(f"{r[2]:.0f} MB" for r in results)
            print(f"| server RSS after | {cells} |")


if __name__ == "__main__":
    main()
