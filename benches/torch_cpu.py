#!/usr/bin/env python3
"""PyTorch CPU baseline for benches/kernels.rs: the same cases, the same shapes, 2 threads.

Every case here mirrors one criterion bench in kernels.rs (same id). Each is timed with
`time.perf_counter` after a warm-up; the reported number is the median over samples.

    python3 benches/torch_cpu.py                 # all cases, table on stdout
    python3 benches/torch_cpu.py --json out.json # also write medians (s) and work per case
    python3 benches/torch_cpu.py --only unet     # cases whose id contains "unet"
    python3 benches/torch_cpu.py --case sgemm/1024 --case sgemm/2048   # exact ids
    python3 benches/torch_cpu.py --list          # the case ids
    python3 benches/torch_cpu.py --params        # print the UNet parameter count and exit
"""

import argparse
import json
import math
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

THREADS = 2

# ---------------------------------------------------------------------------- the UNet
# Keep this block in step with `mod unet` in benches/kernels.rs: same layers, same order,
# same parameter count (both print it).

UNET_CH = 64  # model channels
UNET_MULT = (1, 2, 2)  # channel multiplier per resolution: 32×32, 16×16, 8×8
UNET_BLOCKS = 2  # residual blocks per resolution in the encoder (decoder: +1)
UNET_ATTN_RES = (16,)  # resolutions with self-attention after every block
UNET_EMB = 256  # noise-embedding width
UNET_NOISE_FEAT = 64  # sinusoidal features of c_noise fed to the mapping MLP
HEAD_CH = 64  # channels per attention head
SKIP_SCALE = 1.0 / math.sqrt(2.0)
FIR = (1.0, 1.0)  # EDM's resample_filter


def fir_kernel(c, up):
    f = torch.tensor(FIR, dtype=torch.float32)
    f = torch.outer(f, f) / f.sum() ** 2
    if up:
        f = f * 4
    return f[None, None].repeat(c, 1, 1, 1)


def fir_down(x):
    # EDM's down-sampling: a depthwise stride-2 conv with the normalised FIR filter.
    c = x.shape[1]
    pad = (len(FIR) - 1) // 2
    return F.conv2d(x, fir_kernel(c, False), groups=c, stride=2, padding=pad)


def fir_up(x):
    c = x.shape[1]
    pad = (len(FIR) - 1) // 2
    return F.conv_transpose2d(x, fir_kernel(c, True), groups=c, stride=2, padding=pad)


