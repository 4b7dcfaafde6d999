#!/usr/bin/env bash
# chat-log on generated messages.csv files of 1 and 10 million rows (the 10 million one is about
# 1.1 GB, in a temp dir), median wall time and peak memory of 3 runs each:
#   1. against pandas (pd.read_csv + the same filter + to_csv, what the original design used):
#      a filter matching a quarter of the rows (--grep tag1) and a selective one (one room, one
#      sender, a word), both --format csv; the outputs must be byte-identical;
#   2. against `grep -F` of the same literal, with a filter that matches nothing.
# Installs pandas with pip if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c "import pandas" 2>/dev/null || python3 -m pip install -q pandas
cargo build --release --quiet --bin chat-log
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/filter.py" <<'PY'
import sys
import pandas as pd
df = pd.read_csv(sys.argv[1], keep_default_na=False)
if sys.argv[2] == "quarter":
    sel = df[df["text"].str.contains("tag1", regex=False)]
else:
    sel = df[(df["room"] == "ops") & (df["sender"] == "user7") & df["text"].str.contains("comma")]
sel.to_csv(sys.stdout, index=False)
PY
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# run NAME CMD...: 3 runs of CMD, stdout to $work/NAME.out; appends "seconds peak-KiB" lines to
# $work/NAME.times. Wall time from the shell's clock (ms resolution), memory from time(1).
run() {
  local name=$1; shift
  : > "$work/$name.times"
  for _ in 1 2 3; do
    local s=$EPOCHREALTIME
    /usr/bin/time -f "%M" -o "$work/t" "$@" > "$work/$name.out" || [ $? -eq 1 ] # grep: no match
    local e=$EPOCHREALTIME
    echo "$(awk -v s="$s" -v e="$e" 'BEGIN { print e - s }') $(tail -n1 "$work/t")" >> "$work/$name.times"
  done
}
secs() { cut -d' ' -f1 "$work/$1.times" | median; }
mib() { cut -d' ' -f2 "$work/$1.times" | median | awk '{ printf "%.0f", $1 / 1024 }'; }
chat_log=(target/release/chat-log --data-dir "$work" --format csv)

sizes=(1000000 10000000)
declare -A size
for rows in "${sizes[@]}"; do
  # Every row's text has a comma and quotes (so it is quoted and its quotes doubled in the file)
  # and a tag t0..t3: `tag1` is in a quarter of the rows.
  python3 - "$work/messages.csv" "$rows" <<'PY'
import sys
rooms = ["lobby", "ops", "random", "dev", "support"]
with open(sys.argv[1], "w") as f:
    f.write("id,timestamp,room,sender,recipient,kind,text\n")
    for n in range(1, int(sys.argv[2]) + 1):
        f.write(f'{n},2026-11-{1+(n//400000)%28:02d}T{(n//3600)%24:02d}:{(n//60)%60:02d}:{n%60:02d}.{n%1000:03d}Z,'
                f'{rooms[n%5]},user{n%97},,message,"generated message {n}, with a comma and ""quotes"" tag{n%4}"\n')
PY
  size[$rows]=$(du -m "$work/messages.csv" | cut -f1)
  run "cl-quarter-$rows" "${chat_log[@]}" --grep tag1
  run "pd-quarter-$rows" python3 "$work/filter.py" "$work/messages.csv" quarter
  cmp -s "$work/cl-quarter-$rows.out" "$work/pd-quarter-$rows.out" || { echo "chat-log and pandas disagree (quarter)" >&2; exit 1; }
  wc -l < "$work/cl-quarter-$rows.out" > "$work/matched-quarter-$rows"
  run "cl-selective-$rows" "${chat_log[@]}" --room ops --from user7 --grep comma
  run "pd-selective-$rows" python3 "$work/filter.py" "$work/messages.csv" selective
  cmp -s "$work/cl-selective-$rows.out" "$work/pd-selective-$rows.out" || { echo "chat-log and pandas disagree (selective)" >&2; exit 1; }
  wc -l < "$work/cl-selective-$rows.out" > "$work/matched-selective-$rows"
  run "cl-none-$rows" "${chat_log[@]}" --grep zebra
  run "grep-none-$rows" grep -F zebra "$work/messages.csv"
  [ "$(cat "$work/cl-none-$rows.out")" = "id,timestamp,room,sender,recipient,kind,text" ] && [ ! -s "$work/grep-none-$rows.out" ] \
    || { echo "the filter that matches nothing matched" >&2; exit 1; }
done

echo "Against pandas (\`pd.read_csv\`, the same filter, \`to_csv\`), \`--format csv\`, outputs byte-identical:"
echo
echo "| rows | file | filter | rows matched | chat-log (s) | chat-log peak RSS (MiB) | pandas (s) | pandas peak RSS (MiB) | chat-log faster by |"
echo "| ---: | ---: | :--- | ---: | ---: | ---: | ---: | ---: | ---: |"
for rows in "${sizes[@]}"; do
  for f in quarter selective; do
    case $f in
      quarter) what="\`--grep tag1\` (a quarter)" ;;
      selective) what="\`--room ops --from user7 --grep comma\`" ;;
    esac
    matched=$(( $(cat "$work/matched-$f-$rows") - 1 ))
    awk -v r="$rows" -v s="${size[$rows]}" -v w="$what" -v m="$matched" -v cl="$(secs "cl-$f-$rows")" \
      -v clm="$(mib "cl-$f-$rows")" -v pd="$(secs "pd-$f-$rows")" -v pdm="$(mib "pd-$f-$rows")" \
      'BEGIN { printf "| %d | %d MiB | %s | %d | %.3f | %d | %.2f | %d | %.1fx |\n", r, s, w, m, cl, clm, pd, pdm, pd/cl }'
  done
done
echo
echo "A filter that matches nothing (\`--grep zebra\`) against \`grep -F zebra\` on the same file:"
echo
echo "| rows | file | chat-log (s) | chat-log peak RSS (MiB) | grep -F (s) | grep -F peak RSS (MiB) | chat-log / grep -F |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for rows in "${sizes[@]}"; do
  awk -v r="$rows" -v s="${size[$rows]}" -v cl="$(secs "cl-none-$rows")" -v clm="$(mib "cl-none-$rows")" \
    -v g="$(secs "grep-none-$rows")" -v gm="$(mib "grep-none-$rows")" \
    'BEGIN { printf "| %d | %d MiB | %.3f | %d | %.3f | %d | %.2f |\n", r, s, cl, clm, g, gm, cl/g }'
done
