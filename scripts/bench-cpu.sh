#!/usr/bin/env bash
# CPU benchmark suite: every case measured in scorch (criterion, benches/kernels.rs) and then
# in PyTorch CPU (benches/torch_cpu.py) back to back, at 2 threads on this machine in one
# session; then the side-by-side table (benches/compare.py) that goes into benches/RESULTS.md.
#
#   scripts/bench-cpu.sh                       # all cases (~6 min of benches on 2 cores)
#   scripts/bench-cpu.sh sgemm/1024 unet_train_step_b16_32px/adam   # some cases
#   THREADS=4 scripts/bench-cpu.sh             # another thread count for both sides
#   BENCH_OUT=/tmp/run1 scripts/bench-cpu.sh   # results folder (default target/bench-cpu)
#
# To measure a commit without the working tree's uncommitted edits, run it in an export:
#   c=$(git rev-parse --short HEAD) && mkdir /tmp/snap && git archive "$c" | tar -x -C /tmp/snap &&
#   cp -r benches scripts /tmp/snap/ && BENCH_COMMIT=$c /tmp/snap/scripts/bench-cpu.sh
#
# The machine may be shared (other people's builds). Before each case the script waits
# (up to QUIET_WAIT seconds, default 300) until no other process has been running for 5 s,
# samples other running processes while the case runs, and retries a disturbed case up to
# RETRIES times (default 4), keeping the least disturbed attempt. The last column of the
# table says in how many samples another process was running (0 = a clean measurement).
set -euo pipefail
cd "$(dirname "$0")/.."

threads=${THREADS:-2}
quiet_wait=${QUIET_WAIT:-300}
retries=${RETRIES:-4}
export RAYON_NUM_THREADS=$threads OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
out=${BENCH_OUT:-$CARGO_TARGET_DIR/bench-cpu}
rm -rf "$out" && mkdir -p "$out/torch"

# Build once; run the bench binary directly so nobody's later source edits get rebuilt mid-run.
exe=$(cargo bench --bench kernels --no-run --message-format=json 2>"$out/build.log" |
  python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "kernels" and m.get("executable"):
        print(m["executable"])')
[ -x "$exe" ] || { cat "$out/build.log"; echo "bench build failed" >&2; exit 1; }

{
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
  if [ -n "${BENCH_COMMIT:-}" ]; then
    echo "commit: $BENCH_COMMIT"
  else
    echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- ops engine models src benches Cargo.toml Cargo.lock || echo ' (+ uncommitted changes in the working tree)')"
  fi
  echo "cpu: $(lscpu | sed -n 's/^Model name: *//p') ($(nproc) cores), threads $threads"
  echo "rustc: $(rustc --version)"
  echo "python: $(python3 -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__)')"
  echo "bench binary: $exe"
} | tee "$out/machine.txt"

me=$$
# Processes running (state R) that are not this script's: its benches, python, ps and awk.
foreign() {
  ps -eo stat=,pid=,ppid=,comm= | awk -v me="$me" -v exe="$(basename "$exe" | cut -c1-15)" \
    '$1 ~ /^R/ && $4 != exe && $4 != "python3" && $4 != "ps" && $4 != "awk" && $4 != "bench-cpu.sh" && $3 != me' | wc -l
}
wait_quiet() {
  local waited=0 calm=0
  while [ "$calm" -lt 5 ]; do
    if [ "$(foreign)" -eq 0 ]; then calm=$((calm + 1)); else calm=0; fi
    sleep 1
    waited=$((waited + 1))
    if [ "$waited" -ge "$quiet_wait" ]; then
      echo "  (machine still busy after ${quiet_wait}s; measuring anyway)"
      return
    fi
  done
  [ "$waited" -gt 5 ] && echo "  (waited ${waited}s for the machine to go quiet)"
  return 0
}

if [ $# -gt 0 ]; then cases=("$@"); else mapfile -t cases < <(python3 benches/torch_cpu.py --list); fi
mkdir -p "$out/scorch"
: >"$out/contention.txt"
for id in "${cases[@]}"; do
  safe=${id//\//_}
  best=-1
  for attempt in $(seq 0 "$retries"); do
    echo "== $id (attempt $((attempt + 1)))"
    wait_quiet
    (while :; do foreign; sleep 0.5; done) >"$out/samples.txt" &
    sampler=$!
    "$exe" --bench "^${id}\$" 2>&1 | tee -a "$out/scorch.log" | grep -E "^[a-z]|time:" || true
    python3 benches/torch_cpu.py --threads "$threads" --case "$id" --json "$out/torch/try.json" |
      grep -v "^unet parameters\|^torch " || true
    kill "$sampler" && wait "$sampler" 2>/dev/null || true
    busy=$(awk '$1 > 0' "$out/samples.txt" | wc -l)
    total=$(wc -l <"$out/samples.txt")
    echo "  other processes running in $busy of $total samples"
    # Keep the least disturbed attempt (scorch and PyTorch from the same attempt).
    if [ "$best" -lt 0 ] || [ "$busy" -lt "$best" ]; then
      best=$busy
      cp "$CARGO_TARGET_DIR/criterion/$id/new/estimates.json" "$out/scorch/$safe.json"
      cp "$CARGO_TARGET_DIR/criterion/$id/new/sample.json" "$out/scorch/$safe.sample.json"
      cp "$out/torch/try.json" "$out/torch/$safe.json"
      echo "$id $busy $total" >"$out/contention.$safe"
    fi
    [ "$busy" -eq 0 ] && break
  done
  cat "$out/contention.$safe" >>"$out/contention.txt"
done
rm -f "$out/torch/try.json" "$out"/contention.*_*

python3 benches/compare.py --scorch "$out/scorch" --torch "$out"/torch/*.json \
  --scorch-log "$out/scorch.log" --contention "$out/contention.txt" | tee "$out/table.md"
echo "table: $out/table.md"
