#!/usr/bin/env python3
"""Pairs criterion's medians (benches/kernels.rs) with PyTorch's (benches/torch_cpu.py --json)
and prints the markdown table of benches/RESULTS.md.

Speed ratio = PyTorch median time / scorch median time: above 1 scorch is faster, 0.5 means
scorch takes twice as long. The fastest-sample ratio (PyTorch's fastest / scorch's fastest)
is printed beside it: on a shared machine it is the less disturbed of the two. Throughput (GFLOP/s or GB/s) uses the work counts the PyTorch
script declares for each case, the same for both sides.

    python3 benches/compare.py [--criterion target/criterion | --scorch DIR] --torch torch.json [more.json ...]
        [--scorch-log bench.log] [--contention contention.txt]
"""

import argparse
import json
import os
import re
import sys

# Speed-ratio targets from the issue (PyTorch time / scorch time).
TARGETS = {
    "sgemm/1024": 0.8,
    "sgemm/2048": 0.8,
    "conv2d_3x3_b16_64c_32px/fwd_bwd": 0.5,
    "attention_b8h4s256d64/fwd_bwd": 0.5,
    "unet_train_step_b16_32px/adam": 0.5,
}


# Table order (the order of CASES in torch_cpu.py); other ids follow.
ORDER = [
    "sgemm/1024",
    "sgemm/2048",
    "conv2d_3x3_b16_64c_32px/fwd",
    "conv2d_3x3_b16_64c_32px/fwd_bwd",
    "attention_b8h4s256d64/fwd_bwd",
    "group_norm_b16c128g32_32px/fwd_bwd",
    "elementwise_silu_xa_b_16M/fwd",
    "unet_train_step_b16_32px/adam",
]


def fmt_time(s):
    if s >= 1:
        return f"{s:.3f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} µs"


def criterion_fastest(root, cid, picked):
    """Fastest per-iteration time among criterion's samples (None when sample.json is absent)."""
    path = os.path.join(root, cid, "new", "sample.json")
    if picked:
        path = os.path.join(picked, cid.replace("/", "_") + ".sample.json")
    try:
        with open(path) as f:
            s = json.load(f)
    except FileNotFoundError:
        return None
    return min(t / n for t, n in zip(s["times"], s["iters"])) * 1e-9


def criterion_median(root, cid, picked):
    path = os.path.join(root, cid, "new", "estimates.json")
    if picked:
        path = os.path.join(picked, cid.replace("/", "_") + ".json")
    with open(path) as f:
        return json.load(f)["median"]["point_estimate"] * 1e-9  # ns → s


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--criterion", default="target/criterion", help="criterion's output folder")
    ap.add_argument("--scorch", help="folder of estimates.json copies named <id with / as _>.json (overrides --criterion)")
    ap.add_argument("--torch", required=True, nargs="+", help="JSON file(s) written by torch_cpu.py --json")
    ap.add_argument("--scorch-log", help="bench output, for the UNet parameter count")
    ap.add_argument("--contention", help="'id busy total' lines from scripts/bench-cpu.sh")
    args = ap.parse_args()

    torch_res = {"cases": {}}
    for path in args.torch:
        with open(path) as f:
            r = json.load(f)
        torch_res["unet_params"] = r["unet_params"]
        torch_res["cases"].update(r["cases"])
    busy = {}
    if args.contention:
        with open(args.contention) as f:
            for line in f:
                cid, b, n = line.split()
                busy[cid] = f"{b}/{n}"
    scorch_params = None
    if args.scorch_log:
        with open(args.scorch_log) as f:
            m = re.search(r"unet parameters \(scorch\): (\d+)", f.read())
            scorch_params = int(m.group(1)) if m else None

    cols = "| case | scorch median | PyTorch median | speed ratio (PyTorch/scorch) | scorch throughput | PyTorch throughput | target | met |"
    cols += " fastest sample: scorch / PyTorch / ratio |"
    print(cols + (" disturbed samples |" if busy else ""))
    print("|---|---:|---:|---:|---:|---:|---:|:-:|---:|" + ("---:|" if busy else ""))
    missing = []
    rank = {c: i for i, c in enumerate(ORDER)}
    for cid, r in sorted(torch_res["cases"].items(), key=lambda kv: (rank.get(kv[0], len(ORDER)), kv[0])):
        try:
            ts = criterion_median(args.criterion, cid, args.scorch)
        except FileNotFoundError:
            missing.append(cid)
            continue
        tt = r["median_s"]
        ratio = tt / ts
        if r.get("flops"):
            thr = lambda t: f"{r['flops'] / t / 1e9:.1f} GFLOP/s"  # noqa: E731
        elif r.get("bytes"):
            thr = lambda t: f"{r['bytes'] / t / 1e9:.1f} GB/s"  # noqa: E731
        else:
            thr = lambda t: "—"  # noqa: E731
        tgt = TARGETS.get(cid)
        met = "—" if tgt is None else ("yes" if ratio >= tgt else "**no**")
        tgt_s = "—" if tgt is None else f"≥ {tgt}"
        row = f"| {cid} | {fmt_time(ts)} | {fmt_time(tt)} | {ratio:.2f} | {thr(ts)} | {thr(tt)} | {tgt_s} | {met} |"
        fs, ft = criterion_fastest(args.criterion, cid, args.scorch), r.get("min_s")
        row += f" {fmt_time(fs)} / {fmt_time(ft)} / {ft / fs:.2f} |" if fs and ft else " — |"
        print(row + (f" {busy.get(cid, '?')} |" if busy else ""))
    print()
    print(f"UNet parameters: scorch {scorch_params if scorch_params is not None else '?'}, PyTorch {torch_res['unet_params']}")
    if missing:
        print(f"no criterion result for: {', '.join(missing)}", file=sys.stderr)
    if scorch_params is not None and scorch_params != torch_res["unet_params"]:
        print("UNet parameter counts differ: the two models are not the same architecture", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
