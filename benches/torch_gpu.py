"""PyTorch baselines on the GPU for scorch's device check (same card, same run).

Prints one table: case, median ms, and GB/s or TFLOP/s. These are the denominators of the
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
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}")
    rows = []
    n = 64 * 1024 * 1024
    x = torch.randn(n, device=dev)
    y = torch.empty_like(x)
    ms = median_ms(lambda: y.copy_(x))
    copy_gbs = 2 * 4 * n / ms / 1e6
    rows.append(("copy f32 64M", ms, f"{copy_gbs:.0f} GB/s (roofline reference)"))
    b = torch.randn(n, device=dev)
    ms = median_ms(lambda: torch.add(x, b, out=y))
    rows.append(("add f32 64M", ms, f"{3 * 4 * n / ms / 1e6:.0f} GB/s"))
    ms = median_ms(lambda: x.sum())
    rows.append(("sum f32 64M", ms, f"{4 * n / ms / 1e6:.0f} GB/s"))
    s = torch.randn(16384, 4096, device=dev)
    ms = median_ms(lambda: torch.softmax(s, -1))
    rows.append(("softmax f32 16384x4096", ms, f"{2 * 4 * s.numel() / ms / 1e6:.0f} GB/s"))
    yr, yf, xg = (torch.randn(64, 3, 64, 64, device=dev) for _ in range(3))
    xg.requires_grad_(True)
    yr.requires_grad_(True)
    yf.requires_grad_(True)

    def sid_fb():
        l = sid_loss(yr, yf, xg).sum()
        torch.autograd.grad(l, [yr, yf, xg])

    rows.append(("SiD loss fwd+bwd eager 64x3x64x64", median_ms(sid_fb), ""))
    a = [torch.rand(1 << 22, device=dev) * 20 + 0.5 for _ in range(4)]
    rows.append(("beta KL fwd eager 4M", median_ms(lambda: beta_kl(*a)), ""))
    q, k, v = (torch.randn(4, 8, 1024, 64, device=dev, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    flops = 4 * 4 * 8 * 1024 * 1024 * 64
    ms = median_ms(lambda: F.scaled_dot_product_attention(q, k, v))
    rows.append(("SDPA bf16 fwd B4 H8 S1024 D64", ms, f"{flops / ms / 1e9:.1f} TFLOP/s"))
    go = torch.randn_like(q)

    def sdpa_fb():
        o = F.scaled_dot_product_attention(q, k, v)
        torch.autograd.grad(o, [q, k, v], go)

    ms = median_ms(sdpa_fb)
    rows.append(("SDPA bf16 fwd+bwd", ms, f"{3.5 * flops / ms / 1e9:.1f} TFLOP/s"))
    xc = torch.randn(64, 128, 32, 32, device=dev, dtype=torch.bfloat16, requires_grad=True)
    wc = torch.randn(128, 128, 3, 3, device=dev, dtype=torch.bfloat16, requires_grad=True)
    cflops = 2 * 64 * 128 * 32 * 32 * 128 * 9
    ms = median_ms(lambda: F.conv2d(xc, wc, padding=1))
    rows.append(("conv2d 3x3 bf16 fwd B64 128->128 32x32", ms, f"{cflops / ms / 1e9:.1f} TFLOP/s"))
    gy = torch.randn(64, 128, 32, 32, device=dev, dtype=torch.bfloat16)

    def conv_fb():
        o = F.conv2d(xc, wc, padding=1)
        torch.autograd.grad(o, [xc, wc], gy)

    ms = median_ms(conv_fb)
    rows.append(("conv2d 3x3 bf16 fwd+bwd", ms, f"{3 * cflops / ms / 1e9:.1f} TFLOP/s"))
    print(f"{'case':<42} {'median ms':>10}  rate")
    for name, ms, rate in rows:
        print(f"{name:<42} {ms:>10.3f}  {rate}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
