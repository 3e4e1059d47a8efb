#!/usr/bin/env python3
"""The API under many clients: oha POSTing two-job batches with 1,000 connections, and the
server's memory during the burst and after it.

Usage: bench/many_clients.py [--clients 1000] [--seconds 60] [--after 60] [--store sqlite]
         [--binary target/release/fanout]

Starts `fanout serve` (SQLite in a temporary folder by default, or memory://) on loopback,
reads its idle RSS, runs `oha -c CLIENTS -z SECONDS` POSTing `{"jobs": [two 10 ms sleeps]}`
(answered 201 when they end), samples the server's RSS every half second while it runs and for
`--after` seconds after, and prints the status codes, the request rate, p99, and RSS idle /
peak during / at the end. Goals: only 201/202/429, at most 150 MB during, within 2 × idle after.
Loopback only.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import http.client

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import load as base  # noqa: E402  (free_port)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BODY = json.dumps({"jobs": [{"kind": "sleep", "duration_ms": 10}, {"kind": "sleep", "duration_ms": 10}]})



def rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--after", type=int, default=60)
    ap.add_argument("--store", choices=["sqlite", "memory"], default="sqlite")
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "fanout"))
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="fanout-clients-")
    db = f"sqlite://{tmp}/fanout.db" if args.store == "sqlite" else "memory://"
    port = base.free_port()
    proc = subprocess.Popen([args.binary, "serve", "--listen", f"127.0.0.1:{port}", "--database-url", db,
                             "--files-root", tmp],
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
        time.sleep(1)
        idle = rss_mb(proc.pid)
        samples = []
        running = threading.Event()
        running.set()

        def sample():
            t0 = time.monotonic()
            while running.is_set():
                samples.append((time.monotonic() - t0, rss_mb(proc.pid)))
                time.sleep(0.5)

        sampler = threading.Thread(target=sample)
        sampler.start()
        t0 = time.monotonic()
        out = subprocess.run(["oha", "-c", str(args.clients), "-z", f"{args.seconds}s", "--no-tui",
                              "--output-format", "json", "-m", "POST", "-T", "application/json", "-d", BODY,
                              f"http://127.0.0.1:{port}/batches"], capture_output=True, text=True, check=True).stdout
        ended = time.monotonic() - t0
        time.sleep(args.after)
        running.clear()
        sampler.join()
        r = json.loads(out)
        during = max((m for t, m in samples if t <= ended), default=0.0)
        after = samples[-1][1] if samples else 0.0
        codes = r.get("statusCodeDistribution", {})
        print(f"\n{args.clients} clients × {args.seconds} s of two-job batches (`POST /batches`, two 10 ms "
              f"sleeps, answered when they end), {args.store}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
        print("| codes | batches/s | p99 | RSS idle | RSS peak during | RSS "
              f"{args.after} s after |")
        print("|---|---:|---:|---:|---:|---:|")
        print(f"| {', '.join(f'{k}: {v:,}' for k, v in sorted(codes.items()))} | {r['summary']['requestsPerSec']:,.0f} "
              f"| {r['latencyPercentiles']['p99'] * 1000:.0f} ms | {idle:.0f} MB | {during:.0f} MB | {after:.0f} MB |")
        other = {k: v for k, v in codes.items() if k not in ("201", "202", "429")}
        print(f"\nonly 201/202/429: {'met' if not other else 'MISSED ' + str(other)}; "
              f"≤ 150 MB during: {'met' if during <= 150 else 'MISSED'}; "
              f"≤ 2 × idle after: {'met' if after <= 2 * idle else 'MISSED'}")
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