class Block(nn.Module):
    """EDM UNetBlock without dropout/adaptive scale: GN-SiLU-conv, + Linear(emb), GN-SiLU-conv,
    1×1 skip when the width changes, optional self-attention."""

    def __init__(self, cin, cout, emb, attn):
        super().__init__()
        self.norm0 = nn.GroupNorm(32, cin, eps=1e-5)
        self.conv0 = nn.Conv2d(cin, cout, 3, padding=1)
        self.affine = nn.Linear(emb, cout)
        self.norm1 = nn.GroupNorm(32, cout, eps=1e-5)
        self.conv1 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None
        self.heads = cout // HEAD_CH if attn else 0
        if attn:
            self.norm2 = nn.GroupNorm(32, cout, eps=1e-5)
            self.qkv = nn.Conv2d(cout, 3 * cout, 1)
            self.proj = nn.Conv2d(cout, cout, 1)

    def forward(self, x, emb):
        h = self.conv0(F.silu(self.norm0(x)))
        h = h + self.affine(emb)[:, :, None, None]
        h = self.conv1(F.silu(self.norm1(h)))
        x = (h + (self.skip(x) if self.skip is not None else x)) * SKIP_SCALE
        if self.heads:
            b, c, hh, ww = x.shape
            qkv = self.qkv(self.norm2(x)).reshape(b, 3, self.heads, c // self.heads, hh * ww)
            q, k, v = (qkv[:, i].transpose(2, 3) for i in range(3))  # [B, heads, HW, hd]
            a = F.scaled_dot_product_attention(q, k, v)
            a = a.transpose(2, 3).reshape(b, c, hh, ww)
            x = (self.proj(a) + x) * SKIP_SCALE
        return x


class UNet(nn.Module):
    """DDPM++-style layout as in EDM's SongUNet: conv_in, encoder levels (blocks, then a
    parameter-free FIR down), a mid pair, decoder levels with concatenated skips (blocks + 1
    each, FIR up between levels), GN-SiLU-conv_out."""

    def __init__(self):
        super().__init__()
        self.map0 = nn.Linear(UNET_NOISE_FEAT, UNET_EMB)
        self.map1 = nn.Linear(UNET_EMB, UNET_EMB)
        self.conv_in = nn.Conv2d(3, UNET_CH, 3, padding=1)
        skips = [UNET_CH]
        c = UNET_CH
        self.enc = nn.ModuleList()
        for lvl, m in enumerate(UNET_MULT):
            res = 32 >> lvl
            for _ in range(UNET_BLOCKS):
                self.enc.append(Block(c, UNET_CH * m, UNET_EMB, res in UNET_ATTN_RES))
                c = UNET_CH * m
                skips.append(c)
            if lvl + 1 < len(UNET_MULT):
                skips.append(c)  # the down-sampled map
        self.mid = nn.ModuleList([Block(c, c, UNET_EMB, True), Block(c, c, UNET_EMB, False)])
        self.dec = nn.ModuleList()
        for lvl in reversed(range(len(UNET_MULT))):
            res = 32 >> lvl
            for _ in range(UNET_BLOCKS + 1):
                cout = UNET_CH * UNET_MULT[lvl]
                self.dec.append(Block(c + skips.pop(), cout, UNET_EMB, res in UNET_ATTN_RES))
                c = cout
        self.norm_out = nn.GroupNorm(32, c, eps=1e-5)
        self.conv_out = nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, x, noise_feat):
        emb = F.silu(self.map1(F.silu(self.map0(noise_feat))))
        h = self.conv_in(x)
        skips = [h]
        i = 0
        for lvl in range(len(UNET_MULT)):
            for _ in range(UNET_BLOCKS):
                h = self.enc[i](h, emb)
                i += 1
                skips.append(h)
            if lvl + 1 < len(UNET_MULT):
                h = fir_down(h)
                skips.append(h)
        for blk in self.mid:
            h = blk(h, emb)
        i = 0
        for lvl in reversed(range(len(UNET_MULT))):
            for _ in range(UNET_BLOCKS + 1):
                h = self.dec[i](torch.cat([h, skips.pop()], dim=1), emb)
                i += 1
            if lvl > 0:
                h = fir_up(h)
        return self.conv_out(F.silu(self.norm_out(h)))


def noise_features(b):
    # EDM's PositionalEmbedding of c_noise = ln(σ)/4, σ spread over the batch.
    sigma = torch.logspace(-2, 1.9, b)
    c_noise = sigma.log() / 4
    half = UNET_NOISE_FEAT // 2
    freqs = (1 / 10000) ** (torch.arange(half, dtype=torch.float32) / half)
    a = c_noise[:, None] * freqs[None]
    return torch.cat([a.cos(), a.sin()], dim=1)


# ---------------------------------------------------------------------------- timing


def timeit(fn, warmup, samples, min_sample_s=0.05):
    """(median, fastest) seconds per call over the samples. Fast calls are batched so a
    sample lasts ≥ min_sample_s."""
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    fn()
    one = time.perf_counter() - t0
    reps = max(1, int(min_sample_s / max(one, 1e-9)))
    times = []
    for _ in range(samples):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        times.append((time.perf_counter() - t0) / reps)
    return statistics.median(times), min(times)


def case_sgemm(n):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g)
    b = torch.randn(n, n, generator=g)
    return (lambda: torch.matmul(a, b)), 2 * n**3, None


def case_conv(backward):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 64, 32, 32, generator=g, requires_grad=backward)
    w = (torch.randn(64, 64, 3, 3, generator=g) / 24).requires_grad_(backward)
    gy = torch.randn(16, 64, 32, 32, generator=g)
    flops = 2 * 16 * 64 * 32 * 32 * 64 * 9 * (3 if backward else 1)
    if not backward:

        def fwd():
            with torch.no_grad():
                F.conv2d(x, w, padding=1)

        return fwd, flops, None

    def step():
        x.grad = w.grad = None
        F.conv2d(x, w, padding=1).backward(gy)

    return step, flops, None


