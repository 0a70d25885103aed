#!/usr/bin/env bash
# Gateway benchmarks, on loopback only and bounded in time:
#  1. throughput side by side with the peer, an nginx proxy to an nginx
#     upstream on this machine: Tollgate free (`/v1/ping`, a free provider
#     route to the same upstream) and charged (1-credit `/v1/text/sentiment`
#     and a 1-credit provider route), on one hot key and on 1,000 keys
#     across 100 organizations; each with its ratio to the nginx proxy and a
#     profile per 1,000 calls (server CPU, PostgreSQL CPU, and
#     pg_stat_statements' statements);
#  2. p99 latency at half the metered and half the charged throughput,
#     against the same handler unmetered;
#  3. the overspend test: two app instances × 100 concurrent clients on one
#     key with a small balance, then the ledger is checked.
# Usage: bash end2end/bench/run.sh   (SECONDS_PER_RUN=10 by default)
# The release profile: the fastest binary.
export TOLLGATE_PROFILE=release
source "$(dirname "$0")/../../.ci/lib.sh"
ensure_system_packages
ensure_npm_packages
command -v wrk >/dev/null 2>&1 || apt_install wrk
command -v nginx >/dev/null 2>&1 || apt_install nginx-light
command -v psql >/dev/null 2>&1 || apt_install postgresql-client
command -v bc >/dev/null 2>&1 || apt_install bc
if ! command -v oha >/dev/null 2>&1; then
  log "installing oha (a load generator with a fixed request rate)"
  cargo install oha --locked
fi
# BENCH_BIN=path runs a binary built before (to alternate two builds);
# otherwise the release site is built from this checkout.
if [ -n "${BENCH_BIN:-}" ]; then
  TOLLGATE_BIN="$BENCH_BIN"
  [ -f "$SITE_ROOT/hash.txt" ] || build_front
else
  build_site
fi

DURATION="${SECONDS_PER_RUN:-10}"
OUT="$ROOT/end2end/.bench"
mkdir -p "$OUT"
# The embedded cluster restarted, so it loads pg_stat_statements.
"$TOLLGATE_BIN" db stop >/dev/null 2>&1 || true
ADMIN_URL="$("$TOLLGATE_BIN" db admin-url)"
DB="$(DATABASE_URL="$ADMIN_URL" "$TOLLGATE_BIN" db fresh tollgate_bench)"
export DATABASE_URL="$DB"
"$TOLLGATE_BIN" seed-demo >/dev/null
psql -q "$DB" -c "UPDATE plans SET rate_limit_per_sec = 1000000"
KEY="$("$TOLLGATE_BIN" create-api-key --email demo@tollgate.local --mode live --name bench)"
"$TOLLGATE_BIN" adjust-credits --email demo@tollgate.local --amount 100000000 --reason "benchmark credits" >/dev/null
log "seeding 100 organizations with 10 keys each"
"$TOLLGATE_BIN" bench-keys --orgs 100 --keys-per-org 10 >"$OUT/keys.txt"
psql -q "$DB" -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"

