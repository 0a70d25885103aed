#!/usr/bin/env bash
# Exactness under faults, on loopback and bounded in time (about 3 minutes):
# two instances x 100 clients spend one key's credits on the 1-credit
# sentiment endpoint for 20 s while, at 10 s, one of these happens:
#   kill     kill -9 of one instance, restarted at once;
#   drain    the same kill, on a balance of 500;
#   pause    SIGSTOP of one instance past its lease's expiry while the other
#            reclaims it, then SIGCONT: its late batch is fenced;
#   pgcrash  PostgreSQL stopped in immediate mode and started again.
# After each: `check-ledger` sound; no open lease once the reclaim ran;
# credits spent = charges in the ledger = usage events' credits; the 200s
# the clients saw <= charges <= 200s + the killed instance's connections;
# the balance never negative (sampled every 100 ms); every request id a
# client saw as 200 is in the usage events and covered by a ledger posting.
# Usage: bash end2end/bench/faults.sh [kill drain pause pgcrash]
# (BENCH_BIN=path runs a prebuilt binary.)
export TOLLGATE_PROFILE=release
source "$(dirname "$0")/../../.ci/lib.sh"
ensure_system_packages
command -v node >/dev/null 2>&1 || apt_install nodejs
CLIENT="$ROOT/end2end/bench/faults-client.mjs"
command -v psql >/dev/null 2>&1 || apt_install postgresql-client
if [ -n "${BENCH_BIN:-}" ]; then
  TOLLGATE_BIN="$BENCH_BIN"
  [ -f "$SITE_ROOT/hash.txt" ] || build_front
else
  build_site
