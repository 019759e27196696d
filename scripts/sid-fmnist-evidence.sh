#!/usr/bin/env bash
# FD-FMNIST against distillation iterations for SiD and SiDA from the shipped teacher
# (docs/results.md). Runs both at once, one rayon thread each, for MINUTES minutes
# (default 30), evaluating 1000 EMA-generator samples every 100 iterations, then prints
# the table. Resumable: run it again to continue (raise MINUTES or STEPS).
#
#   scripts/sid-fmnist-evidence.sh [OUT_ROOT]    (default runs/evidence)
set -euo pipefail
cd "$(dirname "$0")/.."
root=${1:-runs/evidence}
minutes=${MINUTES:-30}
steps=${STEPS:-5000}
bin=${SCORCH_BIN:-target/release/scorch}
[ -x "$bin" ] || cargo build --release
mkdir -p "$root"
common=(--recipe recipes/sid-fmnist.toml --resume --set eval_every=100 --set eval_count=1000
        --set sample_every=0 --set "max_minutes=$minutes" --set "steps=$steps")
RAYON_NUM_THREADS=1 "$bin" distill sid "${common[@]}" --out "$root/sid" > "$root.sid.log" 2>&1 &
RAYON_NUM_THREADS=1 "$bin" distill sida "${common[@]}" --set alpha=1.0 --out "$root/sida" > "$root.sida.log" 2>&1 &
wait
python3 - "$root" <<'PY'
import json, sys, os
root = sys.argv[1]
curves = {}
for m in ("sid", "sida"):
    with open(os.path.join(root, m, "metrics.jsonl")) as f:
        curves[m] = {r["step"]: (r["images"], r["fd_fmnist"]) for r in map(json.loads, f) if "fd_fmnist" in r}
steps = sorted(set(curves["sid"]) | set(curves["sida"]))
print("| iterations | generator images | SiD FD-FMNIST | SiDA FD-FMNIST |")
print("|---:|---:|---:|---:|")
for s in steps:
    a, b = curves["sid"].get(s), curves["sida"].get(s)
    img = (a or b)[0]
    fa = f"{a[1]:.2f}" if a else "—"
    fb = f"{b[1]:.2f}" if b else "—"
    print(f"| {s} | {img} | {fa} | {fb} |")
PY
