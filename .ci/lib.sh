# Shared set-up for .ci/serve and .ci/test (sourced, not run). Each step
# installs what is missing and is quick when everything is already there.

set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$ROOT/end2end/node_modules/.bin:$PATH"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
TOLLGATE_BIN="$TARGET_DIR/release/tollgate"
CARGO_LEPTOS_VERSION=0.3.10

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

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

# PostgreSQL's server (for the embedded database), Node.js and npm; Chromium
# too when $1 is "browser".
ensure_system_packages() {
  local missing=()
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
  command -v node >/dev/null 2>&1 || missing+=(nodejs)
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  command -v cc >/dev/null 2>&1 || missing+=(build-essential)
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  if [ "${1:-}" = browser ]; then
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    apt_install "${missing[@]}"
  fi
}

ensure_rust_tools() {
  if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    log "adding the wasm32-unknown-unknown target"
    rustup target add wasm32-unknown-unknown
  fi
  if ! cargo leptos --version 2>/dev/null | grep -q "$CARGO_LEPTOS_VERSION"; then
    log "installing cargo-leptos $CARGO_LEPTOS_VERSION (about 10 minutes, once)"
    cargo install cargo-leptos --version "$CARGO_LEPTOS_VERSION" --locked
  fi
  # cargo-leptos would download wasm-bindgen; install the exact version the
  # lock file names instead.
  local wbg
  wbg="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock)"
  if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $wbg" ]; then
    log "installing wasm-bindgen-cli $wbg (a few minutes, once)"
    cargo install wasm-bindgen-cli --version "$wbg" --force
  fi
}

# The test runner: cargo-nextest (a process per test), at the version this
# toolchain is known to build.
CARGO_NEXTEST_VERSION=0.9.143
ensure_test_runner() {
  if ! cargo nextest --version 2>/dev/null | grep -q "$CARGO_NEXTEST_VERSION"; then
    log "installing cargo-nextest $CARGO_NEXTEST_VERSION (a few minutes, once)"
    cargo install cargo-nextest --version "$CARGO_NEXTEST_VERSION" --locked
  fi
}

# Playwright and wasm-opt (npm's binaryen 132; Debian's is too old).
ensure_npm_packages() {
  if [ ! -f end2end/node_modules/.package-lock.json ] ||
     [ end2end/package-lock.json -nt end2end/node_modules/.package-lock.json ]; then
    log "installing npm packages in end2end/"
    (cd end2end && npm ci --no-audit --no-fund --loglevel=error)
  fi
}

build_site() {
  log "building the portal (server and hydrated wasm, release)"
  cargo leptos build --release
}
