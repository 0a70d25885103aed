# Shared set-up for .ci/serve, .ci/test and the benchmarks (sourced, not
# run). Each step installs what is missing and is quick when everything is
# already there. The site is built with cargo, wasm-bindgen, wasm-opt and
# esbuild directly (the same steps and names as `cargo leptos build`), so no
# cargo-leptos install stands in front of the first page; `cargo leptos
# watch` still works for development (README, "Develop").

set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CARGO_BIN_DIR="${CARGO_HOME:-$HOME/.cargo}/bin"
export PATH="$CARGO_BIN_DIR:$HOME/.cargo/bin:$ROOT/end2end/node_modules/.bin:$PATH"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
# The wasm build has a target directory of its own (as cargo-leptos's
# `target/front`), so it never waits for the server build's lock and the two
# can run at once.
FRONT_TARGET_DIR="$TARGET_DIR/front"
SITE_ROOT="$ROOT/target/site"
mkdir -p "$ROOT/target"
# `release` for .ci/serve and the benchmark; .ci/test uses `ci` (Cargo.toml).
TOLLGATE_PROFILE="${TOLLGATE_PROFILE:-release}"
TOLLGATE_BIN="$TARGET_DIR/$TOLLGATE_PROFILE/tollgate"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Phase timings: `phase NAME command...` runs the command and records how
# long it took in $TOLLGATE_TIMINGS (one "name<TAB>seconds" line each);
# `print_timings` prints them as a table. .ci/setup-time runs a cold
# set-up and reads the same file.
TOLLGATE_TIMINGS="${TOLLGATE_TIMINGS:-$ROOT/target/ci-timings.tsv}"
mkdir -p "$(dirname "$TOLLGATE_TIMINGS")"
RUN_STARTED="$(date +%s.%N)"
seconds_since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
phase() {
  local name="$1"; shift
  local t0 rc=0
  t0="$(date +%s.%N)"
  log "$name"
  "$@" || rc=$?
  printf '%s\t%s\n' "$name" "$(seconds_since "$t0")" >>"$TOLLGATE_TIMINGS"
  return "$rc"
}
print_timings() {
  local total
  total="$(seconds_since "$RUN_STARTED")"
  printf '\n%-62s %9s\n' "phase" "seconds" >&2
  awk -F'\t' '{ printf "%-62s %9.1f\n", $1, $2 }' "$TOLLGATE_TIMINGS" >&2
  printf '%-62s %9.1f\n' "wall clock, start to here (phases may overlap)" "$total" >&2
}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else echo "root rights are needed to run: $*" >&2; exit 1
  fi
}

