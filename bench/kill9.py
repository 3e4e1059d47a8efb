#!/usr/bin/env python3
"""Crash test: clients keep submitting while the server is killed with SIGKILL at random moments.

Usage: bench/kill9.py [--rounds 50] [--binary target/release/fanout] [--database-url sqlite://...]

Each round starts `fanout serve` on one SQLite file (or the PostgreSQL URL given), runs four
client threads that submit batches (synchronous and `Prefer: respond-async`, short and long
sleeps), kills the server with SIGKILL after a random 0.2-1.5 s, restarts it, and checks every
batch whose submission was acknowledged (a 201 or 202 read in full): it must still be there,
and none may be left `running` by the dead process: the restarted one reruns or ends what it
finds unfinished (async batches rerun, synchronous ones end `interrupted`), so each batch is read
until it has finished, for at most 10 s (the longest sleep is 2 s). Prints a table and exits 1
if any acknowledged batch was lost or left running. Loopback only.
"""

import argparse
import http.client
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start(binary, db):
    proc = subprocess.Popen(
        [binary, "serve", "--listen", "127.0.0.1:0", "--database-url", db,
         "--instance-id", "kill9", "--log-format", "json"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        m = re.search(r"listening on http://([0-9.:]+)", line)
        if m:
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            host, port = m.group(1).rsplit(":", 1)
            return proc, host, int(port)
    sys.exit("the server did not start")


def client(host, port, acked, stop, seed):
    rnd = random.Random(seed)
    while not stop.is_set():
        asynchronous = rnd.random() < 0.5
        # Synchronous batches are short (the client waits); async ones may run long.
        durations = [0, 50, 2000] if asynchronous else [0, 5, 20]
        jobs = [{"kind": "sleep", "duration_ms": rnd.choice(durations)} for _ in range(rnd.randint(1, 20))]
        body = json.dumps({"jobs": jobs, "label": "kill9"})
        headers = {"prefer": "respond-async"} if asynchronous else {}
        try:
            c = http.client.HTTPConnection(host, port, timeout=5)
            c.request("POST", "/batches", body=body, headers=headers)
            r = c.getresponse()
            data = r.read()
            if r.status in (201, 202):
                acked.append(json.loads(data)["id"])
        except (OSError, http.client.HTTPException, ValueError):
            time.sleep(0.01)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "fanout"))
    ap.add_argument("--database-url")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp()
    db = args.database_url or f"sqlite://{tmp}/kill9.db"

    total_acked = total_lost = total_stuck = 0
    statuses = {}
    for rnd_i in range(args.rounds):
        proc, host, port = start(args.binary, db)
        acked, stop = [], threading.Event()
        threads = [threading.Thread(target=client, args=(host, port, acked, stop, rnd_i * 10 + k)) for k in range(4)]
        for t in threads:
            t.start()
        time.sleep(random.uniform(0.2, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        stop.set()
        for t in threads:
            t.join()

        proc, host, port = start(args.binary, db)
        lost = stuck = 0
        c = http.client.HTTPConnection(host, port, timeout=10)
        deadline = time.monotonic() + 10
        for bid in acked:
            while True:
                c.request("GET", f"/batches/{bid}")
                r = c.getresponse()
                data = r.read()
                if r.status != 200:
                    break
                b = json.loads(data)
                if b["finished_at"] or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            if r.status != 200:
                lost += 1
                continue
            st = b["status"]
            statuses[st] = statuses.get(st, 0) + 1
            if st == "running":
                stuck += 1
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        total_acked += len(acked)
        total_lost += lost
        total_stuck += stuck
        print(f"# round {rnd_i + 1}: acknowledged {len(acked)}, lost {lost}, left running {stuck}", file=sys.stderr)

    print("| rounds | acknowledged batches | lost | left `running` | statuses after restart |")
    print("|---:|---:|---:|---:|---|")
    print(f"| {args.rounds} | {total_acked} | {total_lost} | {total_stuck} | "
          + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())) + " |")
    sys.exit(1 if total_lost or total_stuck else 0)


if __name__ == "__main__":
    main()
