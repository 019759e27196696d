#!/usr/bin/env python3
"""PyTorch CPU baseline for benches/sid.rs: one SiD distillation iteration (fake-score step,
generator step, generator EMA) on EDM's CIFAR-10 DDPM++ network (unconditional,
augment_dim 9, 55,733,891 parameters) at batch 8, fp32, 2 threads.

The network (SongUNet + EDMPrecond) is written from the spec (shared/spec/edm-sid.md §1–2)
and scorch's port (models/src/edm/{layers.rs, networks/block.rs, networks/song.rs,
precond.rs}); the iteration follows models/src/sid/{distill.rs, loss.rs} (spec §3.3–3.6).
Teacher f_φ, fake score f_ψ and generator G start as copies of one random init, as in the
Rust bench.

    python3 benches/torch_sid.py                        # warm-up 1, time 5 iterations
    python3 benches/torch_sid.py --iters 10 --json target/torch_sid.json
    python3 benches/torch_sid.py --params               # parameter count of the full net, exit
    python3 benches/torch_sid.py --quick --iters 1      # tiny net (model_channels 16, 1 block): smoke test
"""

import argparse
import copy
import json
import math
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

THREADS = 2
EXPECTED_PARAMS = 55_733_891  # spec §2.6: CIFAR-10 uncond DDPM++, augment_dim 9

# SiD constants (spec §3, DistillConfig::sid / SidLoss::default in models/src/sid).
SIGMA_INIT = 2.5
ALPHA = 1.2
T_MAX = 0.8  # tmax 800 / 1000
SIGMA_MIN, SIGMA_MAX, RHO = 0.002, 80.0, 7.0
P_MEAN, P_STD = -1.2, 1.2  # fake-score loss: ln σ ~ N(P_mean, P_std²)
SIGMA_DATA = 0.5
LS, LSG = 1.0, 100.0  # loss scales of ψ and θ
LR = 1e-5
BETAS = (0.0, 0.999)
ADAM_EPS = 1e-8
EMA_BETA = 0.999


# ------------------------------------------------------------------------------ layers
# EDM's weight init (spec §2.1); SongUNet uses xavier_uniform everywhere, biases zero.


def xavier_uniform_(t, fan_in, fan_out, scale=1.0):
    bound = scale * math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        t.uniform_(-bound, bound)
    return t


class Linear(nn.Module):
    def __init__(self, cin, cout, bias=True, init_weight=1.0):
        super().__init__()
        self.weight = nn.Parameter(xavier_uniform_(torch.empty(cout, cin), cin, cout, init_weight))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)


def fir_filter(taps):
    """The normalised 2-D FIR filter f = a aᵀ / (Σa)², shape [1, 1, n, n]."""
    a = torch.tensor(taps, dtype=torch.float32)
    return (torch.outer(a, a) / a.sum() ** 2)[None, None]