# The peer: nginx proxying to an nginx upstream (which answers every path
# with a small JSON body); Tollgate's provider routes go to the same upstream.
NGINX="$OUT/nginx"
mkdir -p "$NGINX/logs"
cat >"$NGINX/nginx.conf" <<CONF
worker_processes auto;
daemon off;
pid $NGINX/nginx.pid;
error_log $NGINX/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  upstream api { server 127.0.0.1:3301; keepalive 128; }
  server { listen 127.0.0.1:3301; location / { default_type application/json; return 200 '{"ok":true}'; } }
  server {
    listen 127.0.0.1:3302;
    location / { proxy_pass http://api; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
CONF
"$TOLLGATE_BIN" add-route --prefix /v1/bench-free --upstream http://127.0.0.1:3301/free --endpoint bench_free --scope bench --price 0 >/dev/null
"$TOLLGATE_BIN" add-route --prefix /v1/bench-paid --upstream http://127.0.0.1:3301/paid --endpoint bench_paid --scope bench --price 1 >/dev/null

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
start_instance() { # port
  if curl -fsS "http://127.0.0.1:$1/readyz" >/dev/null 2>&1; then
    echo "port $1 is taken by another server: stop it first" >&2; exit 1
  fi
  TOLLGATE_BENCH=1 TOLLGATE_ADDR="127.0.0.1:$1" TOLLGATE_LOG=warn "$TOLLGATE_BIN" serve >"$OUT/server-$1.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$1/readyz" >/dev/null 2>&1 && return; sleep 0.1; done
  echo "instance on $1 did not start" >&2; exit 1
}
start_instance 3201
nginx -p "$NGINX" -c "$NGINX/nginx.conf" &
PIDS+=($!)
for _ in $(seq 1 50); do curl -fsS http://127.0.0.1:3302/ >/dev/null 2>&1 && break; sleep 0.1; done

cat >"$OUT/auth.lua" <<LUA
wrk.headers["Authorization"] = "Bearer $KEY"
wrk.headers["Content-Type"] = "application/json"
LUA
cat >"$OUT/sentiment.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"text": "Great docs and a fast, reliable API."}'
wrk.headers["Authorization"] = "Bearer $KEY"
wrk.headers["Content-Type"] = "application/json"
LUA

# 1,000 keys across 100 organizations: each request a random one.
many_keys() { # method body
  cat <<LUA
local keys = {}
for line in io.lines("$OUT/keys.txt") do keys[#keys + 1] = line end
math.randomseed(os.time())
request = function()
  local key = keys[math.random(#keys)]
  return wrk.format("$1", nil, {["Authorization"] = "Bearer " .. key, ["Content-Type"] = "application/json"}, $2)
end
LUA
}
many_keys GET nil >"$OUT/many-get.lua"
many_keys POST "'{\"text\": \"Great docs and a fast, reliable API.\"}'" >"$OUT/many-post.lua"

rps() { awk '/Requests\/sec/ { printf "%d", $2 }' "$1"; }
run_wrk() { # name url script
  wrk -t2 -c64 -d"${DURATION}s" --latency -s "$3" "$2" >"$OUT/$1.txt"
  if grep -q "Non-2xx" "$OUT/$1.txt"; then
    echo "$1: $(grep Non-2xx "$OUT/$1.txt") (of $(awk '/requests in/ {print $1}' "$OUT/$1.txt")): not a measurement" >&2; exit 1
  fi
  echo "$1: $(rps "$OUT/$1.txt") req/s ($(grep -E '^ +99%' "$OUT/$1.txt" | awk '{print $2}') p99 at saturation)"
}
# The server's processes, by their command line (the binary may be a copy).
SERVE="$(basename "$TOLLGATE_BIN") serve"
# CPU time (user + system, in clock ticks) of every process whose command
# line matches: where the cores go during a run is the profile of the gateway.
cpu_ticks() { # pattern
  local total=0 pid
  for pid in $(pgrep -f "$1"); do
    total=$(( total + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0) ))
  done
  echo "$total"
}
# Each run starts once the previous one's usage events are written (the
# writer works through its queue after the load stops), so no run pays for
# the one before.
settle() {
  local before after
  for _ in $(seq 1 120); do
    before=$(psql -tA "$DB" -c "SELECT count(*) FROM usage_events")
    sleep 0.5
    after=$(psql -tA "$DB" -c "SELECT count(*) FROM usage_events")
    [ "$before" = "$after" ] && return
  done
}
profile_run() { # name url script
  local s0 p0 n0 t0 t1 calls
  settle
  psql -q -o /dev/null "$DB" -c "SELECT pg_stat_statements_reset()"
  s0=$(cpu_ticks "$SERVE"); p0=$(cpu_ticks "postgres"); n0=$(cpu_ticks "nginx"); t0=$(date +%s.%N)
  run_wrk "$@"
  t1=$(date +%s.%N)
  calls=$(awk '/requests in/ {print $1}' "$OUT/$1.txt")
  awk -v s="$(( $(cpu_ticks "$SERVE") - s0 ))" -v p="$(( $(cpu_ticks "postgres") - p0 ))" \
      -v x="$(( $(cpu_ticks "nginx") - n0 ))" -v hz="$(getconf CLK_TCK)" -v n="$calls" -v t="$(echo "$t1 - $t0" | bc)" \
    'BEGIN { printf "  profile: per 1,000 calls, %.0f ms CPU in tollgate, %.0f ms in PostgreSQL, %.0f ms in nginx (of %.0f ms wall x 2 cores); the rest is wrk and the kernel\n", s/hz*1e6/n, p/hz*1e6/n, x/hz*1e6/n, t*1e6/n }'
  # The statements behind them, per 1,000 calls.
  psql -tA -F ' | ' "$DB" -v n="$calls" <<'SQL' | sed 's/^/    /'
SELECT round(calls * 1000.0 / :n, 1) AS per_1000, round(total_exec_time::numeric * 1000 / :n, 1) AS ms_per_1000,
       left(regexp_replace(query, '\s+', ' ', 'g'), 90)
  FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
 ORDER BY total_exec_time DESC LIMIT 6;
SQL
}
log "throughput, 64 connections, ${DURATION}s each"
profile_run nginx_proxy "http://127.0.0.1:3302/ping" "$OUT/auth.lua"
profile_run unmetered_ping "http://127.0.0.1:3201/bench/unmetered/ping" "$OUT/auth.lua"
profile_run metered_ping "http://127.0.0.1:3201/v1/ping" "$OUT/auth.lua"
profile_run free_route "http://127.0.0.1:3201/v1/bench-free/ping" "$OUT/auth.lua"
profile_run metered_sentiment "http://127.0.0.1:3201/v1/text/sentiment" "$OUT/sentiment.lua"
profile_run charged_route "http://127.0.0.1:3201/v1/bench-paid/ping" "$OUT/auth.lua"
log "the same on 1,000 keys across 100 organizations"
profile_run many_ping "http://127.0.0.1:3201/v1/ping" "$OUT/many-get.lua"
profile_run many_free_route "http://127.0.0.1:3201/v1/bench-free/ping" "$OUT/many-get.lua"
profile_run many_sentiment "http://127.0.0.1:3201/v1/text/sentiment" "$OUT/many-post.lua"
profile_run many_charged_route "http://127.0.0.1:3201/v1/bench-paid/ping" "$OUT/many-get.lua"
PEER=$(rps "$OUT/nginx_proxy.txt")
log "ratios to the nginx proxy ($PEER req/s)"
for name in unmetered_ping metered_ping free_route metered_sentiment charged_route many_ping many_free_route many_sentiment many_charged_route; do
  awk -v n="$name" -v r="$(rps "$OUT/$name.txt")" -v p="$PEER" 'BEGIN { printf "  %-20s %7d req/s  %.3f x nginx\n", n, r, r / p }'
done

# p50 and p99 at a fixed rate with oha: `latency NAME PATH RATE [NOTE]`.
latency() {
  local file="$OUT/latency-${1//\//_}-$3.txt"
  settle
  oha --no-tui -z "${DURATION}s" -q "$3" -c 32 --latency-correction -H "Authorization: Bearer $KEY" \
    "http://127.0.0.1:3201$2" >"$file"
  echo "$1 at $3 req/s${4:-}: p50 $(awk '/50.00%/ {print $3, $4}' "$file"), p99 $(awk '/99.00%/ {print $3, $4}' "$file")"
}
# The charged route at half its own throughput (the target's rate), then
# free pings at half the metered throughput and at two fixed rates, to show
# where the added latency grows; each beside the handler unmetered.
CHARGED_HALF=$(( $(rps "$OUT/charged_route.txt") / 2 ))
log "latency at $CHARGED_HALF req/s (half the charged route's)"
latency unmetered/ping /bench/unmetered/ping "$CHARGED_HALF"
latency charged/route /v1/bench-paid/ping "$CHARGED_HALF"
HALF=$(( $(rps "$OUT/metered_ping.txt") / 2 ))
for rate in "$HALF" 2000 1000; do
  log "latency at $rate req/s"
  latency unmetered/ping /bench/unmetered/ping "$rate"
  latency metered/ping /v1/ping "$rate"
done

log "overspend: 2 instances x 100 concurrent clients, one key, 50 credits"
start_instance 3202
psql -q -o /dev/null "$DB" -v ON_ERROR_STOP=1 <<'SQL'
UPDATE org_meters SET spend_cap = NULL;
SELECT ledger_post(org_id, 'adjustment', 'bench:drain', ARRAY['included', 'purchased', 'adjustments'],
                   ARRAY[-included, -purchased + 50, included + purchased - 50], now())
  FROM org_meters WHERE org_id = (SELECT m.org_id FROM memberships m JOIN users u ON u.id = m.user_id WHERE u.email = 'demo@tollgate.local');
SQL
T0=$(psql -tA "$DB" -c "SELECT now()")
START=$(psql -tA "$DB" -c "SELECT included + purchased FROM org_meters m JOIN memberships s ON s.org_id = m.org_id JOIN users u ON u.id = s.user_id WHERE u.email = 'demo@tollgate.local'")
wrk -t1 -c100 -d5s -s "$OUT/sentiment.lua" http://127.0.0.1:3201/v1/text/sentiment >"$OUT/overspend-a.txt" &
WRK_A=$!
wrk -t1 -c100 -d5s -s "$OUT/sentiment.lua" http://127.0.0.1:3202/v1/text/sentiment >"$OUT/overspend-b.txt" &
WRK_B=$!
wait "$WRK_A" "$WRK_B"
sleep 2 # let the usage batches land
psql "$DB" -v ON_ERROR_STOP=1 -v start="$START" -v t0="'$T0'" <<'SQL'
WITH o AS (SELECT m.org_id FROM memberships m JOIN users u ON u.id = m.user_id WHERE u.email = 'demo@tollgate.local')
SELECT :start AS starting_balance,
       (SELECT included + purchased FROM org_meters WHERE org_id = (SELECT org_id FROM o)) AS final_balance,
       (SELECT coalesce(sum(e.amount), 0) FROM ledger_entries e JOIN ledger_transactions t ON t.id = e.transaction_id
         WHERE t.org_id = (SELECT org_id FROM o) AND e.account = 'revenue' AND t.created_at >= :t0::timestamptz) AS charged,
       (SELECT count(*) FROM (SELECT transaction_id FROM ledger_entries GROUP BY 1 HAVING sum(amount) <> 0) x) AS unbalanced_transactions,
       (SELECT count(*) FROM ledger_transactions t WHERE t.org_id = (SELECT org_id FROM o) AND t.kind = 'usage'
           AND t.created_at >= :t0::timestamptz
           AND NOT EXISTS (SELECT 1 FROM usage_events u WHERE u.request_id = t.request_id)) AS charged_calls_without_event,
       (SELECT count(*) FROM usage_events WHERE org_id = (SELECT org_id FROM o) AND status = 402 AND at >= :t0::timestamptz) AS refused_402;
SQL
echo "requests sent: $(grep -h 'requests in' "$OUT"/overspend-*.txt | awk '{s += $1} END {print s}')"
log "ledger audit: every transaction balances, every balance equals its ledger accounts"
"$TOLLGATE_BIN" check-ledger
