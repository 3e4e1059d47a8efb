#!/usr/bin/env python3
"""Protocols benchmark: fanout against oha (and h2load for HTTP/2) over HTTPS with keep-alive,
HTTP/2, HTTPS without keep-alive, and plain HTTP, one local nginx, same run.

Usage: bench/protocols.py [--requests 20000] [--concurrency 64] [--rounds 5]
         [--only SCENARIO ...] [--fanout PATH] [--key ec|rsa] [--dry-run]

Needs: `apt-get install -y nginx-light nghttp2-client` (nginx, h2load), the `openssl` CLI,
`cargo install oha --locked`, and a release build of fanout with TLS (`--ca-file`).

Makes a private CA and a certificate for `localhost` (subjectAltName DNS:localhost,
IP:127.0.0.1) with `openssl` in a temp dir, then starts nginx (Debian's nginx-light, one
worker, no access log, `return 200 "ok"`) with three servers on loopback ports: plain HTTP;
HTTPS (`ssl_session_cache shared:SSL:10m`, `keepalive_requests 100000`, HTTP/1.1 only); and
HTTPS with HTTP/2 (`http2 on;` on nginx ≥ 1.25.1, `listen ... ssl http2` before; whichever
`nginx -t` takes). Scenarios, each round running them in this order, every tool back to back:

  https-keepalive     oha --cacert CA              vs fanout
  http2               oha --http2 --cacert CA      vs fanout with `"http_version": "2"`;
                      h2load -c 1 -m C and -c 2 -m C/2 (total streams = C) as the C ceiling
  https-no-keepalive  oha --disable-keepalive      vs fanout with `"keep_alive": false`
  http-plain          oha                          vs fanout (plain HTTP must not regress)

fanout runs two ways, as in bench/load.py: `fanout run` in-process and through its HTTP API
(`fanout serve`, memory://, POST /batches). Throughput is each tool's own requests/s figure
(oha's summary.requestsPerSec, fanout's summary.throughput_per_s, h2load's "req/s"), as
bench/load.py takes it; p99 is each tool's own (h2load gives none); ratios are taken within a
round, then their median over the rounds. fanout's summary.connections and the p50 of
summary.phases tls_ms are printed where the output has them. `--dry-run` only makes the
certificates and nginx, checks with curl, openssl s_client and h2load that every server
answers as meant, prints the commands a run would use, and stops. Loopback only.
"""

import argparse
import datetime
import http.client
import json
import os
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from load import FANOUT, free_port  # noqa: E402  (paths and ports as bench/load.py has them)

# name: nginx server, extra oha flags, job options, floor (MISSED under it), target as printed.
SCENARIOS = {
    "https-keepalive": {"server": "tls", "oha": [], "job": {}, "floor": 1.0,
                        "target": "≥1.0× (goal 1.3×)"},
    "http2": {"server": "h2", "oha": ["--http2"], "job": {"http_version": "2"}, "floor": 1.0,
              "target": "≥1.0× oha --http2"},
    "https-no-keepalive": {"server": "tls", "oha": ["--disable-keepalive"], "job": {"keep_alive": False},
                           "floor": 1.0, "target": "≥1.0× oha --disable-keepalive"},
    "http-plain": {"server": "plain", "oha": [], "job": {}, "floor": 1.4, "target": "1.4–1.6×"},
}
TOOLS = ("oha", "fanout run", "fanout API")


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


# --- certificates -------------------------------------------------------------------------

