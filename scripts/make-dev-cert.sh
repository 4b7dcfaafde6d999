#!/usr/bin/env bash
# Makes a self-signed certificate for testing TLS: tls/cert.pem and tls/key.pem, for the names
# given (default: localhost and 127.0.0.1). Not for production: use a real certificate there
# (see the README, "TLS").
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --quiet --release --bin chat-server -- gen-cert --out tls "$@"