class Conv2d(nn.Module):
    """EDM's Conv2d, non-fused: optional 2× up (transposed depthwise conv with 4f) or down
    (depthwise conv with f, stride 2), then a k×k conv with padding k//2 (k = 0: resample only)."""

    def __init__(self, cin, cout, kernel, bias=True, up=False, down=False, resample_filter=(1, 1), init_weight=1.0):
        super().__init__()
        self.cin, self.cout, self.up, self.down = cin, cout, up, down
        fan_in, fan_out = cin * kernel * kernel, cout * kernel * kernel
        self.weight = (
            nn.Parameter(xavier_uniform_(torch.empty(cout, cin, kernel, kernel), fan_in, fan_out, init_weight))
            if kernel
            else None
        )
        self.bias = nn.Parameter(torch.zeros(cout)) if kernel and bias else None
        if up or down:
            self.register_buffer("resample_filter", fir_filter(resample_filter))
        else:
            self.resample_filter = None

    def forward(self, x):
        if self.resample_filter is not None:
            f = self.resample_filter
            c, n = x.shape[1], f.shape[-1]
            pad = (n - 1) // 2
            if self.up:
                x = F.conv_transpose2d(x, (f * 4).expand(c, 1, n, n), groups=c, stride=2, padding=pad)
            else:
                x = F.conv2d(x, f.expand(c, 1, n, n), groups=c, stride=2, padding=pad)
        if self.weight is not None:
            x = F.conv2d(x, self.weight, self.bias, padding=self.weight.shape[-1] // 2)
        elif self.bias is not None:
            x = x + self.bias.reshape(1, -1, 1, 1)
        return x


class GroupNorm(nn.Module):
    """EDM's GroupNorm: min(32, C // 4) groups."""

    def __init__(self, c, eps=1e-6):
        super().__init__()
        self.groups = min(32, c // 4)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))

    def forward(self, x):
        return F.group_norm(x, self.groups, self.weight, self.bias, self.eps)


ATTN_IMPL = "sdpa"  # or "einsum" (set from --attn)


class UNetBlock(nn.Module):
    """spec §2.2 with SongUNet's arguments: num_heads 1, skip_scale √0.5, GroupNorm eps 1e-6,
    resample_proj True, adaptive_scale False."""

    def __init__(self, cin, cout, emb, up=False, down=False, attention=False, dropout=0.0, filt=(1, 1)):
        super().__init__()
        self.cin, self.cout = cin, cout
        self.dropout = dropout
        self.skip_scale = math.sqrt(0.5)
        self.num_heads = 1 if attention else 0
        self.norm0 = GroupNorm(cin)
        self.conv0 = Conv2d(cin, cout, 3, up=up, down=down, resample_filter=filt)
        self.affine = Linear(emb, cout)
        self.norm1 = GroupNorm(cout)
        self.conv1 = Conv2d(cout, cout, 3, init_weight=1e-5)
        self.skip = None
        if cout != cin or up or down:
            # resample_proj = True: always a 1×1 projection.
            self.skip = Conv2d(cin, cout, 1, up=up, down=down, resample_filter=filt)
        if self.num_heads:
            self.norm2 = GroupNorm(cout)
            self.qkv = Conv2d(cout, 3 * cout, 1, init_weight=math.sqrt(0.2))
            self.proj = Conv2d(cout, cout, 1, init_weight=1e-5)

    def forward(self, x, emb):
        orig = x
        x = self.conv0(F.silu(self.norm0(x)))
        params = self.affine(emb).unsqueeze(2).unsqueeze(3)
        x = F.silu(self.norm1(x + params))
        x = self.conv1(F.dropout(x, p=self.dropout, training=self.training))
        x = x + (self.skip(orig) if self.skip is not None else orig)
        x = x * self.skip_scale
        if self.num_heads:
            b, c, h, w = x.shape
            heads = self.num_heads
            ch = c // heads
            # qkv's output channels are [heads, ch, 3]: q/k/v interleaved per channel.
            qkv = self.qkv(self.norm2(x)).reshape(b * heads, ch, 3, h * w)
            q, k, v = qkv.unbind(2)  # each [B·heads, ch, HW]
            if ATTN_IMPL == "sdpa":
                a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
                a = a.transpose(1, 2)  # [B·heads, ch, HW]
            else:
                wts = torch.einsum("nci,ncj->nij", q, k / math.sqrt(ch)).softmax(dim=2)
                a = torch.einsum("nij,ncj->nci", wts, v)
            x = self.proj(a.reshape(b, c, h, w)) + x
            x = x * self.skip_scale
        return x


class PositionalEmbedding(nn.Module):
    """freqs_i = (1/10000)^(i / (N/2 − 1)) (endpoint=True); output [cos | sin]."""

    def __init__(self, n, max_positions=10000, endpoint=True):
        super().__init__()
        half = n // 2
        i = torch.arange(half, dtype=torch.float32)
        freqs = (1.0 / max_positions) ** (i / (half - (1 if endpoint else 0)))
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, c_noise):
        a = c_noise.reshape(-1, 1) * self.freqs.reshape(1, -1)
        return torch.cat([a.cos(), a.sin()], dim=1)


class SongUNet(nn.Module):
    """DDPM++: positional embedding, standard encoder and decoder, FIR [1,1] (spec §2.4)."""

    def __init__(
        self,
        img_resolution=32,
        in_channels=3,
        out_channels=3,
        augment_dim=9,
        model_channels=128,
        channel_mult=(2, 2, 2),
        channel_mult_emb=4,
        num_blocks=4,
        attn_resolutions=(16,),
        dropout=0.13,
        channel_mult_noise=1,
        resample_filter=(1, 1),
    ):
        super().__init__()
        emb = model_channels * channel_mult_emb
        noise_ch = model_channels * channel_mult_noise
        filt = resample_filter
        kw = dict(emb=emb, dropout=dropout, filt=filt)

        self.map_noise = PositionalEmbedding(noise_ch, endpoint=True)
        self.map_augment = Linear(augment_dim, noise_ch, bias=False) if augment_dim else None
        self.map_layer0 = Linear(noise_ch, emb)
        self.map_layer1 = Linear(emb, emb)

        # Encoder (ModuleDict keys = official state-dict names).
        self.enc = nn.ModuleDict()
        cout = in_channels
        for level, mult in enumerate(channel_mult):
            res = img_resolution >> level
            if level == 0:
                cin, cout = cout, model_channels
                self.enc[f"{res}x{res}_conv"] = Conv2d(cin, cout, 3)
            else:
                self.enc[f"{res}x{res}_down"] = UNetBlock(cout, cout, down=True, **kw)
            for idx in range(num_blocks):
                cin, cout = cout, model_channels * mult
                self.enc[f"{res}x{res}_block{idx}"] = UNetBlock(cin, cout, attention=res in attn_resolutions, **kw)
        skips = [m.cout for m in self.enc.values()]

        # Decoder.
        self.dec = nn.ModuleDict()
        self.dec_takes_skip = {}
        for level, mult in reversed(list(enumerate(channel_mult))):
            res = img_resolution >> level
            if level == len(channel_mult) - 1:
                self.dec[f"{res}x{res}_in0"] = UNetBlock(cout, cout, attention=True, **kw)
                self.dec[f"{res}x{res}_in1"] = UNetBlock(cout, cout, **kw)
            else:
                self.dec[f"{res}x{res}_up"] = UNetBlock(cout, cout, up=True, **kw)
            for idx in range(num_blocks + 1):
                cin, cout = cout + skips.pop(), model_channels * mult
                attn = idx == num_blocks and res in attn_resolutions
                name = f"{res}x{res}_block{idx}"
                self.dec[name] = UNetBlock(cin, cout, attention=attn, **kw)
                self.dec_takes_skip[name] = True
            if level == 0:
                self.dec[f"{res}x{res}_aux_norm"] = GroupNorm(cout, eps=1e-6)
                self.dec[f"{res}x{res}_aux_conv"] = Conv2d(cout, out_channels, 3, init_weight=1e-5)
        assert not skips

    def forward(self, x, noise_labels, augment_labels=None):
        # Mapping: [cos | sin] with the halves swapped to [sin | cos].
        e = self.map_noise(noise_labels)
        e = e.reshape(e.shape[0], 2, -1).flip(1).reshape(e.shape)
        if augment_labels is not None and self.map_augment is not None:
            e = e + self.map_augment(augment_labels)
        e = F.silu(self.map_layer0(e))
        emb = F.silu(self.map_layer1(e))

        skips = []
        for m in self.enc.values():
            x = m(x, emb) if isinstance(m, UNetBlock) else m(x)
            skips.append(x)

        out = tmp = None
        for name, m in self.dec.items():
            if name.endswith("_aux_norm"):
                tmp = m(x)
            elif name.endswith("_aux_conv"):
                out = m(F.silu(tmp))
            else:
                if self.dec_takes_skip.get(name, False):
                    x = torch.cat([x, skips.pop()], dim=1)  # x first, skip second
                x = m(x, emb)
        return out


class EDMPrecond(nn.Module):
    """D(x; σ) = c_skip·x + c_out·F(c_in·x, ln(σ)/4) (spec §1.1); the U-Net lives under `model`."""

    def __init__(self, sigma_data=SIGMA_DATA, **unet_kwargs):
        super().__init__()
        self.sigma_data = sigma_data
        self.model = SongUNet(**unet_kwargs)

    def forward(self, x, sigma, augment_labels=None):
        x = x.to(torch.float32)
        sigma = sigma.to(torch.float32).reshape(-1, 1, 1, 1)
        sd2 = self.sigma_data**2
        c_skip = sd2 / (sigma**2 + sd2)
        c_out = sigma * self.sigma_data / (sigma**2 + sd2).sqrt()
        c_in = 1 / (sigma**2 + sd2).sqrt()
        c_noise = sigma.log().reshape(-1) / 4
        f_x = self.model(c_in * x, c_noise, augment_labels)
        return c_skip * x + c_out * f_x.to(torch.float32)


FULL = dict(model_channels=128, num_blocks=4)
QUICK = dict(model_channels=16, num_blocks=1)


def build_net(quick):
    return EDMPrecond(**(QUICK if quick else FULL))


def count_params(net):
    return sum(p.numel() for p in net.parameters())


# -------------------------------------------------------------------------- SiD iteration


def sigma_at(t):
    """σ(t) = (σ_max^(1/ρ) + (1 − t)(σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ, elementwise on a tensor."""
    lo, hi = SIGMA_MIN ** (1 / RHO), SIGMA_MAX ** (1 / RHO)
    return (hi + (1 - t) * (lo - hi)) ** RHO


def finite_rows(*ts):
    """Bool [B]: rows of every tensor that are all finite (the NaN filter of spec §3.3–3.4)."""
    keep = None
    for t in ts:
        k = torch.isfinite(t).flatten(1).all(dim=1)
        keep = k if keep is None else keep & k
    return keep


def grads_nan_to_num(params):
    for p in params:
        if p.grad is not None:
            torch.nan_to_num_(p.grad, nan=0.0, posinf=1e5, neginf=-1e5)


class SiD:
    def __init__(self, teacher, batch, adam_impl):
        self.teacher = teacher
        self.fake = copy.deepcopy(teacher)
        self.gen = copy.deepcopy(teacher)
        self.ema = copy.deepcopy(teacher)
        for net in (self.teacher, self.ema):
            net.eval()
            net.requires_grad_(False)
        self.batch = batch
        opt_kw = dict(lr=LR, betas=BETAS, eps=ADAM_EPS)
        if adam_impl == "foreach":
            opt_kw["foreach"] = True
        elif adam_impl == "fused":
            opt_kw["fused"] = True
        self.fake_params = list(self.fake.parameters())
        self.gen_params = list(self.gen.parameters())
        self.ema_params = list(self.ema.parameters())
        self.opt_fake = torch.optim.Adam(self.fake_params, **opt_kw)
        self.opt_gen = torch.optim.Adam(self.gen_params, **opt_kw)
        self.sigma_init = torch.tensor([SIGMA_INIT])

    def generate(self, z):
        return self.gen(SIGMA_INIT * z, self.sigma_init)

    def fake_step(self):
        b = self.batch
        self.fake.train()
        self.gen.eval()
        self.opt_fake.zero_grad(set_to_none=True)
        with torch.no_grad():
            z = torch.randn(b, 3, 32, 32)
            x_g = self.generate(z)
        sigma = (torch.randn(b, 1, 1, 1) * P_STD + P_MEAN).exp()
        lam = (sigma**2 + SIGMA_DATA**2) / (sigma * SIGMA_DATA) ** 2
        n = torch.randn_like(x_g) * sigma
        d = self.fake(x_g + n, sigma)
        keep = finite_rows(d, x_g)
        if not bool(keep.all()):
            d, x_g, lam = d[keep], x_g[keep], lam[keep]
        loss = (lam * (d - x_g) ** 2).sum()
        (loss * (LS / b)).backward()
        grads_nan_to_num(self.fake_params)
        self.opt_fake.step()
        self.fake.eval()
        return loss.item() / b

    def generator_step(self):
        b = self.batch
        self.gen.train()
        self.opt_gen.zero_grad(set_to_none=True)
        self.fake.requires_grad_(False)
        try:
            z = torch.randn(b, 3, 32, 32)
            x_g = self.generate(z)
            sigma = sigma_at(torch.rand(b, 1, 1, 1, dtype=torch.float64) * T_MAX).to(torch.float32)
            x_t = x_g + torch.randn_like(x_g) * sigma
            y_real = self.teacher(x_t, sigma)
            y_fake = self.fake(x_t, sigma)
            keep = finite_rows(x_g, y_real, y_fake)
            if not bool(keep.all()):
                x_g, y_real, y_fake = x_g[keep], y_real[keep], y_fake[keep]
            with torch.no_grad():
                w = 1.0 / (x_g - y_real).abs().mean(dim=(1, 2, 3), keepdim=True).clamp(min=1e-5)
            diff = y_real - y_fake
            loss = (diff * ((y_real - x_g) - ALPHA * diff) * w).sum()
            (loss * (LSG / b)).backward()
        finally:
            self.fake.requires_grad_(True)
        grads_nan_to_num(self.gen_params)
        self.opt_gen.step()
        self.gen.eval()
        return loss.item() / b

    @torch.no_grad()
    def ema_update(self):
        if hasattr(torch, "_foreach_lerp_"):
            torch._foreach_lerp_(self.ema_params, self.gen_params, 1.0 - EMA_BETA)
        else:
            for e, p in zip(self.ema_params, self.gen_params):
                e.lerp_(p, 1.0 - EMA_BETA)

    def iteration(self):
        fl = self.fake_step()
        gl = self.generator_step()
        self.ema_update()
        return fl, gl


# ---------------------------------------------------------------------------------- main


def main():
    global ATTN_IMPL
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=THREADS, help="torch.set_num_threads (default 2)")
    ap.add_argument("--iters", type=int, default=5, help="timed iterations (default 5)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed iterations first (default 1)")
    ap.add_argument("--batch", type=int, default=8, help="generator samples per step (default 8)")
    ap.add_argument("--json", help="write {case: {median_s, min_s, params, torch, threads}} here")
    ap.add_argument("--quick", action="store_true", help="tiny net (model_channels 16, num_blocks 1): smoke test")
    ap.add_argument("--params", action="store_true", help="print the full net's parameter count and exit")
    ap.add_argument("--attn", choices=["sdpa", "einsum"], default="sdpa",
                    help="attention: F.scaled_dot_product_attention (default) or EDM-style einsum + softmax")
    ap.add_argument("--adam", choices=["default", "foreach", "fused"], default="default",
                    help="torch.optim.Adam implementation (default: PyTorch's choice, the for-loop one on CPU)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (torch.set_default_device)")
    ap.add_argument("--line", action="store_true",
                    help="also print `sid_iter_cifar_b8|median ms|` for benches/gpu_table.py")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.set_default_device(args.device)
    ATTN_IMPL = args.attn
    torch.manual_seed(args.seed)

    if args.params:
        n = count_params(build_net(False))
        print(f"sid network parameters (pytorch, full CIFAR-10 DDPM++): {n}")
        assert n == EXPECTED_PARAMS, f"parameter count {n} != {EXPECTED_PARAMS}"
        return 0

    teacher = build_net(args.quick)
    n_params = count_params(teacher)
    print(f"sid network parameters (pytorch{', quick' if args.quick else ''}): {n_params}")
    if not args.quick:
        assert n_params == EXPECTED_PARAMS, f"parameter count {n_params} != {EXPECTED_PARAMS}"
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {args.batch}, "
          f"attn {args.attn}, adam {args.adam}", flush=True)

    sid = SiD(teacher, args.batch, args.adam)
    for i in range(args.warmup):
        t0 = time.perf_counter()
        fl, gl = sid.iteration()
        print(f"warm-up {i}: {time.perf_counter() - t0:.3f} s  (fake loss {fl:.4g}, gen loss {gl:.4g})", flush=True)
    times = []
    for i in range(args.iters):
        t0 = time.perf_counter()
        fl, gl = sid.iteration()
        times.append(time.perf_counter() - t0)
        print(f"iter {i}: {times[-1]:.3f} s  (fake loss {fl:.4g}, gen loss {gl:.4g})", flush=True)
    if not times:
        return 0
    med, fastest = statistics.median(times), min(times)
    case = f"sid_iteration_{'quick' if args.quick else 'cifar_ddpmpp'}_b{args.batch}"
    print(f"{case}: median {med:.3f} s, min {fastest:.3f} s per iteration over {len(times)}")
    if args.line:
        print(f"sid_iter_cifar_b{args.batch}|{med * 1e3:.4f}|{args.device}", flush=True)
    if args.json:
        res = {case: {"median_s": med, "min_s": fastest, "params": n_params, "torch": torch.__version__,
                      "threads": args.threads}}
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