def make_certs(tmp, key):
    """A private CA and a server certificate for localhost / 127.0.0.1 signed by it, with the
    openssl CLI: (CA cert, server cert, server key) paths."""
    newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if key == "ec" else ["-newkey", "rsa:2048"]
    usage = "digitalSignature" if key == "ec" else "digitalSignature,keyEncipherment"
    ca_cnf, srv_cnf, ext_cnf = (os.path.join(tmp, n) for n in ("ca.cnf", "server.cnf", "server-ext.cnf"))
    with open(ca_cnf, "w") as f:
        f.write("[req]\nprompt = no\ndistinguished_name = dn\nx509_extensions = v3_ca\n"
                "[dn]\nCN = fanout bench CA\n"
                "[v3_ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n"
                "subjectKeyIdentifier = hash\n")
    with open(srv_cnf, "w") as f:
        f.write("[req]\nprompt = no\ndistinguished_name = dn\n[dn]\nCN = localhost\n")
    with open(ext_cnf, "w") as f:
        f.write("[v3_server]\nbasicConstraints = critical,CA:FALSE\n"
                f"keyUsage = critical,{usage}\nextendedKeyUsage = serverAuth\n"
                "subjectAltName = DNS:localhost,IP:127.0.0.1\n"
                "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid,issuer\n")
    ca, ca_key = os.path.join(tmp, "ca.pem"), os.path.join(tmp, "ca.key")
    cert, cert_key, csr = (os.path.join(tmp, n) for n in ("server.pem", "server.key", "server.csr"))
    steps = [
        ["openssl", "req", "-x509", "-config", ca_cnf, *newkey, "-nodes", "-keyout", ca_key, "-out", ca,
         "-days", "2"],
        ["openssl", "req", "-new", "-config", srv_cnf, *newkey, "-nodes", "-keyout", cert_key, "-out", csr],
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-set_serial",
         str(int.from_bytes(os.urandom(8), "big")), "-days", "2", "-extfile", ext_cnf, "-extensions", "v3_server",
         "-out", cert],
        ["openssl", "verify", "-CAfile", ca, cert],
    ]
    for cmd in steps:
        p = run(cmd)
        if p.returncode != 0:
            sys.exit(f"{shlex.join(cmd)} failed:\n{p.stderr}")
    return ca, cert, cert_key


# --- nginx --------------------------------------------------------------------------------

def nginx_facts():
    """(version tuple, has ssl module, has http2 module), from `nginx -V`."""
    p = run(["nginx", "-V"])
    text = p.stdout + p.stderr
    m = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", text)
    version = tuple(int(x) for x in m.groups()) if m else (0, 0, 0)
    return version, "--with-http_ssl_module" in text, "--with-http_v2_module" in text


def nginx_conf(tmp, ports, cert, key, ssl, h2_form):
    """nginx.conf text: plain always; the TLS server if `ssl`; the HTTP/2 one in `h2_form`
    ("directive": `http2 on;`, "listen": `listen ... ssl http2`, None: none)."""
    tls = f"""
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_session_cache shared:SSL:10m;
    keepalive_requests 100000;
    location / {{ return 200 "ok"; }}"""
    servers = [f'  server {{ listen 127.0.0.1:{ports["plain"]}; location / {{ return 200 "ok"; }} }}']
    if ssl:
        servers.append(f"  server {{\n    listen 127.0.0.1:{ports['tls']} ssl;{tls}\n  }}")
    if h2_form == "directive":
        servers.append(f"  server {{\n    listen 127.0.0.1:{ports['h2']} ssl;\n    http2 on;{tls}\n  }}")
    elif h2_form == "listen":
        servers.append(f"  server {{\n    listen 127.0.0.1:{ports['h2']} ssl http2;{tls}\n  }}")
    body = "\n".join(servers)
    return f"""
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
{body}
}}
"""


def distinct_ports(k):
    ports = set()
    while len(ports) < k:
        ports.add(free_port())
    return list(ports)


