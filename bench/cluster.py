#!/usr/bin/env python3
"""Several instances on one PostgreSQL: throughput of a sharded load run, claim latency, time to
recover a killed instance's shards, and what an idle instance costs.

Usage: bench/cluster.py [--requests 300000] [--concurrency 64] [--rounds 3]
         [--pg postgres://postgres@127.0.0.1:5432/postgres] [--binary target/release/fanout]

Starts nginx (Debian's nginx-light, one worker, `return 200`) on a loopback port, and fanout
instances on loopback sharing a fresh database (`fanout_bench_cluster`). Prints:

1. Throughput: a load run of --requests against nginx (results: errors), posted to the first
   instance, with 1, 2 and 3 instances up (--shard-size 10000: 30 shards for 300,000), and one
   instance running it as one shard (--shard-size above the run). Requests per second of the
   POST's wall time, median over the rounds, and the ratio to the one-instance sharded run. On
   2 cores every instance shares the same two cores with nginx and PostgreSQL: this measures
   what sharing costs, not what it gains.
2. Claim latency: from a shard joining the queue to an instance claiming it, for the shards of
   60 small sharded runs posted one at a time to three idle instances (read from the shards
   table: `started_at` - `queued_at`, both written by the database clients' clocks, one host).
3. Recovery: an instance killed with SIGKILL mid-run (--stale-after 3s); time from the kill to
   the first of its shards running elsewhere (seen by polling the batch every 20 ms), and
   whether the summary still counts every request once.
4. Idle cost: transactions per second and CPU per second of one idle instance (from
   pg_stat_database and /proc over 20 s, three instances up).

Loopback only.
"""

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from load import free_port, start_nginx  # noqa: E402  (the same nginx target as bench/load.py)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DB = "fanout_bench_cluster"


