#!/usr/bin/env bash
# Proves the Dockerfile's build stage has everything the build needs, without a Docker engine:
# builds the binary from a directory holding exactly what the build stage's COPY lines copy
# (offline, reusing this checkout's target directory), then runs the image's command with the
# image's ENV defaults and its HEALTHCHECK command against it, in a loopback-only network
# namespace. Usage: .ci/docker-context.sh (from anywhere in the checkout).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The build stage's COPY lines (those without --from), as "SRC... DEST" relative to WORKDIR.
context="$work/context"
mkdir -p "$context"
awk '/^FROM /{stage++} stage==1 && /^COPY / && !/--from/ {sub(/^COPY +/, ""); print}' \
  "$root/Dockerfile" | while read -r -a args; do
  dest="${args[-1]}"
  unset 'args[-1]'
  for src in "${args[@]}"; do
    if [[ "$dest" == */ ]]; then
      mkdir -p "$context/$dest"
      cp -a "$root/$src" "$context/$dest"
    else
      mkdir -p "$(dirname "$context/$dest")"
      cp -a "$root/$src" "$context/$dest"
    fi
  done
done
echo "docker context: $(cd "$context" && ls | tr '\n' ' ')"

# The build the Dockerfile runs, in debug so that the checkout's build is reused.
(cd "$context" && CARGO_TARGET_DIR="$root/target/docker-context" cargo build --locked --offline -q)
bin="$root/target/docker-context/debug/fanout"

# The image's ENV, with its paths moved under a scratch root, plus a token (a listener on
# 0.0.0.0 inside a container refuses to start without one).
image_root="$work/image"
mkdir -p "$image_root/var/lib/fanout/files" "$image_root/var/lib/fanout/data"
env_args=()
while read -r kv; do
  env_args+=("${kv//\/var\/lib\/fanout/$image_root/var/lib/fanout}")
done < <(awk '/^ENV /{on=1; sub(/^ENV +/, "")} on {line=$0; sub(/ *\\$/, "", line); n=split(line, kvs, / +/); for (i = 1; i <= n; i++) if (kvs[i] != "") print kvs[i]; if ($0 !~ /\\$/) on=0}' "$root/Dockerfile")
echo "image env: ${env_args[*]}"
cmd="$(sed -n 's/^CMD \["\(.*\)"\]$/\1/p' "$root/Dockerfile")"
check="$(sed -n 's/^ *CMD \["fanout", "\(.*\)"\]$/\1/p' "$root/Dockerfile")"
[ "$cmd" = serve ] && [ "$check" = healthcheck ] || { echo "unexpected CMD ($cmd) or HEALTHCHECK ($check)"; exit 1; }

unshare -n env -i PATH="$PATH" HOME="$work" "${env_args[@]}" FANOUT_API_TOKEN=docker-context \
  sh -c '
    ip link set lo up
    cd "$1"
    "$2" serve > "$1/serve.log" 2>&1 &
    server=$!
    for _ in $(seq 1 100); do "$2" healthcheck >/dev/null 2>&1 && break; sleep 0.1; done
    if ! "$2" healthcheck; then echo "HEALTHCHECK failed against the image defaults"; cat "$1/serve.log"; exit 1; fi
    grep -q "\"message\":\"listening\"\|listening" "$1/serve.log" || { echo "no listening line"; cat "$1/serve.log"; exit 1; }
    kill "$server"; wait "$server" || true
    if "$2" healthcheck 2>/dev/null; then echo "HEALTHCHECK passed with no server"; exit 1; fi
    test -f "$1/var/lib/fanout/data/fanout.db" || { echo "no database where the image keeps it"; exit 1; }
  ' sh "$image_root" "$bin"
echo "docker context: build, image defaults and HEALTHCHECK ok"