def wait_port(port, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def start_nginx(tmp, cert, key):
    """nginx with the servers this nginx can have: (ports by server, conf path, {scenario:
    why it is skipped}, the http2 form used, nginx version)."""
    version, ssl, h2 = nginx_facts()
    skipped = {}
    if not ssl:
        for name, s in SCENARIOS.items():
            if s["server"] != "plain":
                skipped[name] = "nginx -V shows no --with-http_ssl_module"
    elif not h2:
        skipped["http2"] = "nginx -V shows no --with-http_v2_module"
    plain, tls, h2p = distinct_ports(3)
    ports = {"plain": plain, "tls": tls, "h2": h2p}
    conf = os.path.join(tmp, "nginx.conf")
    # `http2 on;` came in nginx 1.25.1 (and `listen ... http2` is deprecated there); try the
    # form the version says first, then the other, and keep the one `nginx -t` takes.
    forms = ["directive", "listen"] if version >= (1, 25, 1) else ["listen", "directive"]
    if "http2" in skipped:
        forms = []
    h2_form, errors = None, []
    for form in forms + [None]:
        with open(conf, "w") as f:
            f.write(nginx_conf(tmp, ports, cert, key, ssl, form))
        t = run(["nginx", "-t", "-c", conf])
        if t.returncode == 0:
            h2_form = form
            break
        errors.append(f"{form or 'no http2 server'}: {t.stderr.strip()}")
        if form is None:
            sys.exit("nginx -t rejects the configuration:\n" + "\n".join(errors))
    if h2_form is None and "http2" not in skipped:
        skipped["http2"] = "nginx -t takes neither `http2 on;` nor `listen ... ssl http2`: " + "; ".join(errors)
    subprocess.run(["nginx", "-c", conf], check=True)
    for server, port in ports.items():
        if server == "plain" or (server == "tls" and ssl) or (server == "h2" and h2_form):
            if not wait_port(port):
                stop_nginx(conf, tmp)
                sys.exit(f"nginx does not answer on 127.0.0.1:{port} ({server}); see {tmp}/error.log")
    return ports, conf, skipped, h2_form, version


def stop_nginx(conf, tmp):
    pid_file = os.path.join(tmp, "nginx.pid")
    if not os.path.exists(pid_file):
        return
    subprocess.run(["nginx", "-c", conf, "-s", "stop"], capture_output=True)
    for _ in range(100):  # the master removes its pid file as it exits
        if not os.path.exists(pid_file):
            return
        time.sleep(0.05)
    print(f"# nginx did not stop within 5 s (pid file {pid_file})", file=sys.stderr)


# --- the tools ----------------------------------------------------------------------------

def oha_flags():
    """The installed oha's flags for JSON output and for the private CA."""
    if shutil.which("oha") is None:
        return None
    text = run(["oha", "--help"]).stdout
    output = ["--output-format", "json"] if "--output-format" in text else ["-j"]
    ca = "--cacert" if "--cacert" in text else "--insecure"
    return output, ca


def oha_cmd(flags, url, n, c, extra, ca):
    output, ca_flag = flags
    tls = ([ca_flag, ca] if ca_flag == "--cacert" else [ca_flag]) if url.startswith("https") else []
    return ["oha", "-n", str(n), "-c", str(c), "--no-tui", *output, *extra, *tls, url]


def oha(cmd, n):
    p = run(cmd)
    if p.returncode != 0:
        sys.exit(f"{shlex.join(cmd)} failed:\n{p.stderr}")
    r = json.loads(p.stdout)
    s = r["summary"]
    if s.get("successRate", 1) < 1 or r.get("errorDistribution"):
        print(f"# oha: success rate {s.get('successRate')}, errors {r.get('errorDistribution')}", file=sys.stderr)
    return {"rps": s["requestsPerSec"], "p99": r["latencyPercentiles"]["p99"] * 1000}


def h2load_cmd(url, n, c, clients):
    return ["h2load", "-n", str(n), "-c", str(clients), "-t", str(min(clients, os.cpu_count() or 1)),
            "-m", str(max(c // clients, 1)), url]


def h2load(cmd, n):
    p = run(cmd)
    out = p.stdout
    m = re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", out)
    done = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", out)
    if p.returncode != 0 or not m or not done:
        sys.exit(f"{shlex.join(cmd)} failed:\n{out}\n{p.stderr}")
    if "Application protocol: h2" not in out:
        sys.exit(f"{shlex.join(cmd)} did not negotiate h2:\n{out}")
    if int(done.group(1)) != n:
        print(f"# h2load: {done.group(1)} of {n} succeeded", file=sys.stderr)
    return {"rps": float(m.group(1)), "p99": None}


def batch(url, n, c, job):
    return {"jobs": [{"kind": "http", "url": url, **job}], "load": {"repeat": n}, "concurrency": c, "results": "none"}


def measured(s):
    """A fanout summary's figures: throughput, p99, and connections / TLS p50 where present."""
    return {"rps": s["throughput_per_s"], "p99": s["duration_ms"]["p99"],
            "connections": s.get("connections"), "tls_p50": tls_p50(s.get("phases"))}


def tls_p50(phases):
    """The p50 of the TLS phase in summary.phases, whichever of a few likely shapes it has."""
    if isinstance(phases, list):
        phases = {p.get("name") or p.get("phase"): p for p in phases if isinstance(p, dict)}
    if not isinstance(phases, dict):
        return None
    for key in ("tls_ms", "tls"):
        v = phases.get(key)
        if isinstance(v, (int, float)):
            return v
        if isinstance(v, dict):
            for k in ("p50", "p50_ms", "median"):
                if isinstance(v.get(k), (int, float)):
                    return v[k]
    return None


def run_cmd(binary, spec, ca, n, tls):
    return [binary, "run", spec, "--allow-net", "127.0.0.1", *(["--ca-file", ca] if tls else []),
            "--format", "json", "--max-jobs", str(max(n, 1000000))]


def fanout_run(cmd, n):
    p = run(cmd, env={**os.environ, "RUST_LOG": "warn"})
    try:
        b = json.loads(p.stdout)
    except json.JSONDecodeError:
        sys.exit(f"{shlex.join(cmd)} exited {p.returncode} without a JSON batch:\n{p.stderr[-4000:]}")
    s = b["summary"]
    if s["succeeded"] != n:
        sys.exit(f"fanout run: {s['succeeded']} of {n} succeeded: {s.get('errors')}")
    return measured(s)


def serve_cmd(binary, api, ca, tls):
    return [binary, "serve", "--listen", f"127.0.0.1:{api}", "--database-url", "memory://",
            "--allow-net", "127.0.0.1", *(["--ca-file", ca] if tls else []), "--max-jobs", "1000000"]


def fanout_api(binary, body, ca, n, tls, tmp):
    """A fresh `fanout serve` (as bench/load.py starts one per measure), POST /batches, its
    summary."""
    api = free_port()
    cmd = serve_cmd(binary, api, ca, tls)
    log_path = os.path.join(tmp, "serve.log")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, env={**os.environ, "RUST_LOG": "warn"})
    try:
        for _ in range(200):
            if proc.poll() is not None:
                sys.exit(f"{shlex.join(cmd)} exited {proc.returncode}:\n{open(log_path).read()[-4000:]}")
            try:
                h = http.client.HTTPConnection("127.0.0.1", api, timeout=1)
                h.request("GET", "/healthz")
                if h.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.05)
        else:
            sys.exit(f"{shlex.join(cmd)} did not answer /healthz in 10 s")
        h = http.client.HTTPConnection("127.0.0.1", api, timeout=600)
        h.request("POST", "/batches", body=body, headers={"Content-Type": "application/json"})
        resp = h.getresponse()
        raw = resp.read()
        try:
            s = json.loads(raw)["summary"]
        except (ValueError, KeyError):
            sys.exit(f"fanout API: POST /batches answered {resp.status}: {raw[:2000]!r}")
        if s["succeeded"] != n:
            sys.exit(f"fanout API: {s['succeeded']} of {n} succeeded: {s.get('errors')}")
        return measured(s)
    finally:
        proc.terminate()
        proc.wait()


# --- the run ------------------------------------------------------------------------------

def urls(ports):
    return {"plain": f"http://127.0.0.1:{ports['plain']}/", "tls": f"https://127.0.0.1:{ports['tls']}/",
            "h2": f"https://127.0.0.1:{ports['h2']}/"}


def plan(args, ports, ca, flags, tmp):
    """Per scenario, its URL, batch file and the argv of each tool a round runs, in order (the
    API one is the `fanout serve` a fresh server starts with; the batch is then POSTed to it)."""
    n, c = args.requests, args.concurrency
    u = urls(ports)
    out = {}
    for name in args.only:
        s = SCENARIOS[name]
        url, tls = u[s["server"]], s["server"] != "plain"
        spec = os.path.join(tmp, f"{name}.json")
        with open(spec, "w") as f:
            json.dump(batch(url, n, c, s["job"]), f)
        steps = {
            "oha": oha_cmd(flags, url, n, c, s["oha"], ca) if flags else ["oha", "(not installed)"],
            "fanout run": run_cmd(args.fanout, spec, ca, n, tls),
            "fanout API": serve_cmd(args.fanout, "PORT", ca, tls),  # then POST /batches with the batch
        }
        if name == "http2":
            for k in args.h2load_clients:
                steps[f"h2load -c {k}"] = h2load_cmd(url, n, c, k)
        out[name] = {"url": url, "tls": tls, "spec": spec, "steps": steps}
    return out


def one_round(args, planned, ca, tmp):
    n = args.requests
    got = {}
    for name, p in planned.items():
        with open(p["spec"]) as f:
            body = f.read()
        r = {}
        for tool, cmd in p["steps"].items():
            if tool == "oha":
                r[tool] = oha(cmd, n)
            elif tool == "fanout run":
                r[tool] = fanout_run(cmd, n)
            elif tool == "fanout API":
                r[tool] = fanout_api(args.fanout, body, ca, n, p["tls"], tmp)
            else:
                r[tool] = h2load(cmd, n)
        got[name] = r
    return got


def fmt(v, spec=",.0f"):
    return "—" if v is None else format(v, spec)


def summarize_connections(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "—"
    if all(isinstance(v, (int, float)) for v in vals):
        return f"{statistics.median(vals):,.0f}"
    if all(isinstance(v, dict) for v in vals):
        keys = [k for k in vals[0] if all(isinstance(v.get(k), (int, float)) for v in vals)]
        if keys:
            return ", ".join(f"{k} {statistics.median(v[k] for v in vals):,.0f}" for k in keys)
    return json.dumps(vals[-1], separators=(",", ":"))


def report(args, rows, planned, skipped, versions):
    n, c = args.requests, args.concurrency
    print(f"# fanout protocols benchmark, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print()
    print(f"Command: `{shlex.join([os.path.relpath(sys.argv[0])] + sys.argv[1:])}`  ")
    print(f"{n:,} requests at concurrency {c}, {len(rows)} rounds; " + ", ".join(versions) + ".")
    print()
    print("| round | scenario | tool | requests/s | p99 ms | × oha |")
    print("|---:|---|---|---:|---:|---:|")
    for i, got in enumerate(rows):
        for name, r in got.items():
            base = r["oha"]["rps"]
            for tool, v in r.items():
                print(f"| {i + 1} | {name} | {tool} | {v['rps']:,.0f} | {fmt(v['p99'], '.2f')} "
                      f"| {v['rps'] / base:.2f} |")
    print()
    h2cols = [t for t in planned.get("http2", {}).get("steps", {}) if t.startswith("h2load")]
    print("| scenario | oha req/s | fanout run req/s | fanout API req/s | run × oha | API × oha | target "
          "| oha p99 ms | run p99 ms | API p99 ms | h2load req/s |")
    print("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|")
    for name in args.only:
        if name in skipped:
            print(f"| {name} | skipped: {skipped[name]} | | | | | | | | | |")
            continue
        s = SCENARIOS[name]
        med = {t: statistics.median(g[name][t]["rps"] for g in rows) for t in rows[0][name]}
        p99 = {t: statistics.median(g[name][t]["p99"] for g in rows) for t in TOOLS}
        ratio = {t: statistics.median(g[name][t]["rps"] / g[name]["oha"]["rps"] for g in rows)
                 for t in ("fanout run", "fanout API")}
        marks = {t: f"{x:.2f}" + (" MISSED" if x < s["floor"] else "") for t, x in ratio.items()}
        h2 = "; ".join(f"{med[t]:,.0f} ({t[len('h2load '):]})" for t in h2cols) if name == "http2" else "—"
        print(f"| {name} | {med['oha']:,.0f} | {med['fanout run']:,.0f} | {med['fanout API']:,.0f} "
              f"| {marks['fanout run']} | {marks['fanout API']} | {s['target']} "
              f"| {p99['oha']:.2f} | {p99['fanout run']:.2f} | {p99['fanout API']:.2f} | {h2} |")
    print()
    print("| scenario | fanout | connections (median) | TLS p50 ms (median) |")
    print("|---|---|---:|---:|")
    for name in args.only:
        if name in skipped:
            continue
        for t in ("fanout run", "fanout API"):
            tls = [g[name][t]["tls_p50"] for g in rows if g[name][t]["tls_p50"] is not None]
            conns = summarize_connections([g[name][t]["connections"] for g in rows])
            print(f"| {name} | {t} | {conns} | {fmt(statistics.median(tls) if tls else None, '.3f')} |")
    print()
    print("Commands (one round runs each scenario's, in this order):")
    print()
    for name, p in planned.items():
        for tool, cmd in p["steps"].items():
            then = ", then `POST /batches` with the batch" if tool == "fanout API" else ""
            print(f"- {name}, {tool}: `{shlex.join(cmd)}`{then}")
        print(f"  - batch: `{json.dumps(batch(p['url'], n, c, SCENARIOS[name]['job']))}`")


def curl_check(cmd, want_body, want_version, what):
    p = run(["curl", "-sS", "--max-time", "5", "-o", "-", "-w", "\n%{http_version}", *cmd])
    body, _, version = p.stdout.rpartition("\n")
    ok = p.returncode == 0 and body == want_body and version == want_version
    print(f"{'ok ' if ok else 'BAD'} {what}: curl {shlex.join(cmd)} -> {body!r} HTTP/{version} {p.stderr.strip()}")
    return ok


def dry_run(ports, ca, skipped, tmp):
    u = urls(ports)
    oks = [curl_check([u["plain"]], "ok", "1.1", "plain HTTP")]
    if "https-keepalive" not in skipped:
        tls = ports["tls"]
        oks.append(curl_check(["--cacert", ca, u["tls"]], "ok", "1.1", "HTTPS, IP SAN 127.0.0.1"))
        oks.append(curl_check(["--cacert", ca, "--resolve", f"localhost:{tls}:127.0.0.1",
                               f"https://localhost:{tls}/"], "ok", "1.1", "HTTPS, DNS SAN localhost"))
        oks.append(curl_check(["--http2", "--cacert", ca, u["tls"]], "ok", "1.1",
                              "HTTPS server without http2 stays on HTTP/1.1 when h2 is offered"))
        # The session cache: a second connection resumes the first one's session.
        p = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{tls}", "-servername", "localhost",
                            "-CAfile", ca, "-verify_return_error", "-reconnect"],
                           input="", capture_output=True, text=True, timeout=30)
        reused = p.stdout.count("Reused, ")
        ok = p.returncode == 0 and "Verify return code: 0 (ok)" in p.stdout and reused >= 1
        print(f"{'ok ' if ok else 'BAD'} openssl s_client -reconnect: verify "
              f"{'ok' if 'Verify return code: 0 (ok)' in p.stdout else 'failed'}, {reused} of 5 reconnections resumed")
        oks.append(ok)
    if "http2" not in skipped:
        oks.append(curl_check(["--http2", "--cacert", ca, u["h2"]], "ok", "2", "HTTP/2 over TLS (ALPN h2)"))
        for k in (1, 2):
            cmd = h2load_cmd(u["h2"], 100, 64, k)
            r = h2load(cmd, 100)
            print(f"ok  h2load: {shlex.join(cmd)} -> {r['rps']:,.0f} req/s, h2")
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    if not all(oks):
        sys.exit(f"some checks failed; nginx's log: {tmp}/error.log")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", action="append", choices=list(SCENARIOS),
                    help="run this scenario only (repeatable); default: all, in the order listed")
    ap.add_argument("--fanout", default=FANOUT, help="the fanout binary (default: target/release/fanout)")
    ap.add_argument("--key", choices=["ec", "rsa"], default="ec",
                    help="server and CA key type: ec (P-256, default) or rsa (2048 bits)")
    ap.add_argument("--h2load-clients", default="1,2",
                    help="h2load connections for the http2 ceiling, comma-separated; streams per connection "
                         "are --concurrency divided by this (default 1,2)")
    ap.add_argument("--dry-run", action="store_true",
                    help="only make the certificates and nginx, check them with curl/openssl/h2load, print the plan")
    args = ap.parse_args()
    args.only = [s for s in SCENARIOS if s in (args.only or SCENARIOS)]
    args.h2load_clients = [int(x) for x in args.h2load_clients.split(",") if x.strip()]
    needed = ["openssl", "nginx"] + ([] if args.dry_run else ["oha"])
    if "http2" in args.only or args.dry_run:
        needed.append("h2load")
    missing = [t for t in needed if shutil.which(t) is None]
    if missing:
        sys.exit(f"missing: {', '.join(missing)} (apt-get install -y nginx-light nghttp2-client; "
                 "cargo install oha --locked)")
    if not args.dry_run and not os.access(args.fanout, os.X_OK):
        sys.exit(f"no fanout binary at {args.fanout} (cargo build --release, or --fanout PATH)")
    # SIGTERM (a CI timeout, say) unwinds through the finally below like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = tempfile.mkdtemp(prefix="fanout-protocols-")
    conf = None
    try:
        ca, cert, key = make_certs(tmp, args.key)
        ports, conf, skipped, h2_form, version = start_nginx(tmp, cert, key)
        for name, why in skipped.items():
            if name in args.only:
                print(f"# skipping {name}: {why}", file=sys.stderr)
        flags = oha_flags()
        if flags and flags[1] == "--insecure":
            print("# this oha has no --cacert: it runs with --insecure (no certificate check)", file=sys.stderr)
        runnable = argparse.Namespace(**{**vars(args), "only": [s for s in args.only if s not in skipped]})
        planned = plan(runnable, ports, ca, flags, tmp)
        nginx_v = ".".join(map(str, version))
        if h2_form:
            nginx_v += f" (http2 as {'`http2 on;`' if h2_form == 'directive' else '`listen ... ssl http2`'})"
        if args.dry_run:
            print(f"nginx {nginx_v}; ports {ports}; CA {ca}")
            dry_run(ports, ca, skipped, tmp)
            print()
            print("A run would use:")
            for name, p in planned.items():
                for tool, cmd in p["steps"].items():
                    then = ", then POST /batches with the batch" if tool == "fanout API" else ""
                    print(f"- {name}, {tool}: {shlex.join(cmd)}{then}")
                with open(p["spec"]) as f:
                    print(f"  batch: {f.read()}")
            return
        rows = []
        for r in range(args.rounds):
            got = one_round(args, planned, ca, tmp)
            rows.append(got)
            print(f"# round {r + 1}: " + "; ".join(
                f"{name}: " + ", ".join(f"{t} {v['rps']:,.0f}/s" for t, v in g.items()) for name, g in got.items()),
                file=sys.stderr)
        oha_v = run(["oha", "--version"]).stdout.strip() or "oha"
        h2_v = run(["h2load", "--version"]).stdout.strip() if "http2" in planned else None
        versions = [f"nginx {nginx_v}, one worker", oha_v, *([h2_v] if h2_v else []),
                    f"{'EC P-256' if args.key == 'ec' else 'RSA 2048'} certificates"]
        report(args, rows, planned, skipped, versions)
    finally:
        if conf:
            stop_nginx(conf, tmp)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
