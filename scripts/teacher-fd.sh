#!/usr/bin/env bash
# FD-FMNIST of the shipped Fashion-MNIST teachers at NFE 35 and fewer Heun steps, plus a
# sample grid of each (docs/results.md, "The teachers"). Usage: scripts/teacher-fd.sh [OUT] [COUNT]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/teacher-fd}"
count="${2:-1000}"
mkdir -p "$out"
cargo build --release --quiet
bin=target/release/scorch
for t in edm-fmnist-tiny edm-fmnist-tiny-cond; do
  "$bin" sample --teacher "assets/$t" --count 64 --steps 18 --out "$out/$t-nfe35.png"
  for steps in 18 9 6 4 3; do
    start=$(date +%s.%N)
    line=$("$bin" eval --teacher "assets/$t" --count "$count" --steps "$steps")
    secs=$(echo "$(date +%s.%N) - $start" | bc)
    echo "$t steps=$steps $line seconds=$secs" | tee -a "$out/fd.txt"
  done
done
