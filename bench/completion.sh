#!/usr/bin/env bash
# The time of one `guardian restart <TAB>` with 500 jobs (issue 14: within 50 ms):
# the generated bash completion, called as bash calls it, the median of N calls.
#
#   bench/completion.sh [N] [GUARDIAN]     (default 50 calls, target/debug/guardian)
#
# Prints two medians: the completion function in a shell that has already sourced
# the file (what a TAB costs in an interactive shell), and a fresh `bash` that
# sources the file and completes once (an upper bound: bash's own start included).
set -euo pipefail
n=${1:-50}
bin=${2:-target/debug/guardian}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/conf/jobs" "$work/out"
for i in $(seq -w 1 500); do
  printf 'exec = "sleep 600"\n' > "$work/conf/jobs/job$i.toml"
done
"$bin" generate completions bash "$work/out" >/dev/null
script=$work/out/guardian.bash

median() { sort -n | awk '{ v[NR] = $1 } END { m = int((NR + 1) / 2); printf "%.2f", v[m] }'; }

in_shell=$(bash --norc -c '
  source "$1"
  for ((k = 0; k < $2; k++)); do
    COMP_WORDS=(guardian -c "$3" restart job04); COMP_CWORD=4
    t0=$EPOCHREALTIME
    _guardian_with_jobs guardian job04 restart
    t1=$EPOCHREALTIME
    [ ${#COMPREPLY[@]} -eq 10 ] || { echo "wrong: ${#COMPREPLY[@]}" >&2; exit 1; }
    echo "$t0 $t1" | awk "{ printf \"%.3f\n\", (\$2 - \$1) * 1000 }"
  done' bash "$script" "$n" "$work/conf" | median)

fresh=$(for ((k = 0; k < n; k++)); do
  t0=$EPOCHREALTIME
  bash --norc -c 'source "$1"; COMP_WORDS=(guardian -c "$2" restart ""); COMP_CWORD=4
    _guardian_with_jobs guardian "" restart; [ ${#COMPREPLY[@]} -eq 501 ]' bash "$script" "$work/conf"
  t1=$EPOCHREALTIME
  echo "$t0 $t1" | awk '{ printf "%.3f\n", ($2 - $1) * 1000 }'
done | median)

echo "500 jobs, median of $n: completion call ${in_shell} ms; fresh bash + source + call ${fresh} ms"
