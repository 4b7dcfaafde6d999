#!/usr/bin/env bash
# Writes the man pages of chat-server, chat-client and chat-log (one page per subcommand too:
# chat-server-users-add.1, ...) into man/ (or the directory given), from the binaries' own
# clap definitions (`--man DIR`, clap_mangen), so they say what `--help` says. Then renders
# each one with `man -l` to check it. Read one with `man -l man/chat-server.1`.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-man}"

cargo build --release --bins --quiet
mkdir -p "$out"
for bin in chat-server chat-client chat-log; do
  "target/release/$bin" --man "$out"
done
for page in "$out"/*.1; do
  MANPAGER=cat MANWIDTH=80 man -l "$page" >/dev/null 2>&1 || {
    echo "man.sh: $page does not render" >&2
    exit 1
  }
done
echo "wrote $(ls "$out"/*.1 | wc -l) man pages into $out/"
