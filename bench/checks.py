#!/usr/bin/env python3
"""Checks benchmark: a load run with three checks beside the same run without them, oha (which
checks nothing) and Locust (the same checks in Python), one local nginx target, same run.

Usage: bench/checks.py [--requests 200000] [--concurrency 64] [--rounds 5] [--locust-seconds 10]
         [--python PYTHON_WITH_LOCUST] [--binary target/release/fanout] [--skip-locust] [--skip-oha]

Starts nginx (Debian's nginx-light, one worker, no access log) on a loopback port serving a fixed
1,024-byte JSON document at /doc.json (`content-type: application/json`, `x-app-version: 1.4.2`),
then for each round runs, in an order that alternates from round to round:
  fanout         `fanout run --url URL -n N -c C`, no checks;
  fanout+checks  the same with `--check 'status == 200'`, `--check 'json:$.status == "ok"'` and
                 `--check 'header:x-app-version ~ ^1\\.'`; its `summary.checks` must show every
                 check judged N times and passed (or the round says so and counts it as failed);
  oha            `oha --no-tui -n N -c C URL`;
  Locust         headless, a FastHttpUser whose task GETs the document with catch_response=True
                 and checks the same three things, wait_time constant(0), C users spawned in about
                 a second, --processes = the cores, for --locust-seconds.
Requests/s is each tool's own figure (Locust's: its requests over its first to last request).
CPU-seconds are user + sys of the tool's process and the children it reaped (os.wait4), start-up
included (a second or so of Locust's run, so its requests per CPU-second are if anything
understated). Ratios are taken within a round, then their median over the rounds. Targets:
checks ≥ 0.8 × no checks and ≥ 1.0 × oha in requests/s; fanout+checks ≥ 12 × Locust in
requests per CPU-second. A missed target is printed as MISSED; the exit code is 1 then, or when
a tool failed. Loopback only.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import load as base  # noqa: E402  (free_port, the binary's path)

CHECKS = ["status == 200", 'json:$.status == "ok"', r"header:x-app-version ~ ^1\."]

LOCUSTFILE = r'''
import re
from locust import constant, task
from locust.contrib.fasthttp import FastHttpUser

VERSION = re.compile(r"^1\.")


class Doc(FastHttpUser):
    wait_time = constant(0)

    @task
    def doc(self):
        with self.client.get("/doc.json", catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"status {r.status_code}")
            elif r.json()["status"] != "ok":
                r.failure("$.status is not ok")
            elif not VERSION.search(r.headers.get("x-app-version") or ""):
                r.failure("x-app-version does not match ^1\\.")
            else:
                r.success()
'''


class Failed(Exception):
    """A tool that did not run, or whose run is not the one measured."""


def document():
    """`{"status":"ok","items":[...],"pad":"..."}`, 1,024 bytes."""
    doc = {"status": "ok", "items": [{"id": i, "name": f"item-{i:03}", "price": i * 1.25, "tags": ["a", "b"]}
                                     for i in range(14)], "pad": ""}
    doc["pad"] = "x" * (1024 - len(json.dumps(doc, separators=(",", ":"))))
    return json.dumps(doc, separators=(",", ":"))


def start_nginx(tmp):
    port = base.free_port()
    with open(os.path.join(tmp, "doc.json"), "w") as f:
        f.write(document())
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path {tmp};
  proxy_temp_path {tmp};
  fastcgi_temp_path {tmp};
  uwsgi_temp_path {tmp};
  scgi_temp_path {tmp};
  server {{
    listen 127.0.0.1:{port};
    root {tmp};
    location = /doc.json {{ default_type application/json; add_header x-app-version 1.4.2; }}
  }}
}}
""")
    subprocess.run(["nginx", "-c", conf], check=True)
    time.sleep(0.3)
    return port, conf


def timed(cmd, out, limit=900):
    """Runs `cmd`, its stdout to the file `out`, interrupted (SIGINT) after `limit` s: (exit code,
    wall s, CPU-s of it and the children it reaped, its stderr)."""
    with tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        try:
            proc = subprocess.Popen(cmd, stdout=out, stderr=err)
        except OSError as e:
            raise Failed(f"cannot start {cmd[0]}: {e}") from e
        timer = threading.Timer(limit, proc.send_signal, [signal.SIGINT])
        timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        timer.cancel()
        wall = time.perf_counter() - t0
        err.seek(0)
        return os.waitstatus_to_exitcode(status), wall, usage.ru_utime + usage.ru_stime, err.read()


