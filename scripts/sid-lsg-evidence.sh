#!/usr/bin/env bash
# SiD from the class-conditional Fashion-MNIST teacher (assets/edm-fmnist-tiny-cond), plain
# (κ = 1) against SiD-LSG with κ1 = κ2 = κ3 = κ4 = KAPPA (default 1.5, the released models'
# best-FID setting; spec §5.5), both at once with one rayon thread each for MINUTES minutes
# (default 9), FD-FMNIST of 1000 class-balanced EMA-generator samples every 100 iterations,
# then the table (docs/results.md). Resumable like scripts/sid-fmnist-evidence.sh.
#
#   scripts/sid-lsg-evidence.sh [OUT_ROOT]    (default runs/lsg)
set -euo pipefail
cd "$(dirname "$0")/.."
root=${1:-runs/lsg}
minutes=${MINUTES:-9}
kappa=${KAPPA:-1.5}
teacher=${TEACHER:-assets/edm-fmnist-tiny-cond}
bin=${SCORCH_BIN:-target/release/scorch}
[ -x "$bin" ] || cargo build --release
mkdir -p "$root"
common=(--recipe recipes/sid-fmnist.toml --resume --set "teacher=\"$teacher\""
        --set eval_every=100 --set eval_count=1000 --set sample_every=0 --set "max_minutes=$minutes" --set steps=5000)
RAYON_NUM_THREADS=1 "$bin" distill sid "${common[@]}" --out "$root/sid" > "$root.sid.log" 2>&1 &
RAYON_NUM_THREADS=1 "$bin" distill sid "${common[@]}" --set "kappa_fake_train=$kappa" --set "kappa_fake_eval=$kappa" \
    --set "kappa_teacher=$kappa" --out "$root/lsg" > "$root.lsg.log" 2>&1 &
wait
python3 - "$root" "$kappa" <<'PY'
import json, sys, os
root, kappa = sys.argv[1], sys.argv[2]
curves = {}
for m in ("sid", "lsg"):
    with open(os.path.join(root, m, "metrics.jsonl")) as f:
        curves[m] = {r["step"]: (r["images"], r["fd_fmnist"]) for r in map(json.loads, f) if "fd_fmnist" in r}
steps = sorted(set(curves["sid"]) | set(curves["lsg"]))
print(f"| iterations | generator images | SiD (κ = 1) FD-FMNIST | SiD-LSG (κ = {kappa}) FD-FMNIST |")
print("|---:|---:|---:|---:|")
for s in steps:
    a, b = curves["sid"].get(s), curves["lsg"].get(s)
    img = (a or b)[0]
    fa = f"{a[1]:.2f}" if a else "—"
    fb = f"{b[1]:.2f}" if b else "—"
    print(f"| {s} | {img} | {fa} | {fb} |")
PY
