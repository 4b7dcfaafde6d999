#!/usr/bin/env bash
# Mutation testing: cargo-mutants changes one operator or return value at a time in the given
# source files and runs the whole test suite (unit and integration) against each change; a
# change no test notices ("missed") is a gap in the tests or an equivalent mutant.
#
#   scripts/mutants.sh                       the core files (minutes per file)
#   scripts/mutants.sh src/bans.rs ...       just these files
#   MUTANTS_JOBS=2 scripts/mutants.sh        two mutants at a time
#   MUTANTS_TEST_ARGS=--lib scripts/mutants.sh src/lines.rs
#                                            unit tests only: a quick first look
#
# Not part of scripts/test.sh: it builds and runs the suite once per mutant. Results go to
# target/mutants/mutants.out (caught.txt, missed.txt, timeout.txt, unviable.txt); the last lines
# printed are the score per file. See docs/TESTING.md.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo mutants --version >/dev/null 2>&1; then
  echo "== installing cargo-mutants"
  cargo install --locked cargo-mutants@27
fi

files=("$@")
if [ ${#files[@]} -eq 0 ]; then
  files=(src/store/bans/mod.rs src/server/limits.rs src/server/lines.rs src/server/outbox/mod.rs
         src/store/users.rs src/server/login.rs src/server/hub/mod.rs src/store/mod.rs)
fi
args=()
for f in "${files[@]}"; do
  [ -f "$f" ] || { echo "scripts/mutants.sh: no such file: $f" >&2; exit 2; }
  args+=(--file "$f")
done

out=target/mutants
mkdir -p "$out"
test_args=()
if [ -n "${MUTANTS_TEST_ARGS:-}" ]; then
  read -r -a test_args <<<"$MUTANTS_TEST_ARGS"
fi
status=0
# A mutant that makes a test hang is stopped after the timeout and counts as caught.
cargo mutants "${args[@]}" --output "$out" --jobs "${MUTANTS_JOBS:-1}" \
  --timeout "${MUTANTS_TIMEOUT:-180}" --build-timeout 600 --no-shuffle \
  -- "${test_args[@]}" || status=$?

# The score per file: caught (a timeout counts as caught) over viable mutants.
dir="$out/mutants.out"
echo
printf '%-24s %7s %7s %7s %9s %7s\n' file caught missed timeout unviable score
for f in "${files[@]}"; do
  count() { grep -c "^$f:" "$dir/$1.txt" 2>/dev/null || true; }
  c=$(count caught); m=$(count missed); t=$(count timeout); u=$(count unviable)
  viable=$((c + m + t))
  score=$(awk -v k=$((c + t)) -v v=$viable 'BEGIN { if (v) printf "%.0f%%", 100 * k / v; else print "-" }')
  printf '%-24s %7d %7d %7d %9d %7s\n' "$f" "$c" "$m" "$t" "$u" "$score"
done
if [ -s "$dir/missed.txt" ]; then
  echo
  echo "missed (each needs a test, or a line in docs/TESTING.md saying why it is equivalent):"
  sed 's/^/  /' "$dir/missed.txt"
fi
# cargo-mutants exits 2 when mutants were missed, 3 on timeouts: the table says which.
exit $((status == 2 || status == 3 ? 0 : status))
