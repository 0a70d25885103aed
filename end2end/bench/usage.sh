#!/usr/bin/env bash
# The usage benchmark, on loopback only and bounded in time:
#  1. `tollgate bench-usage` on a database of its own: 100 organizations, one
#     with EVENTS usage events (10 million by default) over 90 days, loaded
#     with generate_series through the rollup triggers; then p50/p95 over 30
#     runs of every query behind /account/usage for 90 days, the log's first
#     page and filtered pages 100 deep, the usage writer's rate with and
#     without the rollups, and the rollups' lag at 5,000 events a second;
#  2. the gateway's throughput (a charged call, wrk, 64 connections) with the
#     rollup trigger on and off, alternating, three rounds each.
# The databases are dropped at the end.
# Usage: bash end2end/bench/usage.sh   (EVENTS=10000000, SECONDS_PER_RUN=10)
export TOLLGATE_PROFILE=release
source "$(dirname "$0")/../../.ci/lib.sh"
ensure_system_packages
command -v wrk >/dev/null 2>&1 || apt_install wrk
command -v psql >/dev/null 2>&1 || apt_install postgresql-client
build_site

EVENTS="${EVENTS:-10000000}"
DURATION="${SECONDS_PER_RUN:-10}"
OUT="$ROOT/end2end/.bench"
mkdir -p "$OUT"
ADMIN_URL="$("$TOLLGATE_BIN" db admin-url)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for name in tollgate_bench_usage tollgate_bench_rollups; do
    psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $name" >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT

log "1. usage queries on $EVENTS events"
DB="$(DATABASE_URL="$ADMIN_URL" "$TOLLGATE_BIN" db fresh tollgate_bench_usage)"
DATABASE_URL="$DB" TOLLGATE_LOG=error timeout 3600 "$TOLLGATE_BIN" bench-usage --events "$EVENTS" | tee "$OUT/usage.txt"
psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS tollgate_bench_usage"

log "2. gateway throughput with the rollups on and off (alternating)"
DB="$(DATABASE_URL="$ADMIN_URL" "$TOLLGATE_BIN" db fresh tollgate_bench_rollups)"
export DATABASE_URL="$DB"
"$TOLLGATE_BIN" seed-demo >/dev/null
psql -q "$DB" -c "UPDATE plans SET rate_limit_per_sec = 1000000"
KEY="$("$TOLLGATE_BIN" create-api-key --email demo@tollgate.local --mode live --name bench)"
"$TOLLGATE_BIN" adjust-credits --email demo@tollgate.local --amount 100000000 --reason "benchmark credits" >/dev/null
TOLLGATE_ADDR="127.0.0.1:3211" TOLLGATE_LOG=warn "$TOLLGATE_BIN" serve >"$OUT/server-rollups.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:3211/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
cat >"$OUT/sentiment-rollups.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"text": "Great docs and a fast, reliable API."}'
wrk.headers["Authorization"] = "Bearer $KEY"
wrk.headers["Content-Type"] = "application/json"
LUA
declare -A SUM=([on]=0 [off]=0)
for round in 1 2 3; do
  for state in on off; do
    if [ "$state" = on ]; then t=ENABLE; else t=DISABLE; fi
    psql -q "$DB" -c "ALTER TABLE usage_events $t TRIGGER usage_rollup_insert"
    wrk -t2 -c64 -d"${DURATION}s" -s "$OUT/sentiment-rollups.lua" http://127.0.0.1:3211/v1/text/sentiment >"$OUT/rollups-$state-$round.txt"
    r=$(awk '/Requests\/sec/ { printf "%d", $2 }' "$OUT/rollups-$state-$round.txt")
    SUM[$state]=$(( SUM[$state] + r ))
    echo "round $round, rollups $state: $r req/s"
  done
done
psql -q "$DB" -c "ALTER TABLE usage_events ENABLE TRIGGER usage_rollup_insert"
awk -v on="${SUM[on]}" -v off="${SUM[off]}" 'BEGIN { printf "charged sentiment, mean of 3: rollups on %d req/s, off %d req/s, ratio %.3f\n", on/3, off/3, on/off }' | tee -a "$OUT/usage.txt"
"$TOLLGATE_BIN" check-ledger
