#!/usr/bin/env bash
# Three fanout instances sharing one PostgreSQL, on loopback: 127.0.0.1:8081, :8082 and :8083.
#
#   scripts/three-instances.sh                 # a fresh database on the local PostgreSQL
#   FANOUT_PG=postgres://user@host:5432/postgres scripts/three-instances.sh
#
# FANOUT_PG names a database to connect to for creating the run's own (`fanout_three`,
# dropped and made again at every start); default postgres://postgres@127.0.0.1:5432/postgres.
# Extra arguments go to every `fanout serve` (e.g. --allow-net 127.0.0.1 --shard-size 5000).
# Logs go to ./three-instances/node{1,2,3}.log. Ctrl-C stops all three.
set -euo pipefail
cd "$(dirname "$0")/.."
admin="${FANOUT_PG:-postgres://postgres@127.0.0.1:5432/postgres}"
db="${admin%/*}/fanout_three"
bin="${FANOUT_BIN:-target/release/fanout}"
[ -x "$bin" ] || cargo build --release
psql "$admin" -qAtc "DROP DATABASE IF EXISTS fanout_three" -c "CREATE DATABASE fanout_three"
mkdir -p three-instances
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT INT TERM
for n in 1 2 3; do
  "$bin" serve --listen "127.0.0.1:808$n" --database-url "$db" --instance-id "node$n" "$@" \
    >"three-instances/node$n.log" 2>&1 &
  pids+=($!)
done
for n in 1 2 3; do
  for _ in $(seq 1 50); do
    curl -sf "http://127.0.0.1:808$n/readyz" >/dev/null && break
    sleep 0.2
  done
done
curl -s http://127.0.0.1:8081/instances
echo
echo "three instances on $db: http://127.0.0.1:8081 http://127.0.0.1:8082 http://127.0.0.1:8083 (Ctrl-C stops them)"
wait
