#!/usr/bin/env bash
# Benchmarks the real server through the CLI's bench command, for each
# engine in process and as a plugin, at 1 and 64 concurrent clients, and
# prints one table (markdown) with ops/s, p50/p99 latency and the ratio
# plugin / in-process. Client and server run side by side on this machine.
#
#   scripts/bench-server.sh [DURATION] [WORKLOADS...]
#   e.g. scripts/bench-server.sh 10s put get cas-low
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10s}
shift || true
WORKLOADS=("$@")
[ ${#WORKLOADS[@]} -gt 0 ] || WORKLOADS=(put get cas-low cas-high scan)
scripts/ensure-deps.sh
BIN=$(mktemp -d)
go build -o "$BIN/" ./cmd/flaredb-server ./cmd/flaredb ./cmd/flaredb-rocksdb-plugin ./cmd/flaredb-badger-plugin
PORT=${PORT:-17470}
results=$(mktemp)
pid=""
cleanup() { if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi; wait 2>/dev/null || true; rm -rf "$BIN"; }
trap cleanup EXIT

run_mode() { # engine mode
  local engine=$1 mode=$2 data args
  data=$(mktemp -d)
  args=(--engine "$engine")
  [ "$mode" = plugin ] && args=(--engine plugin --plugin-path "$BIN/flaredb-$engine-plugin")
  "$BIN/flaredb-server" --data-dir "$data" --listen "127.0.0.1:$PORT" --metrics-listen "" "${args[@]}" 2>"$data.log" &
  pid=$!
  for _ in $(seq 100); do "$BIN/flaredb" --addr "127.0.0.1:$PORT" status >/dev/null 2>&1 && break; sleep 0.1; done
  for wl in "${WORKLOADS[@]}"; do
    for c in 1 64; do
      if ! out=$("$BIN/flaredb" --addr "127.0.0.1:$PORT" --json bench --workload "$wl" --concurrency "$c" --duration "$DUR" 2>"$data.bench"); then
        echo "bench $engine $mode $wl -c $c failed: $(tail -1 "$data.bench")" >&2
        continue
      fi
      echo "$engine $mode $wl $c $out" >>"$results"
    done
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  rm -rf "$data" "$data.log" "$data.bench"
}

for engine in rocksdb badger; do
  run_mode "$engine" in-process
  run_mode "$engine" plugin
done

python3 - "$results" <<'PY'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    eng, mode, wl, c, js = line.split(" ", 4)
    r = json.loads(js)
    rows[(eng, wl, int(c), mode)] = r
print("| engine | workload | clients | in-process ops/s | plugin ops/s | plugin / in-process | in-process p50 / p99 | plugin p50 / p99 |")
print("| --- | --- | ---: | ---: | ---: | ---: | --- | --- |")
for (eng, wl, c, mode), r in sorted(rows.items()):
    if mode != "in-process":
        continue
    p = rows.get((eng, wl, c, "plugin"))
    if not p:
        continue
    a, b = r["ops_per_second"], p["ops_per_second"]
    ms = lambda us: "%.2f ms" % (us / 1000.0)
    lat = lambda x: "%s / %s" % (ms(x["latency_us"]["p50"]), ms(x["latency_us"]["p99"]))
    print(f"| {eng} | {wl} | {c} | {a:,.0f} | {b:,.0f} | {b/a:.0%} | {lat(r)} | {lat(p)} |")
PY