def fanout(binary, url, n, c, checks):
    """`fanout run` one-liner, with `checks` or none: (requests/s, requests, wall s, CPU-s, note)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "report.json")
        cmd = [binary, "run", "--url", url, "-n", str(n), "-c", str(c), "--allow-net", "127.0.0.1/32",
               "--format", "json", "--out", report]
        for check in checks:
            cmd += ["--check", check]
        with open(os.devnull, "w") as null:
            code, wall, cpu, err = timed(cmd, null)
        if not os.path.exists(report):
            raise Failed(f"exit {code}, no report: {err.strip()[-500:]}")
        with open(report) as f:
            s = json.load(f)["summary"]
    note = ""
    if checks:
        got = s.get("checks") or {}
        judged = {name: f"{v['passed']:,} passed, {v['failed']:,} failed" for name, v in got.items()}
        if len(got) != len(checks) or any(v["passed"] != n or v["failed"] for v in got.values()):
            raise Failed(f"the checks were not all judged {n:,} times and passed: summary.checks = {judged or None}")
        note = "; ".join(f"{name}: {v}" for name, v in judged.items())
    if s["succeeded"] != n:
        raise Failed(f"{s['succeeded']} of {n} succeeded (exit {code}): {json.dumps(s.get('errors'))[:300]}")
    return s["throughput_per_s"], n, wall, cpu, note


def oha(url, n, c):
    with tempfile.TemporaryFile("w+") as out:
        code, wall, cpu, err = timed(["oha", "--no-tui", "-n", str(n), "-c", str(c), "--output-format", "json", url],
                                     out)
        out.seek(0)
        text = out.read()
    if code != 0:
        raise Failed(f"exit {code}: {err.strip()[-300:]}")
    r = json.loads(text)
    codes = r.get("statusCodeDistribution") or {}
    if any(not str(code).startswith("200") for code in codes):
        raise Failed(f"status codes {codes}")
    return r["summary"]["requestsPerSec"], n, wall, cpu, ""


def locust(python, tmp, port, c, seconds, processes):
    locustfile = os.path.join(tmp, "locustfile.py")
    with open(locustfile, "w") as f:
        f.write(LOCUSTFILE)
    master = base.free_port()
    cmd = [python, "-m", "locust", "-f", locustfile, "--headless", "--host", f"http://127.0.0.1:{port}",
           "-u", str(c), "-r", str(c), "--run-time", f"{seconds}s", "--processes", str(processes),
           "--master-bind-host", "127.0.0.1", "--master-bind-port", str(master), "--master-port", str(master),
           "--only-summary", "--json", "--loglevel", "WARNING"]
    with tempfile.TemporaryFile("w+") as out:
        code, wall, cpu, err = timed(cmd, out, seconds + 60)
        out.seek(0)
        text = out.read()
    # Each worker prints its (empty) stats too: the master's are the list with the requests.
    lists, at, decoder = [], 0, json.JSONDecoder()
    while (at := text.find("[", at)) >= 0:
        try:
            value, at = decoder.raw_decode(text, at)
            if isinstance(value, list) and all(isinstance(e, dict) and "num_requests" in e for e in value):
                lists.append(value)
        except ValueError:
            at += 1
    if not lists:
        raise Failed(f"exit {code}, no JSON stats: {err.strip()[-500:]}")
    stats = max(lists, key=lambda s: sum(e["num_requests"] for e in s))
    n = sum(e["num_requests"] for e in stats)
    failures = sum(e["num_failures"] for e in stats)
    if not n or failures:
        raise Failed(f"{n:,} requests, {failures:,} failed: {err.strip()[-300:]}")
    span = max(e["last_request_timestamp"] for e in stats) - min(e["start_time"] for e in stats)
    return n / span, n, wall, cpu, f"{processes} processes, {n:,} requests, 0 failed"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=200000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--locust-seconds", type=int, default=10)
    ap.add_argument("--python", default=sys.executable, help="a python with locust installed")
    ap.add_argument("--binary", default=base.FANOUT)
    ap.add_argument("--skip-locust", action="store_true")
    ap.add_argument("--skip-oha", action="store_true")
    args = ap.parse_args()
    n, c = args.requests, args.concurrency
    cores = len(os.sched_getaffinity(0))
    tmp = tempfile.mkdtemp(prefix="fanout-checks-")
    port, conf = start_nginx(tmp)
    url = f"http://127.0.0.1:{port}/doc.json"
    tools = {
        "fanout": lambda: fanout(args.binary, url, n, c, []),
        "fanout+checks": lambda: fanout(args.binary, url, n, c, CHECKS),
        "oha": None if args.skip_oha else lambda: oha(url, n, c),
        "Locust": None if args.skip_locust else
        lambda: locust(args.python, tmp, port, c, args.locust_seconds, cores),
    }
    tools = {k: v for k, v in tools.items() if v}
    rows, failed = [], False
    try:
        for r in range(args.rounds):
            got = {}
            for tool in (list(tools) if r % 2 == 0 else list(tools)[::-1]):
                try:
                    got[tool] = tools[tool]()
                    rps, _, wall, cpu, note = got[tool]
                    print(f"# round {r + 1}: {tool} {rps:,.0f}/s, {wall:.2f} s wall, {cpu:.2f} CPU-s"
                          + (f" ({note})" if note else ""), file=sys.stderr)
                except Failed as e:
                    failed = True
                    print(f"# round {r + 1}: {tool} FAILED: {e}", file=sys.stderr)
            rows.append(got)
    finally:
        subprocess.run(["nginx", "-c", conf, "-s", "stop"], check=False)

    def per_cpu(v):
        return v[1] / v[3] if v[3] > 0 else float("inf")

    print(f"\n{n:,} requests (Locust: {args.locust_seconds} s), concurrency {c}, {args.rounds} rounds, {cores} cores, "
          f"nginx 1 KB JSON on loopback, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print("| round | tool | requests/s | wall s | CPU-s | requests per CPU-s |")
    print("|---:|---|---:|---:|---:|---:|")
    for i, got in enumerate(rows):
        for tool in tools:
            if tool not in got:
                print(f"| {i + 1} | {tool} | failed | | | |")
                continue
            rps, _, wall, cpu, _ = got[tool]
            print(f"| {i + 1} | {tool} | {rps:,.0f} | {wall:.2f} | {cpu:.2f} | {per_cpu(got[tool]):,.0f} |")
    print("\n| tool | median requests/s | median requests per CPU-s | rounds measured |")
    print("|---|---:|---:|---:|")
    for tool in tools:
        have = [g[tool] for g in rows if tool in g]
        if have:
            print(f"| {tool} | {statistics.median(v[0] for v in have):,.0f} "
                  f"| {statistics.median(per_cpu(v) for v in have):,.0f} | {len(have)} of {len(rows)} |")
        else:
            print(f"| {tool} | failed | failed | 0 of {len(rows)} |")

    targets = [("fanout+checks / fanout, requests/s", "fanout+checks", "fanout", lambda v: v[0], 0.8),
               ("fanout+checks / oha, requests/s", "fanout+checks", "oha", lambda v: v[0], 1.0),
               ("fanout+checks / Locust, requests per CPU-s", "fanout+checks", "Locust", per_cpu, 12.0)]
    print("\n| ratio (median of rounds) | median | range | target | verdict |")
    print("|---|---:|---:|---:|---|")
    missed = False
    for label, a, b, f, target in targets:
        if b not in tools:
            print(f"| {label} | | | ≥ {target:g} × | skipped |")
            continue
        ratios = [f(g[a]) / f(g[b]) for g in rows if a in g and b in g]
        if not ratios:
            missed = True
            print(f"| {label} | not measured | | ≥ {target:g} × | MISSED (a tool failed in every round) |")
            continue
        m = statistics.median(ratios)
        missed |= m < target
        print(f"| {label} | {m:.2f} × | {min(ratios):.2f}–{max(ratios):.2f} × | ≥ {target:g} × "
              f"| {'PASS' if m >= target else 'MISSED'} |")
    check_notes = [g["fanout+checks"][4] for g in rows if "fanout+checks" in g]
    if check_notes:
        print(f"\nfanout+checks, summary.checks of the last round: {check_notes[-1]}")
    sys.exit(1 if missed or failed else 0)


if __name__ == "__main__":
    main()
