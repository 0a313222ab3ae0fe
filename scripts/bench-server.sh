#!/usr/bin/env bash
# Benchmarks the real server through the CLI's bench command, for each
# engine in process and as a plugin, at 1 and 64 concurrent clients, and
# prints one markdown table: ops/s, p50/p99 latency and the ratio
# plugin / in-process. Client and server run side by side on this machine.
#
#   scripts/bench-server.sh [DURATION] [WORKLOADS...]
#   e.g. scripts/bench-server.sh 10s put get cas-low
#   ROUNDS=5 scripts/bench-server.sh 5s put get   # repeat, interleaved
#   ENGINES=rocksdb scripts/bench-server.sh 5s    # one engine only
#
# With ROUNDS > 1 every round runs each engine in process and then as a
# plugin, so that both modes see the same drift of a noisy machine; the
# table gives the median ops/s of each mode, the ratio of the medians and
# the range of the per-round ratios, and the latencies of the median run.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10s}
shift || true
WORKLOADS=("$@")
[ ${#WORKLOADS[@]} -gt 0 ] || WORKLOADS=(put get cas-low cas-high scan)
ROUNDS=${ROUNDS:-1}
read -r -a ENGINE_LIST <<<"${ENGINES:-rocksdb badger}"
scripts/ensure-deps.sh
BIN=$(mktemp -d)
go build -o "$BIN/" ./cmd/flaredb-server ./cmd/flaredb ./cmd/flaredb-rocksdb-plugin ./cmd/flaredb-badger-plugin
PORT=${PORT:-17470}
results=$(mktemp)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$BIN" "$results"
}
trap cleanup EXIT

run_mode() { # round engine mode
  local round=$1 engine=$2 mode=$3 data args
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
      echo "$round $engine $mode $wl $c $out" >>"$results"
    done
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  rm -rf "$data" "$data.log" "$data.bench"
}

for round in $(seq "$ROUNDS"); do
  for engine in "${ENGINE_LIST[@]}"; do
    run_mode "$round" "$engine" in-process
    run_mode "$round" "$engine" plugin
  done
done

python3 - "$results" "$ROUNDS" <<'PY'
import json, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    rnd, eng, mode, wl, c, js = line.split(" ", 5)
    runs.setdefault((eng, wl, int(c), mode), {})[int(rnd)] = json.loads(js)
rounds = int(sys.argv[2])

def median_run(rs):
    """The run with the median ops/s (the lower middle one for an even count)."""
    ordered = sorted(rs.values(), key=lambda r: r["ops_per_second"])
    return ordered[(len(ordered) - 1) // 2]

ms = lambda us: "%.2f ms" % (us / 1000.0)
lat = lambda x: "%s / %s" % (ms(x["latency_us"]["p50"]), ms(x["latency_us"]["p99"]))
if rounds > 1:
    print(f"Medians of {rounds} interleaved rounds.\n")
    print("| engine | workload | clients | in-process ops/s | plugin ops/s | plugin / in-process | per-round ratios | in-process p50 / p99 | plugin p50 / p99 |")
    print("| --- | --- | ---: | ---: | ---: | ---: | --- | --- | --- |")
else:
    print("| engine | workload | clients | in-process ops/s | plugin ops/s | plugin / in-process | in-process p50 / p99 | plugin p50 / p99 |")
    print("| --- | --- | ---: | ---: | ---: | ---: | --- | --- |")
for (eng, wl, c, mode), rs in sorted(runs.items()):
    if mode != "in-process":
        continue
    ps = runs.get((eng, wl, c, "plugin"))
    if not ps:
        continue
    a, b = median_run(rs), median_run(ps)
    ratio = b["ops_per_second"] / a["ops_per_second"]
    row = f"| {eng} | {wl} | {c} | {a['ops_per_second']:,.0f} | {b['ops_per_second']:,.0f} | {ratio:.0%} |"
    if rounds > 1:
        per = [ps[r]["ops_per_second"] / rs[r]["ops_per_second"] for r in sorted(rs) if r in ps]
        row += f" {min(per):.0%}–{max(per):.0%} |"
    print(row + f" {lat(a)} | {lat(b)} |")
PY
