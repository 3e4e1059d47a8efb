#!/usr/bin/env python3
"""User-space instructions per request: fanout (in-process `fanout run`) against oha, counted
by valgrind's callgrind, which counts instructions rather than time and so gives the same
figure on a busy machine as on a quiet one.

Usage: bench/instructions.py [--small 2000] [--large 12000] [--concurrency 64]
         [--baseline OTHER_FANOUT_BINARY]

Starts one local nginx (as bench/load.py does), then runs each tool under callgrind twice,
at --small and at --large GETs, and reports (large - small) / (large - small requests): the
instructions each further request costs, without start-up (certificate loading, parsing,
printing). Kernel work (the TCP path, over half of all CPU time here) is not counted; both
tools make one write and one read system call per request (checked with `strace -c -f`). Needs
valgrind, nginx and oha. `--baseline` counts another fanout build too (an earlier commit's, to
see what a change costs per request). Loopback only.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import load  # noqa: E402  (nginx set-up and paths shared with the load benchmark)


def callgrind(cmd):
    """Instructions the command executed (all threads), from callgrind's summary line."""
    out = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *cmd],
                         capture_output=True, text=True)
    m = re.search(r"Collected : (\d+)", out.stderr)
    if out.returncode != 0 or not m:
        sys.exit(f"callgrind failed for {cmd[0]}: {out.stderr[-400:]}")
    return int(m.group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", type=int, default=2000)
    ap.add_argument("--large", type=int, default=12000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--baseline", help="another fanout binary to count as well")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp()
    port, conf = load.start_nginx(tmp)
    url = f"http://127.0.0.1:{port}/"
    c = args.concurrency

    def oha(n):
        return ["oha", "-n", str(n), "-c", str(c), "--no-tui", "--output-format", "json", url]

    def fanout(binary):
        def cmd(n):
            spec = os.path.join(tmp, f"batch-{n}.json")
            with open(spec, "w") as f:
                json.dump(load.batch(url, n, c), f)
            return [binary, "run", spec, "--allow-net", f"127.0.0.1:{port}", "--format", "json"]
        return cmd

    tools = [("oha", oha), ("fanout run", fanout(load.FANOUT))]
    if args.baseline:
        tools.append(("baseline: fanout run", fanout(args.baseline)))
    rows = []
    try:
        for name, cmd in tools:
            small, large = callgrind(cmd(args.small)), callgrind(cmd(args.large))
            rows.append((name, small, large, (large - small) / (args.large - args.small)))
    finally:
        subprocess.run(["nginx", "-c", conf, "-s", "stop"], stderr=subprocess.DEVNULL)
    base = rows[0][3]
    print(f"| tool | instructions at {args.small:,} | at {args.large:,} | per further request | × oha |")
    print("|---|---|---|---|---|")
    for name, small, large, per in rows:
        print(f"| {name} | {small:,} | {large:,} | {per:,.0f} | {per / base:.2f} |")


if __name__ == "__main__":
    main()
