#!/usr/bin/env python3
"""Alternating pairs, oha then fanout, against one local nginx: a steadier ratio than
bench/load.py's rounds on a machine whose speed drifts from run to run.

Usage: bench/paired.py [--pairs 30] [--requests 20000] [--concurrency 64] [--api] [--pin]

Each pair runs oha, then `fanout run` in-process (or, with --api, one batch through a
`fanout serve` on memory:// that is started once and kept), and takes fanout's rate over
oha's. Prints each pair and the median and quartiles of the ratios. --pin puts nginx on CPU 0
and both load generators on CPU 1 (`taskset`), so that neither competes with the target for
a core. Loopback only.
"""

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import load  # noqa: E402  (nginx set-up and paths shared with the load benchmark)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=30)
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--api", action="store_true")
    ap.add_argument("--pin", action="store_true")
    args = ap.parse_args()
    n, c = args.requests, args.concurrency
    pin = (lambda cpu: ["taskset", "-c", cpu]) if args.pin else (lambda cpu: [])
    tmp = tempfile.mkdtemp()
    port, conf = load.start_nginx(tmp)
    if args.pin:
        # Move nginx, its master and its worker, to CPU 0.
        with open(os.path.join(tmp, "nginx.pid")) as f:
            master = f.read().strip()
        workers = subprocess.run(["pgrep", "-P", master], capture_output=True, text=True).stdout.split()
        for pid in [master, *workers]:
            subprocess.run(["taskset", "-p", "-c", "0", pid], capture_output=True, check=True)
    url = f"http://127.0.0.1:{port}/"
    spec = os.path.join(tmp, "batch.json")
    with open(spec, "w") as f:
        json.dump(load.batch(url, n, c), f)
    server, api = load.start_server(port, pin("1")) if args.api else (None, None)
    ratios = []
    try:
        for i in range(args.pairs):
            out = subprocess.run(pin("1") + ["oha", "-n", str(n), "-c", str(c), "--no-tui", "--output-format",
                                             "json", url], capture_output=True, text=True, check=True).stdout
            oha = json.loads(out)["summary"]["requestsPerSec"]
            if args.api:
                h = http.client.HTTPConnection("127.0.0.1", api, timeout=600)
                h.request("POST", "/batches", body=json.dumps(load.batch(url, n, c)))
                summary = json.loads(h.getresponse().read())["summary"]
            else:
                out = subprocess.run(pin("1") + [load.FANOUT, "run", spec, "--allow-net", f"127.0.0.1:{port}",
                                                 "--format", "json"], capture_output=True, text=True).stdout
                summary = json.loads(out)["summary"]
            if summary["succeeded"] != n:
                sys.exit(f"fanout: {summary['succeeded']} of {n} succeeded: {summary['errors']}")
            fanout = summary["throughput_per_s"]
            ratios.append(fanout / oha)
            print(f"# pair {i + 1}: oha {oha:,.0f}/s, fanout {fanout:,.0f}/s, {fanout / oha:.2f} ×", flush=True)
    finally:
        if server:
            server.terminate()
            server.wait()
        subprocess.run(["nginx", "-c", conf, "-s", "stop"], stderr=subprocess.DEVNULL)
    q = statistics.quantiles(ratios, n=4)
    how = "through the HTTP API" if args.api else "in-process"
    print(f"| {how}{', pinned' if args.pin else ''} | {len(ratios)} | {statistics.median(ratios):.2f} | "
          f"{q[0]:.2f}–{q[2]:.2f} |")


if __name__ == "__main__":
    main()
