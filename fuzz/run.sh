#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 60) each, one after another, and prints
# per target the executions, executions per second and crashes. Exits 1 if any target
# crashed (a panic, a timeout of 10 s on one input, or running out of memory); what
# crashed is in fuzz/artifacts/TARGET/. Needs nightly and cargo-fuzz:
#   cargo install cargo-fuzz
#   fuzz/run.sh 30
# TARGETS="expr protocol" fuzz/run.sh 60 runs only those. The targets call only safe
# Rust, so they are built without a sanitizer (twice as fast); SANITIZER=address
# fuzz/run.sh 60 builds them with AddressSanitizer instead.
set -uo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
targets=${TARGETS:-job_file settings expr protocol}
san=${SANITIZER:-none}
failed=0
mkdir -p artifacts
cargo +nightly fuzz build -s "$san" >/dev/null 2>artifacts/build.log || { cat artifacts/build.log; exit 2; }
for t in $targets; do
  mkdir -p "corpus/$t" "artifacts/$t"
  log="artifacts/$t.log"
  dict=()
  [ -f "dicts/$t.dict" ] && dict=("-dict=dicts/$t.dict")
  before=$(find "artifacts/$t" -type f | wc -l)
  cargo +nightly fuzz run -s "$san" "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$secs" -timeout=10 -print_final_stats=1 "${dict[@]}" >"$log" 2>&1
  rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n1)
  [ -n "$execs" ] || execs=$(grep -o '^#[0-9]*' "$log" | tr -d '#' | tail -n1)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n1)
  crashes=$(( $(find "artifacts/$t" -type f | wc -l) - before ))
  if [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ]; then crashes=1; fi
  printf '%-9s %12s executions  %8s/s  %d crashes\n' "$t" "${execs:-0}" "${rate:-?}" "$crashes"
  if [ "$crashes" -ne 0 ]; then
    failed=1
    grep -E 'panicked|ERROR: libFuzzer|SUMMARY' "$log" | head -n5
    ls -t "artifacts/$t" | head -n "$crashes" | sed "s|^|  fuzz/artifacts/$t/|"
    echo "  (log: fuzz/$log)"
  fi
done
exit $failed