fi
SCENARIOS=("$@")
[ ${#SCENARIOS[@]} -gt 0 ] || SCENARIOS=(kill drain pause pgcrash)
OUT="$ROOT/end2end/.faults"
rm -rf "$OUT" && mkdir -p "$OUT"
ADMIN_URL="$("$TOLLGATE_BIN" db admin-url)"
DB="$(DATABASE_URL="$ADMIN_URL" "$TOLLGATE_BIN" db fresh tollgate_faults)"
export DATABASE_URL="$DB"
"$TOLLGATE_BIN" seed-demo >/dev/null
psql -q "$DB" -c "UPDATE plans SET rate_limit_per_sec = 1000000, endpoints = '{*}'"
KEY="$("$TOLLGATE_BIN" create-api-key --email demo@tollgate.local --mode live --name faults)"
ORG="(SELECT m.org_id FROM memberships m JOIN users u ON u.id = m.user_id WHERE u.email = 'demo@tollgate.local')"

declare -A PID
cleanup() { for p in "${PID[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
start_instance() { # port
  if curl -fsS "http://127.0.0.1:$1/readyz" >/dev/null 2>&1; then
    echo "port $1 is taken by another server: stop it first" >&2; exit 1
  fi
  TOLLGATE_ADDR="127.0.0.1:$1" TOLLGATE_LOG=warn "$TOLLGATE_BIN" serve >>"$OUT/server-$1.log" 2>&1 &
  PID[$1]=$!
  for _ in $(seq 1 200); do curl -fsS "http://127.0.0.1:$1/readyz" >/dev/null 2>&1 && return; sleep 0.1; done
  echo "instance on $1 did not start" >&2; exit 1
}
sql() { psql -tA -v ON_ERROR_STOP=1 "$DB" -c "$1"; }
FAILED=0
check() { # description condition(0/1)
  if [ "$2" = 1 ]; then echo "  ok: $1"; else echo "  FAILED: $1"; FAILED=1; fi
}

scenario() { # name balance fault
  local name=$1 balance=$2 fault=$3
  log "$name: 2 instances x 100 clients, one key, balance $balance, $fault at 10 s"
  sql "UPDATE org_meters SET spend_cap = NULL WHERE org_id = $ORG" >/dev/null
  sql "SELECT ledger_post(org_id, 'adjustment', 'faults:$name', ARRAY['included', 'purchased', 'adjustments'],
                          ARRAY[-included, -purchased + $balance, included + purchased - $balance], now())
         FROM org_meters WHERE org_id = $ORG" >/dev/null
  local t0 start
  t0=$(sql "SELECT now()")
  start=$(sql "SELECT included + purchased FROM org_meters WHERE org_id = $ORG")
  start_instance 3211
  start_instance 3212
  # The balance, sampled: the meters and what open leases hold.
  ( while :; do sql "SELECT (SELECT included + purchased FROM org_meters WHERE org_id = $ORG), (SELECT coalesce(min(amount - spent), 0) FROM credit_leases WHERE closed_at IS NULL)" 2>/dev/null; sleep 0.1; done ) >"$OUT/$name-samples.txt" &
  local sampler=$!
  node "$CLIENT" http://127.0.0.1:3211/v1/text/sentiment "$KEY" 20 100 "$OUT/$name-a-200s" >"$OUT/$name-client-a.json" 2>&1 &
  local wa=$!
  node "$CLIENT" http://127.0.0.1:3212/v1/text/sentiment "$KEY" 20 100 "$OUT/$name-b-200s" >"$OUT/$name-client-b.json" 2>&1 &
  local wb=$!
  sleep 10
  local killed=0
  case "$fault" in
    kill)
      kill -9 "${PID[3211]}"; wait "${PID[3211]}" 2>/dev/null || true
      killed=100
      start_instance 3211 ;;
    pause)
      kill -STOP "${PID[3211]}"
      # Past its lease's expiry (10 s) and the other's reclaim (every 5 s).
      sleep 17
      kill -CONT "${PID[3211]}" ;;
    pgcrash)
      "$TOLLGATE_BIN" db crash
      "$TOLLGATE_BIN" db url >/dev/null ;;
  esac
  wait "$wa" "$wb" || true
  # Idle leases go back within seconds; a killed instance's once expired.
  for _ in $(seq 1 60); do
    [ "$(sql "SELECT count(*) FROM credit_leases WHERE closed_at IS NULL")" = 0 ] && break
    sleep 0.5
  done
  sleep 1
  kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true
  kill "${PID[3211]}" "${PID[3212]}" 2>/dev/null || true; wait "${PID[3211]}" "${PID[3212]}" 2>/dev/null || true
  # The usage events a killed instance had queued (calls on the exact path)
  # are rebuilt from the ledger, as the usage job does every few minutes.
  TOLLGATE_LOG=error "$TOLLGATE_BIN" recover-usage >/dev/null
  cat "$OUT/$name-a-200s" "$OUT/$name-b-200s" | sort -u >"$OUT/$name-200s.txt"
  echo "  clients: $(cat "$OUT/$name-client-a.json") and $(cat "$OUT/$name-client-b.json")"
  local ok200 open final charged events min_meters min_lease missing uncovered fenced
  ok200=$(wc -l <"$OUT/$name-200s.txt")
  open=$(sql "SELECT count(*) FROM credit_leases WHERE closed_at IS NULL")
  final=$(sql "SELECT included + purchased FROM org_meters WHERE org_id = $ORG")
  charged=$(sql "SELECT coalesce(sum(e.amount), 0) FROM ledger_entries e JOIN ledger_transactions t ON t.id = e.transaction_id
                  WHERE t.org_id = $ORG AND e.account = 'revenue' AND t.created_at >= '$t0'")
  events=$(sql "SELECT coalesce(sum(credits), 0) FROM usage_events WHERE org_id = $ORG AND at >= '$t0'")
  min_meters=$(awk -F'|' 'NF == 2 { if (m == "" || $1 < m) m = $1 } END { print m + 0 }' "$OUT/$name-samples.txt")
  min_lease=$(awk -F'|' 'NF == 2 { if (m == "" || $2 < m) m = $2 } END { print m + 0 }' "$OUT/$name-samples.txt")
  # Every 200 a client saw: its usage event, and the ledger posting that
  # covers it (its batch, or its own charge on the exact path).
  local checked
  checked=$(psql -qtA -v ON_ERROR_STOP=1 "$DB" <<SQL
CREATE TEMP TABLE seen (request_id text);
\copy seen FROM '$OUT/$name-200s.txt'
SELECT (SELECT count(*) FROM seen s WHERE NOT EXISTS (SELECT 1 FROM usage_events u WHERE u.request_id = s.request_id AND u.status = 200 AND u.credits > 0))
       || ' ' ||
       (SELECT count(*) FROM seen s JOIN usage_events u ON u.request_id = s.request_id
         WHERE NOT EXISTS (SELECT 1 FROM ledger_transactions t WHERE t.idempotency_key = coalesce(u.journal, 'usage:' || u.request_id)));
SQL
)
  missing=${checked%% *}
  uncovered=${checked##* }
  fenced=$(sql "SELECT count(*) FROM usage_events WHERE org_id = $ORG AND at >= '$t0' AND status = 503")
  echo "  starting balance $start, final $final; 200s seen $ok200; charged $charged; usage events' credits $events; 503s $fenced; open leases $open"
  local ledger_ok=0
  TOLLGATE_LOG=error "$TOLLGATE_BIN" check-ledger >"$OUT/$name-ledger.txt" 2>&1 && ledger_ok=1
  check "check-ledger is sound: $(head -1 "$OUT/$name-ledger.txt")" "$ledger_ok"
  check "no open lease left" "$([ "$open" = 0 ] && echo 1 || echo 0)"
  check "credits spent ($((start - final))) = charges ($charged) = usage events' credits ($events)" \
    "$([ $((start - final)) = "$charged" ] && [ "$charged" = "$events" ] && echo 1 || echo 0)"
  check "200s seen ($ok200) <= charges ($charged) <= 200s + the killed instance's connections ($((ok200 + killed)))" \
    "$([ "$ok200" -le "$charged" ] && [ "$charged" -le $((ok200 + killed)) ] && echo 1 || echo 0)"
  check "the balance never negative (min sampled $min_meters, min lease rest $min_lease)" \
    "$([ "$min_meters" -ge 0 ] && [ "$min_lease" -ge 0 ] && echo 1 || echo 0)"
  check "every 200 seen is a usage event ($missing missing) covered by a ledger posting ($uncovered not)" \
    "$([ "$missing" = 0 ] && [ "$uncovered" = 0 ] && echo 1 || echo 0)"
  if [ "$name" = drain ]; then
    check "exactly $start charged, final balance 0" "$([ "$charged" = "$start" ] && [ "$final" = 0 ] && echo 1 || echo 0)"
  fi
  if [ "$name" = pause ]; then
    local reclaimed
    reclaimed=$(sql "SELECT count(*) FROM credit_leases WHERE closed_how = 'reclaimed' AND created_at >= '$t0'")
    check "the paused instance's lease was reclaimed ($reclaimed) and its late calls answered 503 uncharged ($fenced)" \
      "$([ "$reclaimed" -ge 1 ] && [ "$fenced" -ge 1 ] && echo 1 || echo 0)"
  fi
}

for s in "${SCENARIOS[@]}"; do
  case "$s" in
    kill) scenario kill 100000000 kill ;;
    drain) scenario drain 500 kill ;;
    pause) scenario pause 100000000 pause ;;
    pgcrash) scenario pgcrash 100000000 pgcrash ;;
    *) echo "unknown scenario $s" >&2; exit 2 ;;
  esac
done
[ "$FAILED" = 0 ] || { echo "a fault scenario failed" >&2; exit 1; }
log "every fault scenario held"
