#!/usr/bin/env python3
"""Scenario benchmark: a templated load run beside oha with a fixed URL, and the peak memory of a
long weighted run, against one local nginx target in the same run.

Usage: bench/scenarios.py [--requests 20000] [--concurrency 64] [--rounds 5]
         [--weighted 2000000]

Each round runs, in an order that alternates from round to round:
  oha        `oha -n N -c C` on a fixed URL with a fixed `x-user` header;
  fanout     `fanout run` in-process, the same fixed request;
  templated  `fanout run` in-process, `/item/{{seq}}` in the path and `x-user: {{data.user}}`
             from a 1,000-row CSV (load.data), so that every request differs.
Throughput is each tool's requests per second of its run; ratios are taken within a round, then
their median over the rounds (target: templated >= 1.0 x oha). `--weighted N` then runs N
requests over 4 jobs weighted 4:3:2:1 with `results: "none"` through `fanout run` and reports that
process's peak RSS (wait4; target: under 100 MB). Loopback only.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import load as base  # noqa: E402  (nginx, oha and the binary's path)


def run_fanout(batch, port, files_root, n):
    """`fanout run` on `batch`: (requests/s, p99 ms, peak RSS MB, the summary)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(batch, f)
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen([base.FANOUT, "run", f.name, "--allow-net", f"127.0.0.1:{port}",
                                 "--files-root", files_root, "--format", "json",
                                 "--max-jobs", str(max(n, 1000000))],
                                stdout=out, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        out.seek(0)
        b = json.loads(out.read())
    os.unlink(f.name)
    s = b["summary"]
    if s["succeeded"] != n:
        sys.exit(f"fanout run: {s['succeeded']} of {n} succeeded: {s['errors']}")
    return s["throughput_per_s"], s["duration_ms"]["p99"], usage.ru_maxrss / 1024, s


def oha_fixed(url, n, c):
    out = subprocess.run(["oha", "-n", str(n), "-c", str(c), "--no-tui", "--output-format", "json",
                          "-H", "x-user: user-1", url], capture_output=True, text=True, check=True).stdout
    r = json.loads(out)
    return r["summary"]["requestsPerSec"], r["latencyPercentiles"]["p99"] * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--weighted", type=int, default=2000000)
    args = ap.parse_args()
    n, c = args.requests, args.concurrency

    tmp = tempfile.mkdtemp(prefix="fanout-scenarios-")
    root = os.path.join(tmp, "root")
    os.mkdir(root)
    with open(os.path.join(root, "users.csv"), "w") as f:
        f.write("user\n" + "".join(f"user-{i}\n" for i in range(1000)))
    port, conf = base.start_nginx(tmp)
    origin = f"http://127.0.0.1:{port}"
    fixed = {"jobs": [{"kind": "http", "url": f"{origin}/item/1", "headers": {"x-user": "user-1"}}],
             "load": {"repeat": n}, "concurrency": c, "results": "none"}
    templated = {"jobs": [{"kind": "http", "url": origin + "/item/{{seq}}",
                           "headers": {"x-user": "{{data.user}}"}}],
                 "load": {"repeat": n, "data": {"file": "users.csv"}}, "concurrency": c, "results": "none"}
    try:
        rows = []
        for r in range(args.rounds):
            got = {}
            order = ["oha", "fanout", "templated"]
            if r % 2:
                order.reverse()
            for tool in order:
                if tool == "oha":
                    got[tool] = oha_fixed(f"{origin}/item/1", n, c)
                else:
                    rps, p99, _, _ = run_fanout(fixed if tool == "fanout" else templated, port, root, n)
                    got[tool] = (rps, p99)
            rows.append(got)
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[0]:,.0f}/s p99 {v[1]:.2f} ms" for k, v in got.items()),
                  file=sys.stderr)

        def median(tool, i=0):
            return statistics.median(row[tool][i] for row in rows)

        def ratio(tool, to="oha"):
            return statistics.median(row[tool][0] / row[to][0] for row in rows)

        print(f"\n{n:,} requests, concurrency {c}, {args.rounds} rounds, nginx `return 200` on loopback, "
              f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
        print("| tool | requests/s (median) | p99 ms (median) | × oha (median of rounds) | range × oha |")
        print("|---|---|---|---|---|")
        for tool, label in [("oha", "oha, fixed URL"), ("fanout", "fanout run, fixed URL"),
                            ("templated", "fanout run, `{{seq}}` path + CSV header")]:
            lo = min(row[tool][0] / row["oha"][0] for row in rows)
            hi = max(row[tool][0] / row["oha"][0] for row in rows)
            print(f"| {label} | {median(tool):,.0f} | {median(tool, 1):.2f} | {ratio(tool):.2f} × "
                  f"| {lo:.2f}–{hi:.2f} × |")
        print(f"\ntemplated / fixed fanout: {ratio('templated', 'fanout'):.3f} × (median of rounds)")
        t = ratio("templated")
        print(f"target templated ≥ 1.0 × oha: {'met' if t >= 1.0 else 'MISSED'} ({t:.2f} ×)")

        if args.weighted:
            w = args.weighted
            jobs = [{"id": f"j{k}", "kind": "http", "url": f"{origin}/j{k}", "weight": weight}
                    for k, weight in enumerate([4, 3, 2, 1])]
            weighted = {"jobs": jobs, "load": {"repeat": w // 10}, "concurrency": c, "results": "none"}
            rps, p99, rss, s = run_fanout(weighted, port, root, w)
            shares = ", ".join(f"{k} {v['tasks']:,}" for k, v in sorted(s["by_job"].items()))
            print(f"\n{w:,} requests over 4 jobs weighted 4:3:2:1, `results: none`, concurrency {c}: "
                  f"{rps:,.0f}/s, p99 {p99:.2f} ms, peak RSS {rss:.0f} MB "
                  f"({'met' if rss < 100 else 'MISSED'}: under 100 MB); by_job {shares}")
    finally:
        subprocess.run(["nginx", "-c", conf, "-s", "stop"], check=False)


if __name__ == "__main__":
    main()
