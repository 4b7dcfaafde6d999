#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian machine: installs what is missing, then checks
# formatting and lints, builds, and runs every test (unit and integration, real sockets on
# 127.0.0.1 only). CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v kill >/dev/null || need_apt+=(procps)
command -v cc >/dev/null || need_apt+=(gcc)
# systemd-analyze: the systemd unit is verified by the tests.
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
# man: the man pages (`--man DIR`) are rendered by the tests, as `man -l` would show them.
command -v man >/dev/null || need_apt+=(man-db)
# tmux: the full-screen chat-client is driven in a real terminal (tests/it/tui.rs).
command -v tmux >/dev/null || need_apt+=(tmux)
# Chromium and Node.js: the web page is tested end to end in headless Chromium, driven by
# playwright-core (tests/it/browser.rs runs tests/web/e2e.mjs).
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm >/dev/null || need_apt+=(npm)
# redis-server: the cluster tests (tests/it/cluster.rs) start their own on a free loopback port.
command -v redis-server >/dev/null || need_apt+=(redis-server)
# irssi and weechat: the IRC listener is tested with both, driven in tmux (tests/it/irc_clients.rs).
command -v irssi >/dev/null || need_apt+=(irssi)
command -v weechat >/dev/null || need_apt+=(weechat-curses)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}"
fi
if ! command -v cargo >/dev/null; then
  echo "scripts/test.sh: cargo is missing; install Rust (https://rustup.rs) first" >&2
  exit 1
fi
if command -v rustup >/dev/null; then
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
fi

if [ ! -d tests/web/node_modules/playwright-core ]; then
  echo "== npm ci (tests/web: playwright-core, no browser download)"
  (cd tests/web && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets --features bench -- -D warnings"
cargo clippy --all-targets --features bench --quiet -- -D warnings
echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --features bench 2>&1 | tee "$log"
# One closing line for the whole run: cargo's last "test result" is the doc-tests' (0 tests).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