APT_UPDATED=""
apt_install() {
  if [ -z "$APT_UPDATED" ]; then as_root apt-get update -qq; APT_UPDATED=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# PostgreSQL's server (for the embedded database), Node.js and npm;
# Chromium too when $1 is "browser".
ensure_system_packages() {
  local missing=()
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
  command -v node >/dev/null 2>&1 || missing+=(nodejs)
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  command -v cc >/dev/null 2>&1 || missing+=(build-essential)
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  if [ "${1:-}" = browser ]; then
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    # Python with venv, for the Stripe emulator (ensure_localstripe).
    command -v python3 >/dev/null 2>&1 || missing+=(python3)
    python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    apt_install "${missing[@]}"
  fi
}

ensure_wasm_target() {
  if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    log "adding the wasm32-unknown-unknown target"
    rustup target add wasm32-unknown-unknown
  fi
}

# wasm-bindgen-cli at exactly the version the lock file names (its output
# must match the wasm-bindgen crate), installed once into cargo's bin
# directory, where the next run (and CI's) finds it. Not `--locked`: its
# published lock file names a webpki-roots release the registry no longer
# serves, so cargo resolves its dependencies afresh within their bounds.
wasm_bindgen_version() {
  awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock
}
ensure_wasm_bindgen() {
  local wbg
  wbg="$(wasm_bindgen_version)"
  if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $wbg" ]; then
    log "installing wasm-bindgen-cli $wbg (about 4 minutes, once)"
    # A build directory of its own, so it never waits for the site's.
    local tmp
    tmp="$(mktemp -d)"
    cargo install wasm-bindgen-cli --version "$wbg" --force --quiet --target-dir "$tmp"
    rm -rf "$tmp"
  fi
}

# The test runner: cargo-nextest (a process per test), at the version this
# toolchain is known to build (a new machine of this kind has it already).
CARGO_NEXTEST_VERSION=0.9.143
ensure_test_runner() {
  if ! cargo nextest --version 2>/dev/null | grep -q "$CARGO_NEXTEST_VERSION"; then
    log "installing cargo-nextest $CARGO_NEXTEST_VERSION (a few minutes, once)"
    cargo install cargo-nextest --version "$CARGO_NEXTEST_VERSION" --locked
  fi
}

# Playwright, axe-core, wasm-opt (npm's binaryen 132; Debian's is too old)
# and esbuild (minifies the site's JS and CSS), at the lock file's versions.
ensure_npm_packages() {
  if [ ! -f end2end/node_modules/.package-lock.json ] ||
     [ end2end/package-lock.json -nt end2end/node_modules/.package-lock.json ]; then
    log "installing npm packages in end2end/"
    (cd end2end && npm ci --no-audit --no-fund --loglevel=error)
  fi
}

# localstripe (PyPI), a Stripe emulator with a fake Stripe.js, for the tests
# of the Stripe processor: installed once into its own virtualenv under the
# user's cache, where the next run (and CI's) finds it.
LOCALSTRIPE_VERSION=1.15.10
LOCALSTRIPE_VENV="${TOLLGATE_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tollgate}/localstripe-$LOCALSTRIPE_VERSION"
ensure_localstripe() {
  if ! "$LOCALSTRIPE_VENV/bin/python" -c 'import localstripe' >/dev/null 2>&1; then
    log "installing localstripe $LOCALSTRIPE_VERSION (the Stripe emulator of the tests, once)"
    rm -rf "$LOCALSTRIPE_VENV"
    python3 -m venv "$LOCALSTRIPE_VENV"
    "$LOCALSTRIPE_VENV/bin/pip" install --quiet --disable-pip-version-check "localstripe==$LOCALSTRIPE_VERSION"
  fi
}

# Starts localstripe on port $1 in the background (its log in $2), fresh
# and in memory only (it would otherwise write its whole store to
# /tmp/localstripe.pickle on every request), and waits until it answers.
# Prints its process id.
start_localstripe() {
  local port="$1" log_file="$2" pid
  "$LOCALSTRIPE_VENV/bin/python" -c '
import sys
import localstripe.resources as resources
resources.Store.dump_to_disk = lambda self: None
from localstripe.server import start
sys.argv = ["localstripe", "--port", sys.argv[1], "--from-scratch"]
start()
' "$port" >"$log_file" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/js.stripe.com/v3/" >/dev/null 2>&1 && { echo "$pid"; return 0; }
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  cat "$log_file" >&2
  echo "localstripe did not start on port $port" >&2
  return 1
}

# The server binary in $TOLLGATE_PROFILE.
build_server() {
  cargo build --locked --profile "$TOLLGATE_PROFILE" --bin tollgate
}

# The browser's half of the site, as `cargo leptos build --release` makes
# it: the `app` crate for wasm32 with `hydrate` in the `wasm-release`
# profile, wasm-bindgen's `web` glue, wasm-opt -Oz, the JS and the style
# sheet minified, `public/` copied to the site's root. The script and the
# wasm are named by their digests (`pkg/tollgate.<digest>.js`, `.wasm`,
# listed in `hash.txt` as Leptos reads it), so browsers may keep them for a
# year; every file gets a `.br` and a `.gz` beside it (src/http/assets.rs).
# The bindgen and wasm-opt output is kept beside the wasm build, keyed by the
# wasm's digest, so a clean clone with a warm target directory skips them.
build_front() {
  ensure_wasm_target
  ensure_wasm_bindgen &
  local bindgen_install=$!
  cargo build --locked --package app --lib --target wasm32-unknown-unknown \
    --no-default-features --features hydrate --profile wasm-release \
    --target-dir "$FRONT_TARGET_DIR" --quiet
  wait "$bindgen_install"
  local wasm="$FRONT_TARGET_DIR/wasm32-unknown-unknown/wasm-release/app.wasm"
  local digest cache
  digest="$(sha256sum "$wasm" | cut -c1-16)-$(wasm_bindgen_version)"
  cache="$FRONT_TARGET_DIR/site-pkg/$digest"
  if [ ! -f "$cache/done" ]; then
    rm -rf "$FRONT_TARGET_DIR/site-pkg"
    mkdir -p "$cache"
    wasm-bindgen --target web --out-name tollgate --out-dir "$cache" "$wasm"
    wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int \
      "$cache/tollgate_bg.wasm" -o "$cache/tollgate_bg.wasm"
    esbuild "$cache/tollgate.js" --minify --format=esm --log-level=warning \
      --outfile="$cache/tollgate.min.js"
    mv "$cache/tollgate.min.js" "$cache/tollgate.js"
    touch "$cache/done"
  fi
  rm -rf "$SITE_ROOT"
  mkdir -p "$SITE_ROOT/pkg"
  local js_digest wasm_digest
  js_digest="$(sha256sum "$cache/tollgate.js" | cut -c1-20)"
  wasm_digest="$(sha256sum "$cache/tollgate_bg.wasm" | cut -c1-20)"
  cp "$cache/tollgate.js" "$SITE_ROOT/pkg/tollgate.$js_digest.js"
  cp "$cache/tollgate_bg.wasm" "$SITE_ROOT/pkg/tollgate.$wasm_digest.wasm"
  printf 'js: %s\nwasm: %s\n' "$js_digest" "$wasm_digest" >"$SITE_ROOT/hash.txt"
  esbuild style/main.css --minify --log-level=warning --outfile="$SITE_ROOT/pkg/tollgate.css"
  cp -R public/. "$SITE_ROOT/"
  node .ci/precompress.mjs "$SITE_ROOT"/pkg/*.js "$SITE_ROOT"/pkg/*.wasm "$SITE_ROOT"/pkg/*.css \
    "$SITE_ROOT"/*.js "$SITE_ROOT"/*.svg
}

# The whole site in $TOLLGATE_PROFILE: the front (in the background, with
# its own log) while the server builds, so the two cores stay busy.
build_site() {
  local front_log="$ROOT/target/front-build.log" front rc=0
  phase "build: front (wasm-release, wasm-bindgen, wasm-opt, esbuild)" build_front >"$front_log" 2>&1 &
  front=$!
  phase "build: server ($TOLLGATE_PROFILE)" build_server || rc=$?
  wait "$front" || { cat "$front_log" >&2; echo "the front build failed" >&2; exit 1; }
  [ "$rc" = 0 ] || exit "$rc"
}