def case_attention():
    g = torch.Generator().manual_seed(0)
    shape = (8, 4, 256, 64)
    q, k, v = (torch.randn(*shape, generator=g).requires_grad_() for _ in range(3))
    go = torch.randn(*shape, generator=g)
    # forward 2 matmuls, backward 5 (incl. recomputing the scores); 2·S²·D flops each.
    flops = 7 * 2 * 8 * 4 * 256 * 256 * 64

    def step():
        q.grad = k.grad = v.grad = None
        F.scaled_dot_product_attention(q, k, v).backward(go)

    return step, flops, None


def case_group_norm():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 128, 32, 32, generator=g, requires_grad=True)
    w = torch.ones(128, requires_grad=True)
    b = torch.zeros(128, requires_grad=True)
    gy = torch.randn(16, 128, 32, 32, generator=g)
    # fwd reads x, writes y; bwd reads x, gy, writes gx (stats are tiny): 5 passes.
    nbytes = 5 * 4 * x.numel()

    def step():
        x.grad = w.grad = b.grad = None
        F.group_norm(x, 32, w, b, 1e-5).backward(gy)

    return step, None, nbytes


def case_elementwise():
    n = 16 * 1024 * 1024
    g = torch.Generator().manual_seed(0)
    x, a, b = (torch.randn(n, generator=g) for _ in range(3))

    def fwd():
        with torch.no_grad():
            F.silu(x * a + b)

    # Minimum traffic: read x, a, b; write y.
    return fwd, None, 16 * n


def case_unet():
    torch.manual_seed(0)
    net = UNet()
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)  # CPU default: per-tensor (foreach off)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 3, 32, 32, generator=g)
    target = torch.randn(16, 3, 32, 32, generator=g)
    feat = noise_features(16)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.mse_loss(net(x, feat), target)
        loss.backward()
        opt.step()

    return step, None, None


def unet_params():
    return sum(p.numel() for p in UNet().parameters())


# id, builder, warm-up calls, samples
CASES = [
    ("sgemm/1024", lambda: case_sgemm(1024), 3, 15),
    ("sgemm/2048", lambda: case_sgemm(2048), 2, 10),
    ("conv2d_3x3_b16_64c_32px/fwd", lambda: case_conv(False), 3, 15),
    ("conv2d_3x3_b16_64c_32px/fwd_bwd", lambda: case_conv(True), 3, 15),
    ("attention_b8h4s256d64/fwd_bwd", case_attention, 3, 15),
    ("group_norm_b16c128g32_32px/fwd_bwd", case_group_norm, 3, 15),
    ("elementwise_silu_xa_b_16M/fwd", case_elementwise, 3, 15),
    ("unet_train_step_b16_32px/adam", case_unet, 2, 10),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="write {case id: {median_s, min_s, flops, bytes}} here")
    ap.add_argument("--only", help="run only cases whose id contains this")
    ap.add_argument("--case", action="append", help="run only this exact case id (repeatable)")
    ap.add_argument("--list", action="store_true", help="print the case ids and exit")
    ap.add_argument("--threads", type=int, default=THREADS, help="torch.set_num_threads (default 2)")
    ap.add_argument("--params", action="store_true", help="print the UNet parameter count and exit")
    args = ap.parse_args()

    if args.list:
        print("\n".join(cid for cid, *_ in CASES))
        return
    torch.set_num_threads(args.threads)
    n_params = unet_params()
    print(f"unet parameters (pytorch): {n_params}")
    if args.params:
        return
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    results = {}
    for cid, build, warmup, samples in CASES:
        if (args.only and args.only not in cid) or (args.case and cid not in args.case):
            continue
        fn, flops, nbytes = build()
        t, fastest = timeit(fn, warmup, samples)
        results[cid] = {"median_s": t, "min_s": fastest, "flops": flops, "bytes": nbytes}
        extra = ""
        if flops:
            extra = f"  {flops / t / 1e9:8.1f} GFLOP/s"
        elif nbytes:
            extra = f"  {nbytes / t / 1e9:8.1f} GB/s"
        print(f"{cid:40s} median {t * 1e3:10.3f} ms{extra}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "threads": args.threads, "unet_params": n_params, "cases": results}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
