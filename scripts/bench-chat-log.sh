#!/usr/bin/env bash
# chat-log against pandas (pd.read_csv + the same filter, what the original design used), side by
# side on generated messages.csv files of 1 and 10 million rows: median wall time and peak
# memory of 3 runs each, and the ratio. Installs pandas with pip if it is missing.
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
sel = df[(df["room"] == "ops") & (df["sender"] == "user7") & df["text"].str.contains("comma")]
sel.to_csv(sys.stdout, index=False)
PY
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "| rows | file | chat-log (s) | chat-log peak RSS (MiB) | pandas (s) | pandas peak RSS (MiB) | chat-log faster by |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for rows in 1000000 10000000; do
  python3 - "$work/messages.csv" "$rows" <<'PY'
import sys
rooms = ["lobby", "ops", "random", "dev", "support"]
with open(sys.argv[1], "w") as f:
    f.write("id,timestamp,room,sender,recipient,kind,text\n")
    for n in range(1, int(sys.argv[2]) + 1):
        f.write(f'{n},2026-11-{1+(n//400000)%28:02d}T{(n//3600)%24:02d}:{(n//60)%60:02d}:{n%60:02d}.{n%1000:03d}Z,'
                f'{rooms[n%5]},user{n%97},,message,"generated message {n}, with a comma and ""quotes"""\n')
PY
  size=$(du -m "$work/messages.csv" | cut -f1)
  for tool in chat-log pandas; do
    : > "$work/$tool.times"
    for _ in 1 2 3; do
      if [ "$tool" = chat-log ]; then
        /usr/bin/time -f "%e %M" -o "$work/t" target/release/chat-log --data-dir "$work" \
          --room ops --from user7 --grep comma --format csv > "$work/$tool.out"
      else
        /usr/bin/time -f "%e %M" -o "$work/t" python3 "$work/filter.py" "$work/messages.csv" > "$work/$tool.out"
      fi
      cat "$work/t" >> "$work/$tool.times"
    done
  done
  cmp -s "$work/chat-log.out" "$work/pandas.out" || { echo "chat-log and pandas disagree" >&2; exit 1; }
  cl=$(cut -d' ' -f1 "$work/chat-log.times" | median); clm=$(cut -d' ' -f2 "$work/chat-log.times" | median)
  pd=$(cut -d' ' -f1 "$work/pandas.times" | median); pdm=$(cut -d' ' -f2 "$work/pandas.times" | median)
  awk -v r="$rows" -v s="$size" -v cl="$cl" -v clm="$clm" -v pd="$pd" -v pdm="$pdm" \
    'BEGIN { printf "| %d | %d MiB | %.2f | %.0f | %.2f | %.0f | %.1fx |\n", r, s, cl, clm/1024, pd, pdm/1024, pd/cl }'
done
