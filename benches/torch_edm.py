"""One EDM training step in PyTorch, the computation `cargo bench --bench edm_step` times:
log-normal σ (P_mean −1.2, P_std 1.2), D(y + σn; σ) with EDM's preconditioning, the
λ(σ)-weighted squared error summed and divided by the batch, backward, gradient nan_to_num,
Adam (lr 1e-3, betas 0.9/0.999, eps 1e-8), f32 on the CPU.

Nets (the network code is benches/torch_sid.py's, written from the spec):
  cifar_ddpmpp_b8   EDM CIFAR-10 DDPM++ unconditional (55,733,891 parameters, dropout 0.13)
  fmnist_tiny_b64   recipes/edm-fmnist-tiny.toml's net (308,545 parameters, no dropout)

Usage: python3 benches/torch_edm.py [--threads 2] [--iters 5] [--case NAME]
"""
import argparse
import statistics
import sys
import time

import torch

import torch_sid as ts

P_MEAN, P_STD, SIGMA_DATA = -1.2, 1.2, 0.5

CASES = {
    "cifar_ddpmpp_b8": (dict(model_channels=128, num_blocks=4), (8, 3, 32, 32), ts.EXPECTED_PARAMS),
    "fmnist_tiny_b64": (
        dict(in_channels=1, out_channels=1, augment_dim=0, model_channels=16, channel_mult=(1, 2, 2),
             num_blocks=1, attn_resolutions=(), dropout=0.0),
        (64, 1, 32, 32),
        308545,
    ),
}


def edm_step(net, opt, images):
    opt.zero_grad(set_to_none=True)
    b = images.shape[0]
    sigma = (torch.randn(b, 1, 1, 1) * P_STD + P_MEAN).exp()
    weight = (sigma**2 + SIGMA_DATA**2) / (sigma * SIGMA_DATA) ** 2
    noisy = images + torch.randn_like(images) * sigma
    loss = weight * (net(noisy, sigma) - images) ** 2
    (loss.sum() / b).backward()
    for p in net.parameters():
        if p.grad is not None:
            torch.nan_to_num_(p.grad, nan=0.0, posinf=1e5, neginf=-1e5)
    opt.step()
    return loss.mean().item()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--case", choices=sorted(CASES), action="append")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    for name in args.case or list(CASES):
        kw, shape, want = CASES[name]
        net = ts.EDMPrecond(**kw)
        n = ts.count_params(net)
        assert n == want, f"{name}: {n} parameters, expected {want}"
        net.train()
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
        images = torch.rand(shape) * 2 - 1
        for _ in range(args.warmup):
            edm_step(net, opt, images)
        times = []
        for _ in range(args.iters):
            t0 = time.perf_counter()
            edm_step(net, opt, images)
            times.append(time.perf_counter() - t0)
        print(f"edm_train_step/{name}: median {statistics.median(times) * 1e3:.1f} ms, "
              f"min {min(times) * 1e3:.1f} ms over {len(times)} ({n} parameters)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
