#!/usr/bin/env python3
"""Storage benchmark: what SQL persistence costs, against memory:// in the same run.

Usage: bench/storage.py [--binary target/release/fanout] [--postgres postgres://postgres@127.0.0.1:5432/test]
         [--baseline OTHER_FANOUT_BINARY [--rounds 3]]

1. POST rate: one-sleep(0)-job batches with oha (`-m POST -D`), concurrency 32, 20,000
   requests, on memory://, SQLite and (if given) PostgreSQL: batches/s and p99.
2. The sleep benchmarks of bench/sleep.py (10,000 x 200 ms, 100,000 x 1 s) on each backend.
3. Persistence lag: a 100,000-task batch; how long after its last task ended the database
   holds every task row and the summary.
With `--baseline`, part 1 alone runs `--rounds` times, the two binaries alternately on each
backend, and reports each round and the median ratio: a change measured against the code
before it in the same run. Loopback only. Needs oha (`cargo install oha --locked`) for part 1; with Debian's
`nginx-light` too, it first prints oha's GET rate against a local nginx: the machine figure the
POST-rate goals are stated against.
"""

import argparse
import atexit
import datetime
import json
import os
import shutil
import statistics
import sqlite3
import subprocess
import sys
import tempfile
import time
import http.client

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sleep as sleepbench  # noqa: E402
import load as loadbench  # noqa: E402  (start_nginx, oha)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fresh_pg(admin):
    name = f"fanout_bench_{int(time.time() * 1000)}"
    subprocess.run(["psql", admin, "-qc", f"CREATE DATABASE {name}"], check=True)
    atexit.register(drop_pg, admin, name)
    return admin.rsplit("/", 1)[0] + "/" + name


def drop_pg(admin, name):
    """Drops a database fresh_pg made, once the run is over (its servers have stopped)."""
    subprocess.run(["psql", admin, "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"],
                   check=False)


def backends(args, tmp):
    out = [("memory://", lambda: "memory://")]
    counter = [0]

    def sqlite():
        counter[0] += 1
        return f"sqlite://{tmp}/bench{counter[0]}.db"
    out.append(("SQLite", sqlite))
    if args.postgres:
        out.append(("PostgreSQL", lambda: fresh_pg(args.postgres)))
    return out


def post_rate(binary, url, n=20000, c=32):
    port = sleepbench.free_port()
    proc = sleepbench.start_server(binary, port, url)
    try:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump({"jobs": [{"kind": "sleep", "duration_ms": 0}]}, f)
        out = subprocess.run(["oha", "-n", str(n), "-c", str(c), "-m", "POST", "-D", f.name,
                              "-H", "content-type: application/json", "--no-tui",
                              "--output-format", "json", f"http://127.0.0.1:{port}/batches"],
                             capture_output=True, text=True, check=True).stdout
        r = json.loads(out)
        codes = r.get("statusCodeDistribution", {})
        return r["summary"]["requestsPerSec"], r["latencyPercentiles"]["p99"] * 1000, codes
    finally:
        proc.terminate()
        proc.wait()


def persist_lag(binary, url, n=100_000, ms=1000):
    port = sleepbench.free_port()
    proc = sleepbench.start_server(binary, port, url)
    try:
        # results "all": every task's row is stored (with "errors" or "none" only the shown
        # tasks are, so there would be nothing to wait for).
        body = json.dumps({"jobs": [{"kind": "sleep", "duration_ms": ms}] * n}).encode()
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        c.request("POST", "/batches", body=body)
        b = json.loads(c.getresponse().read())
        finished = datetime.datetime.fromisoformat(b["finished_at"].replace("Z", "+00:00")).timestamp()
        bid = b["id"]
        deadline = time.time() + 30
        while time.time() < deadline:
            if stored(url, bid) == n:
                return time.time() - finished
            time.sleep(0.01)
        return float("nan")
    finally:
        proc.terminate()
        proc.wait()


def stored(url, bid):
    """Task rows stored for a batch whose summary is written, or -1."""
    q_sum = f"SELECT summary IS NOT NULL FROM batches WHERE id = '{bid}'"
    q_cnt = f"SELECT COUNT(*) FROM tasks WHERE batch_id = '{bid}'"
    if url.startswith("sqlite://"):
        con = sqlite3.connect(url[len("sqlite://"):], timeout=5)
        try:
            row = con.execute(q_sum).fetchone()
            if not row or not row[0]:
                return -1
            return con.execute(q_cnt).fetchone()[0]
        finally:
            con.close()
    out = subprocess.run(["psql", url, "-qAtc", q_sum + "; " + q_cnt], capture_output=True, text=True).stdout.split()
    if len(out) < 2 or out[0] != "t":
        return -1
    return int(out[1])


def machine_figure(tmp):
    """oha's GETs/s against a local nginx (one worker, `return 200`) at the POST rate's
    concurrency: the machine's speed, which the POST-rate goals are stated against."""
    port, conf = loadbench.start_nginx(tmp)
    try:
        rps, _, _ = loadbench.oha(f"http://127.0.0.1:{port}/", 100_000, 32)
        return rps
    finally:
        subprocess.run(["nginx", "-c", conf, "-s", "stop"], check=False)


def compare_post_rates(args, bk):
    print("| backend | round | this build | baseline | this / baseline |")
    print("|---|---:|---:|---:|---:|")
    ratios = {}
    for name, url in bk:
        for r in range(args.rounds):
            new, _, _ = post_rate(args.binary, url())
            old, _, _ = post_rate(args.baseline, url())
            ratios.setdefault(name, []).append(new / old)
            print(f"| {name} | {r + 1} | {new:,.0f}/s | {old:,.0f}/s | {new / old:.2f} |", flush=True)
    print()
    print("| backend | median this / baseline |")
    print("|---|---:|")
    for name, rs in ratios.items():
        print(f"| {name} | {statistics.median(rs):.2f} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "fanout"))
    ap.add_argument("--postgres")
    ap.add_argument("--baseline", help="another fanout binary: compare POST rates, alternately")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp()
    bk = backends(args, tmp)
    if shutil.which("oha") and shutil.which("nginx"):
        print(f"This machine: oha against nginx, 100,000 GETs at c=32: {machine_figure(tmp):,.0f}/s\n", flush=True)
    if args.baseline:
        compare_post_rates(args, bk)
        return

    if shutil.which("oha"):
        print("| backend | POST /batches (1 sleep(0) job), c=32, 20,000 requests | p99 | status codes |")
        print("|---|---:|---:|---|")
        for name, url in bk:
            rps, p99, codes = post_rate(args.binary, url())
            print(f"| {name} | {rps:,.0f} batches/s | {p99:.2f} ms | {codes} |", flush=True)
    else:
        print("oha not installed (cargo install oha --locked): POST rate skipped")

    print()
    print("| backend | jobs | sleep | wall_ms | end-to-end ms | peak RSS | e2e vs memory:// |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for n, ms in sleepbench.CASES:
        base = None
        for name, url in bk:
            f = sleepbench.run_fanout(args.binary, n, ms, url())
            base = base or f["e2e_ms"]
            print(f"| {name} | {n:,} | {ms} ms | {f['wall_ms']:.1f} | {f['e2e_ms']:.1f} | {f['rss_mb']:.0f} MB | "
                  f"{f['e2e_ms'] / base:.2f}x |", flush=True)

    print()
    print("| backend | 100,000 tasks fully stored, after the last task ended |")
    print("|---|---:|")
    for name, url in bk[1:]:
        lag = persist_lag(args.binary, url())
        print(f"| {name} | {lag * 1000:.0f} ms |", flush=True)


if __name__ == "__main__":
    main()
