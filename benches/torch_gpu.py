"""PyTorch baselines on the GPU for scorch's device check (same card, same run).

Prints one `case|median ms|rate` line per case, with the case keys of `scorch bench`
(benches/gpu_table.py joins both into the device check's table). These are the denominators of the
issue's GPU targets: elementwise / reductions vs measured copy bandwidth at 64M elements,
the SiD loss and Beta KL as PyTorch eager compositions, attention via SDPA (bf16, B4 H8
S1024 D64) and conv2d 3x3 via cuDNN (bf16, B64 128->128 32x32).
Usage: python3 torch_gpu.py
"""
import sys
import time

import torch
import torch.nn.functional as F


def median_ms(fn, warmup=5, iters=30):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]


def sid_loss(y_real, y_fake, x_g, alpha=1.2):
    w = 1.0 / (x_g - y_real).abs().mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-5)
    d = y_real - y_fake
    return (d * ((y_real - x_g) - alpha * d) * w.detach()).sum(dim=(1, 2, 3))


def kl_gamma(a1, a2):
    return (a1 - a2) * torch.digamma(a1) - torch.lgamma(a1) + torch.lgamma(a2)


def beta_kl(a1, b1, a2, b2):
    return kl_gamma(a1, a2) + kl_gamma(b1, b2) - kl_gamma(a1 + b1, a2 + b2)


def main():
    if not torch.cuda.is_available():
        print("torch: no CUDA device")
        return 2
    dev = "cuda"
    print(f"# torch {torch.__version__}, {torch.cuda.get_device_name(0)}")

    def row(key, ms, rate=""):
        print(f"{key}|{ms:.4f}|{rate}", flush=True)

    n = 64 * 1024 * 1024
    x = torch.randn(n, device=dev)
    y = torch.empty_like(x)
    ms = median_ms(lambda: y.copy_(x))
    row("copy_f32_64M", ms, f"{2 * 4 * n / ms / 1e6:.0f} GB/s")
    b = torch.randn(n, device=dev)
    ms = median_ms(lambda: torch.add(x, b, out=y))
    row("add_f32_64M", ms, f"{3 * 4 * n / ms / 1e6:.0f} GB/s")
    ms = median_ms(lambda: x.sum())
    row("sum_f32_64M", ms, f"{4 * n / ms / 1e6:.0f} GB/s")
    del x, y, b
    s = torch.randn(16384, 4096, device=dev)
    ms = median_ms(lambda: torch.softmax(s, -1))
    row("softmax_f32_16384x4096", ms, f"{2 * 4 * s.numel() / ms / 1e6:.0f} GB/s")
    del s
    xg_ = torch.randn(64, 128, 32, 32, device=dev, requires_grad=True)
    wg = torch.randn(128, device=dev, requires_grad=True)
    bg = torch.randn(128, device=dev, requires_grad=True)
    gg = torch.randn(64, 128, 32, 32, device=dev)

    def gn_fb():
        o = F.group_norm(xg_, 32, wg, bg, 1e-5)
        torch.autograd.grad(o, [xg_, wg, bg], gg)

    ms = median_ms(gn_fb)
    row("groupnorm_f32_fwd_bwd", ms, f"{5 * 4 * xg_.numel() / ms / 1e6:.0f} GB/s")
    yr, yf, xg = (torch.randn(64, 3, 64, 64, device=dev) for _ in range(3))
    xg.requires_grad_(True)
    yr.requires_grad_(True)
    yf.requires_grad_(True)

    def sid_fb():
        l = sid_loss(yr, yf, xg).sum()
        torch.autograd.grad(l, [yr, yf, xg])

    row("sid_loss_fwd_bwd", median_ms(sid_fb))
    a = [torch.rand(1 << 22, device=dev) * 20 + 0.5 for _ in range(4)]
    row("beta_kl_fwd_4M", median_ms(lambda: beta_kl(*a)))
    # The KLUB regime (eta = 1e4), same distribution as scorch's case.
    n = 1 << 22
    at, gap, x = torch.rand(n, device=dev) * 0.8 + 0.1, torch.rand(n, device=dev) * 0.05 + 1e-4, torch.rand(n, device=dev) * 0.8 + 0.1
    a_s, xh = torch.clamp(at + gap, max=0.999), x * (1 + (torch.rand(n, device=dev) - 0.5) * 1e-3)
    ca, cb = 1e4 * (a_s - at), -1e4 * a_s
    k = [ca * xh, 1e4 + cb * xh, ca * x, 1e4 + cb * x]
    row("beta_kl_klub_fwd_4M", median_ms(lambda: beta_kl(*k)))
    ma, mb = (torch.randn(4096, 4096, device=dev, dtype=torch.bfloat16) for _ in range(2))
    ms = median_ms(lambda: ma @ mb)
    row("matmul_bf16_4096", ms, f"{2 * 4096 ** 3 / ms / 1e9:.1f} TFLOP/s")
    q, k, v = (torch.randn(4, 8, 1024, 64, device=dev, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    flops = 4 * 4 * 8 * 1024 * 1024 * 64
    ms = median_ms(lambda: F.scaled_dot_product_attention(q, k, v))
    row("attn_bf16_fwd", ms, f"{flops / ms / 1e9:.1f} TFLOP/s")
    go = torch.randn_like(q)

    def sdpa_fb():
        o = F.scaled_dot_product_attention(q, k, v)
        torch.autograd.grad(o, [q, k, v], go)

    ms = median_ms(sdpa_fb)
    row("attn_bf16_fwd_bwd", ms, f"{3.5 * flops / ms / 1e9:.1f} TFLOP/s")
    xc = torch.randn(64, 128, 32, 32, device=dev, dtype=torch.bfloat16, requires_grad=True)
    wc = torch.randn(128, 128, 3, 3, device=dev, dtype=torch.bfloat16, requires_grad=True)
    cflops = 2 * 64 * 128 * 32 * 32 * 128 * 9
    ms = median_ms(lambda: F.conv2d(xc, wc, padding=1))
    row("conv3x3_bf16_fwd", ms, f"{cflops / ms / 1e9:.1f} TFLOP/s")
    gy = torch.randn(64, 128, 32, 32, device=dev, dtype=torch.bfloat16)

    def conv_fb():
        o = F.conv2d(xc, wc, padding=1)
        torch.autograd.grad(o, [xc, wc], gy)

    ms = median_ms(conv_fb)
    row("conv3x3_bf16_fwd_bwd", ms, f"{3 * cflops / ms / 1e9:.1f} TFLOP/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
