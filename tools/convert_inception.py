#!/usr/bin/env python3
"""Converts the standard FID Inception-v3 weights of pytorch-fid
(pt_inception-2015-12-05-6726825d.pth, a port of TensorFlow's 2015-12-05 graph) into a
safetensors file that scorch's `models::metrics::inception` loads by name:

    python3 tools/convert_inception.py pt_inception-2015-12-05-6726825d.pth inception.safetensors
    scorch eval --teacher ... --inception inception.safetensors      # reports FID

It needs PyTorch and the safetensors package, nothing else (the .pth is a plain state dict).
Every tensor keeps its torchvision name (`Conv2d_1a_3x3.conv.weight`,
`Mixed_5b.branch_pool.bn.running_var`, ...) and is written as contiguous f32. Left out:
`num_batches_tracked` (a counter) and the 1008-way `fc` head (FID uses the 2048 pool
features), so scorch's strict loader accepts the file.

    python3 tools/convert_inception.py --fixture OUT.safetensors

writes the test fixture of models/tests/inception.rs instead: this file's own PyTorch
definition of the FID network (torchvision's Inception3 with pytorch-fid's FID blocks:
average pools that do not count padding, a max pool in the last block), its weights filled
by `fixture_values` (a formula the Rust test evaluates identically, so the 22M weights need
not be stored), run on a small input batch; the file holds the input and PyTorch's 2048
features (and, as metadata, the parameter count).
"""
import os
import sys

import numpy as np

MASK = (1 << 64) - 1


def fnv1a64(s):
    h = 0xCBF29CE484222325
    for b in s.encode():
        h = ((h ^ b) * 0x100000001B3) & MASK
    return h


def fixture_values(name, n):
    """Values in [-1, 1) for the n elements of tensor `name`: splitmix64 of (FNV-1a of the
    name + index), top 24 bits. Exact in f32; models/tests/inception.rs computes the same."""
    with np.errstate(over="ignore"):
        z = np.uint64(fnv1a64(name)) + np.arange(n, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(40)).astype(np.float64) / float(1 << 23) - 1.0


def fixture_tensor(name, shape):
    """A fixture parameter: He-uniform conv weights, batch-norm statistics near identity."""
    n = int(np.prod(shape))
    u = fixture_values(name, n)
    if name.endswith("conv.weight"):
        fan_in = int(np.prod(shape[1:]))
        v = u * np.sqrt(3.0) * np.sqrt(2.0 / fan_in)
    elif name.endswith("bn.weight"):
        v = 1.0 + 0.1 * u
    elif name.endswith("bn.bias") or name.endswith("bn.running_mean"):
        v = 0.1 * u
    elif name.endswith("bn.running_var"):
        v = 1.0 + 0.25 * (u + 1.0)
    else:
        raise ValueError(f"no fixture rule for {name}")
    return v.astype(np.float32).reshape(shape)


