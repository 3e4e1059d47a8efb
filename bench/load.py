#!/usr/bin/env python3
"""Load benchmark: fanout against oha and asyncio + aiohttp, one local nginx target, same run.

Usage: bench/load.py --aiohttp-script PEER.py [--requests 20000] [--concurrency 64] [--rounds 5] [--million]
         [--python PYTHON_WITH_AIOHTTP] [--baseline OTHER_FANOUT_BINARY]

Starts nginx (Debian's nginx-light, one worker, `return 200`, no access log) on a loopback
port, then for each round runs: oha; `fanout run` in-process; fanout through its HTTP API
(memory://); and the peer given by --aiohttp-script, an asyncio + aiohttp script
(`PEER.py URL N CONCURRENCY`: N GETs under a semaphore, printing `rps=N p50=Xms p99=Yms`). Throughput is requests per second of the
run's wall time; p99 is each tool's own figure; ratios are taken within a round, then their
median over the rounds. `--million` adds 1,000,000 requests with `results: "none"` through
`fanout run` and reports its peak RSS (that process's own, from wait4). `--baseline` adds another
fanout build (an earlier commit's, say) to every round, in-process and through its API, so that
a change is measured against the code before it in the same run. Loopback only.
"""

import argparse
import http.client
import json
import os
import re
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FANOUT = os.path.join(ROOT, "target", "release", "fanout")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_nginx(tmp):
    port = free_port()
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {tmp};
  proxy_temp_path {tmp};
  fastcgi_temp_path {tmp};
  uwsgi_temp_path {tmp};
  scgi_temp_path {tmp};
  server {{ listen 127.0.0.1:{port}; location / {{ return 200 "ok"; }} }}
}}
""")
    subprocess.run(["nginx", "-c", conf], check=True)
    time.sleep(0.3)
    return port, conf


def oha(url, n, c):
    out = subprocess.run(["oha", "-n", str(n), "-c", str(c), "--no-tui", "--output-format", "json", url],
                         capture_output=True, text=True, check=True).stdout
    r = json.loads(out)
    return r["summary"]["requestsPerSec"], r["latencyPercentiles"]["p99"] * 1000, None


def batch(url, n, c, results="none"):
    return {"jobs": [{"kind": "http", "url": url}], "load": {"repeat": n}, "concurrency": c, "results": results}


def fanout_run(url, port, n, c, binary=FANOUT):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(batch(url, n, c), f)
    with tempfile.TemporaryFile("w+") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen([binary, "run", f.name, "--allow-net", f"127.0.0.1:{port}", "--format", "json",
                                 "--max-jobs", str(max(n, 1000000))], stdout=out, stderr=subprocess.DEVNULL)
        # This process's own peak RSS (wait4), not the largest of every child so far (oha's).
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        out.seek(0)
        b = json.loads(out.read())
    s = b["summary"]
    if s["succeeded"] != n:
        sys.exit(f"fanout run: {s['succeeded']} of {n} succeeded: {s['errors']}")
    return s["throughput_per_s"], s["duration_ms"]["p99"], {"process_wall_s": wall, "rss_mb": usage.ru_maxrss / 1024}


def start_server(port, prefix=(), binary=FANOUT):
    """A `fanout serve` on memory:// that may reach the target's port, once it answers /healthz:
    (process, API port)."""
    api = free_port()
    proc = subprocess.Popen([*prefix, binary, "serve", "--listen", f"127.0.0.1:{api}", "--database-url", "memory://",
                             "--allow-net", f"127.0.0.1:{port}", "--max-jobs", "1000000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "warn"})
    for _ in range(100):
        try:
            h = http.client.HTTPConnection("127.0.0.1", api, timeout=1)
            h.request("GET", "/healthz")
            if h.getresponse().status == 200:
                break
        except OSError:
            time.sleep(0.05)
    return proc, api


def fanout_server(url, port, n, c, binary=FANOUT):
    proc, api = start_server(port, binary=binary)
    try:
        h = http.client.HTTPConnection("127.0.0.1", api, timeout=600)
        h.request("POST", "/batches", body=json.dumps(batch(url, n, c)))
        b = json.loads(h.getresponse().read())
        s = b["summary"]
        if s["succeeded"] != n:
            sys.exit(f"fanout server: {s['succeeded']} of {n} succeeded: {s['errors']}")
        return s["throughput_per_s"], s["duration_ms"]["p99"], None
    finally:
        proc.terminate()
        proc.wait()


def aiohttp(python, script, url, n, c):
    out = subprocess.run([python, script, url, str(n), str(c)], capture_output=True, text=True, check=True).stdout
    m = re.search(r"rps=(\d+) p50=([\d.]+)ms p99=([\d.]+)ms", out)
    return float(m.group(1)), float(m.group(3)), None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--million", action="store_true")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--aiohttp-script", required=True,
                    help="an asyncio + aiohttp script: `SCRIPT URL N CONCURRENCY` prints rps= p50= p99=")
    ap.add_argument("--baseline", help="another fanout binary to measure in every round")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp()
    port, conf = start_nginx(tmp)
    url = f"http://127.0.0.1:{port}/"
    n, c = args.requests, args.concurrency
    try:
        rows = []
        for r in range(args.rounds):
            got = {
                "oha": oha(url, n, c),
                "fanout run (in-process)": fanout_run(url, port, n, c),
                "fanout (HTTP API)": fanout_server(url, port, n, c),
                "asyncio + aiohttp": aiohttp(args.python, args.aiohttp_script, url, n, c),
            }
            if args.baseline:
                got["baseline: fanout run (in-process)"] = fanout_run(url, port, n, c, args.baseline)
                got["baseline: fanout (HTTP API)"] = fanout_server(url, port, n, c, args.baseline)
            rows.append(got)
            print(f"# round {r + 1}: " + ", ".join(f"{k} {v[0]:,.0f}/s p99 {v[1]:.2f} ms" for k, v in got.items()), file=sys.stderr)
        print("| round | tool | requests/s | p99 ms | × oha | × aiohttp |")
        print("|---:|---|---:|---:|---:|---:|")
        for i, got in enumerate(rows):
            base, slow = got["oha"][0], got["asyncio + aiohttp"][0]
            for tool, (rps, p99, _) in got.items():
                print(f"| {i + 1} | {tool} | {rps:,.0f} | {p99:.2f} | {rps / base:.2f} | {rps / slow:.1f} |")
        print()
        print("| tool | median requests/s | median p99 ms | median × oha | median × aiohttp |")
        print("|---|---:|---:|---:|---:|")
        for tool in rows[0]:
            rps = statistics.median(g[tool][0] for g in rows)
            p99 = statistics.median(g[tool][1] for g in rows)
            x_oha = statistics.median(g[tool][0] / g["oha"][0] for g in rows)
            x_aio = statistics.median(g[tool][0] / g["asyncio + aiohttp"][0] for g in rows)
            print(f"| {tool} | {rps:,.0f} | {p99:.2f} | {x_oha:.2f} | {x_aio:.1f} |")
        if args.million:
            rps, p99, extra = fanout_run(url, port, 1_000_000, c)
            print()
            print("| 1,000,000 requests, `results: none`, `fanout run` | requests/s | p99 ms | peak RSS |")
            print("|---|---:|---:|---:|")
            print(f"| | {rps:,.0f} | {p99:.2f} | {extra['rss_mb']:.0f} MB |")
    finally:
        subprocess.run(["nginx", "-c", conf, "-s", "stop"])


if __name__ == "__main__":
    main()
