"""Joins `scorch bench --device cuda` and `benches/torch_gpu.py` output (both `case|ms|rate`
lines from one run on one card) into the device check's markdown table: scorch and PyTorch
medians, scorch's rate, % of the measured copy bandwidth (the faster of the two copies) for bandwidth-bound cases, the ratio
PyTorch / scorch (above 1: scorch faster) and the issue's target where it states one.
Usage: python3 gpu_table.py scorch.txt torch.txt
"""
import sys

# The first bars, by case.
TARGETS = {
    "copy_f32_64M": "≥ 0.8 of copy",
    "add_f32_64M": "≥ 0.8 of copy",
    "sum_f32_64M": "≥ 0.8 of copy",
    "softmax_f32_16384x4096": "≥ 0.8 of copy",
    "sid_loss_fwd_bwd": "ratio ≥ 3",
    "beta_kl_fwd_4M": "ratio ≥ 3",
    "beta_kl_klub_fwd_4M": "",
    "attn_bf16_fwd": "ratio ≥ 0.5",
    "attn_bf16_fwd_bwd": "ratio ≥ 0.4",
    "conv3x3_bf16_fwd_bwd": "ratio ≥ 0.5",
    "sid_iter_cifar_b8": "",
}


def read(path):
    rows = {}
    for line in open(path):
        if line.startswith("#") or "|" not in line:
            continue
        key, ms, rate = line.rstrip("\n").split("|", 2)
        rows[key] = (float(ms), rate)
    return rows


def main():
    ours, theirs = read(sys.argv[1]), read(sys.argv[2])
    # The roofline reference: the faster of the two measured device-to-device copies.
    copies = [r[1] for r in (ours.get("copy_f32_64M"), theirs.get("copy_f32_64M")) if r and r[1].endswith("GB/s")]
    copy_gbs = max(float(c.split()[0]) for c in copies) if copies else None
    print("| case | scorch ms | PyTorch ms | scorch rate | % of copy BW | ratio (PyTorch/scorch) | target |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for key in list(dict.fromkeys(list(theirs) + list(ours))):
        o, t = ours.get(key), theirs.get(key)
        oms = f"{o[0]:.3f}" if o and o[0] == o[0] else (o[1] if o else "—")
        tms = f"{t[0]:.3f}" if t else "—"
        rate = o[1] if o and o[0] == o[0] else ""
        pct = ""
        if copy_gbs and rate.endswith("GB/s"):
            pct = f"{100 * float(rate.split()[0]) / copy_gbs:.0f} %"
        ratio = f"{t[0] / o[0]:.2f}" if o and t and o[0] == o[0] and o[0] > 0 else "—"
        print(f"| {key} | {oms} | {tms} | {rate} | {pct} | {ratio} | {TARGETS.get(key, '')} |")


if __name__ == "__main__":
    main()