def build_fid_inception():
    import torch
    import torch.nn.functional as F
    from torch import nn

    class BasicConv(nn.Module):
        def __init__(self, cin, cout, k, stride=1, pad=0):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=pad, bias=False)
            self.bn = nn.BatchNorm2d(cout, eps=0.001)

        def forward(self, x):
            return F.relu(self.bn(self.conv(x)))

    def avg3(x):
        return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)

    class A(nn.Module):
        def __init__(self, cin, pool):
            super().__init__()
            self.branch1x1 = BasicConv(cin, 64, 1)
            self.branch5x5_1 = BasicConv(cin, 48, 1)
            self.branch5x5_2 = BasicConv(48, 64, 5, pad=2)
            self.branch3x3dbl_1 = BasicConv(cin, 64, 1)
            self.branch3x3dbl_2 = BasicConv(64, 96, 3, pad=1)
            self.branch3x3dbl_3 = BasicConv(96, 96, 3, pad=1)
            self.branch_pool = BasicConv(cin, pool, 1)

        def forward(self, x):
            b5 = self.branch5x5_2(self.branch5x5_1(x))
            b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
            return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(avg3(x))], 1)

    class B(nn.Module):
        def __init__(self, cin):
            super().__init__()
            self.branch3x3 = BasicConv(cin, 384, 3, stride=2)
            self.branch3x3dbl_1 = BasicConv(cin, 64, 1)
            self.branch3x3dbl_2 = BasicConv(64, 96, 3, pad=1)
            self.branch3x3dbl_3 = BasicConv(96, 96, 3, stride=2)

        def forward(self, x):
            b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
            return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, 3, stride=2)], 1)

    class C(nn.Module):
        def __init__(self, cin, c7):
            super().__init__()
            self.branch1x1 = BasicConv(cin, 192, 1)
            self.branch7x7_1 = BasicConv(cin, c7, 1)
            self.branch7x7_2 = BasicConv(c7, c7, (1, 7), pad=(0, 3))
            self.branch7x7_3 = BasicConv(c7, 192, (7, 1), pad=(3, 0))
            self.branch7x7dbl_1 = BasicConv(cin, c7, 1)
            self.branch7x7dbl_2 = BasicConv(c7, c7, (7, 1), pad=(3, 0))
            self.branch7x7dbl_3 = BasicConv(c7, c7, (1, 7), pad=(0, 3))
            self.branch7x7dbl_4 = BasicConv(c7, c7, (7, 1), pad=(3, 0))
            self.branch7x7dbl_5 = BasicConv(c7, 192, (1, 7), pad=(0, 3))
            self.branch_pool = BasicConv(cin, 192, 1)

        def forward(self, x):
            b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
            d = x
            for i in range(1, 6):
                d = getattr(self, f"branch7x7dbl_{i}")(d)
            return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(avg3(x))], 1)

    class D(nn.Module):
        def __init__(self, cin):
            super().__init__()
            self.branch3x3_1 = BasicConv(cin, 192, 1)
            self.branch3x3_2 = BasicConv(192, 320, 3, stride=2)
            self.branch7x7x3_1 = BasicConv(cin, 192, 1)
            self.branch7x7x3_2 = BasicConv(192, 192, (1, 7), pad=(0, 3))
            self.branch7x7x3_3 = BasicConv(192, 192, (7, 1), pad=(3, 0))
            self.branch7x7x3_4 = BasicConv(192, 192, 3, stride=2)

        def forward(self, x):
            b3 = self.branch3x3_2(self.branch3x3_1(x))
            b7 = x
            for i in range(1, 5):
                b7 = getattr(self, f"branch7x7x3_{i}")(b7)
            return torch.cat([b3, b7, F.max_pool2d(x, 3, stride=2)], 1)

    class E(nn.Module):
        def __init__(self, cin, max_pool):
            super().__init__()
            self.max_pool = max_pool
            self.branch1x1 = BasicConv(cin, 320, 1)
            self.branch3x3_1 = BasicConv(cin, 384, 1)
            self.branch3x3_2a = BasicConv(384, 384, (1, 3), pad=(0, 1))
            self.branch3x3_2b = BasicConv(384, 384, (3, 1), pad=(1, 0))
            self.branch3x3dbl_1 = BasicConv(cin, 448, 1)
            self.branch3x3dbl_2 = BasicConv(448, 384, 3, pad=1)
            self.branch3x3dbl_3a = BasicConv(384, 384, (1, 3), pad=(0, 1))
            self.branch3x3dbl_3b = BasicConv(384, 384, (3, 1), pad=(1, 0))
            self.branch_pool = BasicConv(cin, 192, 1)

        def forward(self, x):
            b = self.branch3x3_1(x)
            b3 = torch.cat([self.branch3x3_2a(b), self.branch3x3_2b(b)], 1)
            d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
            dd = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
            p = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else avg3(x)
            return torch.cat([self.branch1x1(x), b3, dd, self.branch_pool(p)], 1)

    class FidInception(nn.Module):
        def __init__(self):
            super().__init__()
            self.Conv2d_1a_3x3 = BasicConv(3, 32, 3, stride=2)
            self.Conv2d_2a_3x3 = BasicConv(32, 32, 3)
            self.Conv2d_2b_3x3 = BasicConv(32, 64, 3, pad=1)
            self.Conv2d_3b_1x1 = BasicConv(64, 80, 1)
            self.Conv2d_4a_3x3 = BasicConv(80, 192, 3)
            self.Mixed_5b = A(192, 32)
            self.Mixed_5c = A(256, 64)
            self.Mixed_5d = A(288, 64)
            self.Mixed_6a = B(288)
            self.Mixed_6b = C(768, 128)
            self.Mixed_6c = C(768, 160)
            self.Mixed_6d = C(768, 160)
            self.Mixed_6e = C(768, 192)
            self.Mixed_7a = D(768)
            self.Mixed_7b = E(1280, max_pool=False)
            self.Mixed_7c = E(2048, max_pool=True)

        def forward(self, x):
            """x: [N, 3, H, W] in [-1, 1] -> [N, 2048]. pytorch-fid resizes [0, 1] images to
            299 x 299 (bilinear, align_corners=False) and maps them by 2x - 1, which is the
            same as resizing the [-1, 1] images."""
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
            x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
            x = F.max_pool2d(x, 3, stride=2)
            x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
            x = F.max_pool2d(x, 3, stride=2)
            for name in ["5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"]:
                x = getattr(self, f"Mixed_{name}")(x)
            return x.mean(dim=(2, 3))

    return FidInception()