def psql(admin, sql, db=None):
    url = admin if db is None else admin.rsplit("/", 1)[0] + "/" + db
    out = subprocess.run(["psql", url, "-qAtc", sql], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def fresh_db(admin):
    psql(admin, f"DROP DATABASE IF EXISTS {DB}")
    psql(admin, f"CREATE DATABASE {DB}")
    return admin.rsplit("/", 1)[0] + "/" + DB


class Node:
    def __init__(self, binary, db, name, extra, tmp):
        self.port = free_port()
        self.name = name
        self.log = open(os.path.join(tmp, f"{name}.log"), "w")
        self.proc = subprocess.Popen(
            [binary, "serve", "--listen", f"127.0.0.1:{self.port}", "--database-url", db,
             "--instance-id", name, "--allow-net", "127.0.0.1", "--max-jobs", "10000000",
             "--log-format", "json"] + extra,
            stdout=subprocess.DEVNULL, stderr=self.log)
        for _ in range(100):
            try:
                if self.request("GET", "/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{name} did not start")

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        conn.request(method, path, body=body, headers=headers or {})
        res = conn.getresponse()
        data = res.read()
        conn.close()
        return res.status, (json.loads(data) if data else None)

    def stop(self, hard=False):
        if self.proc.poll() is None:
            (self.proc.kill if hard else self.proc.terminate)()
            self.proc.wait()
        self.log.close()


def load_run(target, requests, concurrency, rate=None):
    load = {"repeat": requests}
    if rate:
        load["rate_per_s"] = rate
    return json.dumps({"jobs": [{"kind": "http", "url": f"http://127.0.0.1:{target}/"}],
                       "load": load, "concurrency": concurrency, "results": "errors"})


def throughput(args, target, tmp):
    configs = [("1 instance, 1 shard", 1, ["--shard-size", "100000000"]),
               ("1 instance, sharded", 1, []),
               ("2 instances, sharded", 2, []),
               ("3 instances, sharded", 3, [])]
    results = {c[0]: [] for c in configs}
    body = load_run(target, args.requests, args.concurrency)
    for _ in range(args.rounds):
        for label, n, extra in configs:
            db = fresh_db(args.pg)
            nodes = [Node(args.binary, db, f"node{i}", extra, tmp) for i in range(1, n + 1)]
            time.sleep(0.5)
            began = time.monotonic()
            status, b = nodes[0].request("POST", "/batches", body)
            took = time.monotonic() - began
            for node in nodes:
                node.stop()
            s = b["summary"]
            assert status == 201 and s["tasks"] == args.requests and s["succeeded"] == args.requests, b
            spread = len({sh["instance_id"] for sh in b["shards"]})
            results[label].append((args.requests / took, s["duration_ms"]["p99"], spread, len(b["shards"])))
    base = statistics.median(r[0] for r in results["1 instance, sharded"])
    print(f"\n## Throughput: {args.requests:,} requests, concurrency {args.concurrency}, "
          f"median of {args.rounds} rounds")
    print("| run | shards | instances that ran shards | req/s | ratio to 1 instance, sharded | p99 ms |")
    print("|---|---|---|---|---|---|")
    for label, _, _ in configs:
        rows = results[label]
        rps = statistics.median(r[0] for r in rows)
        p99 = statistics.median(r[1] for r in rows)
        print(f"| {label} | {rows[0][3]} | {min(r[2] for r in rows)} | {rps:,.0f} | {rps / base:.2f} | {p99:.2f} |")


def claim_latency(args, target, tmp):
    db = fresh_db(args.pg)
    nodes = [Node(args.binary, db, f"node{i}", ["--shard-size", "100"], tmp) for i in range(1, 4)]
    time.sleep(1.0)
    body = load_run(target, 300, 3)
    for _ in range(60):
        status, _ = nodes[0].request("POST", "/batches", body)
        assert status == 201
        time.sleep(0.05)
    for node in nodes:
        node.stop()
    rows = psql(args.pg, "SELECT EXTRACT(EPOCH FROM (started_at::timestamptz - queued_at::timestamptz)) * 1000 "
                         "FROM shards WHERE attempt = 1", db=DB).split()
    waits = sorted(float(r) for r in rows)
    q = lambda p: waits[min(len(waits) - 1, int(p * len(waits)))]
    print(f"\n## Claim latency: {len(waits)} shards of 60 runs, three idle instances (LISTEN/NOTIFY)")
    print("| p50 ms | p90 ms | p99 ms | max ms | goal p99 |")
    print("|---|---|---|---|---|")
    print(f"| {q(0.5):.1f} | {q(0.9):.1f} | {q(0.99):.1f} | {waits[-1]:.1f} | ≤ 50 ms |")


def recovery(args, target, tmp):
    db = fresh_db(args.pg)
    extra = ["--stale-after", "3s"]
    nodes = [Node(args.binary, db, f"node{i}", extra, tmp) for i in range(1, 4)]
    time.sleep(1.0)
    requests = 120_000
    status, b = nodes[0].request("POST", "/batches", load_run(target, requests, 48, rate=20_000),
                                 {"Prefer": "respond-async"})
    assert status == 202
    bid = b["id"]
    time.sleep(2.0)
    killed = time.monotonic()
    nodes[2].stop(hard=True)
    seen = None
    while True:
        _, b = nodes[0].request("GET", f"/batches/{bid}")
        if seen is None and any(s["attempt"] >= 2 and s["status"] in ("running", "completed")
                                for s in b["shards"]):
            seen = time.monotonic() - killed
        if b["finished_at"]:
            break
        time.sleep(0.02)
    for node in nodes[:2]:
        node.stop()
    s = b["summary"]
    print("\n## Recovery: SIGKILL to one of three instances mid-run (--stale-after 3s, heartbeat 1 s)")
    print("| kill to shard running elsewhere | goal | tasks | succeeded | lost shards | lost tasks rerun |")
    print("|---|---|---|---|---|---|")
    lost = s.get("lost") or {}
    print(f"| {seen:.2f} s | ≤ 4 s | {s['tasks']:,} | {s['succeeded']:,} | {lost.get('shards', 0)} | {lost.get('tasks', 0)} |")
    assert s["tasks"] == requests and s["succeeded"] == requests, s


def idle_cost(args, tmp):
    db = fresh_db(args.pg)
    nodes = [Node(args.binary, db, f"node{i}", [], tmp) for i in range(1, 4)]
    time.sleep(2.0)

    def xacts():
        return int(psql(args.pg, f"SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '{DB}'"))

    def cpu(pid):
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    x0, c0, t0 = xacts(), cpu(nodes[0].proc.pid), time.monotonic()
    time.sleep(20)
    x1, c1, t1 = xacts(), cpu(nodes[0].proc.pid), time.monotonic()
    for node in nodes:
        node.stop()
    per_s = (x1 - x0) / (t1 - t0) / 3
    print("\n## Idle cost: three idle instances (--stale-after 30s), per instance")
    print("| transactions/s | CPU ms/s |")
    print("|---|---|")
    print(f"| {per_s:.1f} | {(c1 - c0) / (t1 - t0) * 1000:.1f} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=300_000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "fanout"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        target, conf = start_nginx(tmp)
        try:
            print(f"# bench/cluster.py, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores")
            throughput(args, target, tmp)
            claim_latency(args, target, tmp)
            recovery(args, target, tmp)
            idle_cost(args, tmp)
        finally:
            subprocess.run(["nginx", "-c", conf, "-s", "stop"], check=False)
            psql(args.pg, f"DROP DATABASE IF EXISTS {DB}")


if __name__ == "__main__":
    sys.exit(main())
