#!/usr/bin/env python3
"""Sleep-batch benchmark: fanout through its HTTP API vs Python's asyncio.gather, same run.

Usage: bench/sleep.py --asyncio-script PEER.py [--binary target/release/fanout] [--rounds 3]

For each case (10,000 x 200 ms and 100,000 x 1 s) it starts a fresh `fanout serve` on a
loopback port (so peak RSS is per case), POSTs one gather batch of sleep jobs, and reports:
  wall_ms   the batch's own figure: first task start to last task end
  e2e_ms    request sent to the last byte of the answer read
  overhead  wall over the sleep duration
  rss_mb    the server's peak RSS (VmHWM) after the batch
It checks that every task succeeded and slept at least its duration, then runs the peer, an
asyncio.gather script given by --asyncio-script (`PEER.py N SECONDS`: gathers N sleeps of SECONDS
and prints `wall=<seconds>s ... maxrss=<MB>MB`), with the same N and duration, and prints ratios.
Only loopback addresses are used.
"""

import argparse
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CASES = [(10_000, 200), (100_000, 1000)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def start_server(binary, port, database_url="memory://"):
    proc = subprocess.Popen(
        [binary, "serve", "--listen", f"127.0.0.1:{port}", "--database-url", database_url,
         "--max-jobs", "100000",
         "--max-concurrency", "100000", "--max-body-bytes", "16777216"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "RUST_LOG": "warn"},
    )
    for _ in range(200):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/healthz")
            if c.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.02)
    proc.kill()
    sys.exit("fanout did not start")


def run_fanout(binary, n, ms, database_url="memory://"):
    port = free_port()
    proc = start_server(binary, port, database_url)
    try:
        body = json.dumps({"jobs": [{"kind": "sleep", "duration_ms": ms}] * n,
                           "return_exceptions": True}).encode()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        t0 = time.perf_counter()
        conn.request("POST", "/batches", body=body, headers={"content-type": "application/json"})
        resp = conn.getresponse()
        raw = resp.read()
        e2e = (time.perf_counter() - t0) * 1000
        rss = peak_rss_mb(proc.pid)
        if resp.status != 201:
            sys.exit(f"fanout answered {resp.status}: {raw[:300]!r}")
        batch = json.loads(raw)
        results = batch["results"]
        assert len(results) == n, len(results)
        short = [r for r in results if r["status"] != "succeeded" or r["output"]["slept_ms"] < ms]
        if short:
            sys.exit(f"{len(short)} tasks did not sleep their full duration: {short[0]}")
        return {"wall_ms": batch["wall_ms"], "e2e_ms": e2e, "rss_mb": rss, "bytes": len(raw)}
    finally:
        proc.terminate()
        proc.wait()


def run_asyncio(script, n, ms):
    out = subprocess.run([sys.executable, script, str(n), str(ms / 1000)],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"wall=([\d.]+)s .* maxrss=(\d+)MB", out)
    return {"wall_ms": float(m.group(1)) * 1000, "rss_mb": float(m.group(2))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "fanout"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--asyncio-script", required=True,
                    help="an asyncio.gather script: `SCRIPT N SECONDS` prints wall= and maxrss=")
    args = ap.parse_args()

    rows = []
    for n, ms in CASES:
        for r in range(args.rounds):
            f = run_fanout(args.binary, n, ms)
            a = run_asyncio(args.asyncio_script, n, ms)
            rows.append((n, ms, r + 1, f, a))
            print(f"# {n} x {ms} ms round {r + 1}: fanout wall {f['wall_ms']:.1f} ms e2e {f['e2e_ms']:.1f} ms "
                  f"rss {f['rss_mb']:.0f} MB | asyncio {a['wall_ms']:.1f} ms rss {a['rss_mb']:.0f} MB",
                  file=sys.stderr)

    print("| jobs | sleep | round | fanout wall_ms | overhead | fanout end-to-end ms | fanout peak RSS | "
          "asyncio.gather wall ms | asyncio RSS | asyncio / fanout (wall) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, ms, r, f, a in rows:
        print(f"| {n:,} | {ms} ms | {r} | {f['wall_ms']:.1f} | {(f['wall_ms'] - ms) / ms * 100:.1f} % | "
              f"{f['e2e_ms']:.1f} | {f['rss_mb']:.0f} MB | {a['wall_ms']:.1f} | {a['rss_mb']:.0f} MB | "
              f"{a['wall_ms'] / f['wall_ms']:.2f}x |")


if __name__ == "__main__":
    main()