def convert_state_dict(sd):
    return {
        k: v.detach().to("cpu").float().contiguous().numpy()
        for k, v in sd.items()
        if not k.endswith("num_batches_tracked") and not k.startswith("fc.")
    }


def save(tensors, out, metadata):
    from safetensors.numpy import save_file

    tmp = out + ".tmp"
    save_file(tensors, tmp, metadata=metadata)
    os.replace(tmp, out)


def convert(pth, out):
    import torch

    sd = torch.load(pth, map_location="cpu")
    tensors = convert_state_dict(sd)
    # Check the names against the architecture scorch implements before writing.
    expected = set(convert_state_dict(build_fid_inception().state_dict()))
    missing, extra = expected - set(tensors), set(tensors) - expected
    if missing or extra:
        sys.exit(f"{pth}: not the FID Inception-v3 state dict (missing {sorted(missing)[:5]}, extra {sorted(extra)[:5]})")
    save(tensors, out, {"format": "scorch.params", "source": os.path.basename(pth)})
    print(f"{out}: {len(tensors)} tensors, {sum(t.size for t in tensors.values())} values")


def make_fixture(out):
    import torch

    torch.set_num_threads(2)
    net = build_fid_inception().eval()
    sd = {k: torch.from_numpy(fixture_tensor(k, tuple(v.shape))) for k, v in convert_state_dict(net.state_dict()).items()}
    missing, unexpected = net.load_state_dict(sd, strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing), (missing, unexpected)
    params = sum(int(np.prod(v.shape)) for v in sd.values())
    x = torch.from_numpy(fixture_values("input", 2 * 3 * 32 * 32).astype(np.float32).reshape(2, 3, 32, 32))
    with torch.no_grad():
        feats = net.double()(x.double()).float()
    save(
        {"input": x.numpy(), "features": feats.numpy()},
        out,
        {"format": "scorch.fixture", "params": str(params), "torch": torch.__version__},
    )
    print(f"{out}: {params} parameter values; features mean {feats.mean():.4f} std {feats.std():.4f}")


def main():
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "--fixture":
        make_fixture(args[1])
    elif len(args) == 2:
        convert(args[0], args[1])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
