#!/usr/bin/env python3
"""Converts an official EDM network pickle (NVlabs/edm, e.g. edm-cifar10-32x32-uncond-vp.pkl)
into a safetensors file of its EMA network's state dict, under the official names — which
are scorch's parameter and buffer names (models::edm), so scorch loads it by name:

    PYTHONPATH=/path/to/NVlabs/edm python3 tools/convert_edm.py NET.pkl OUT.safetensors

    // Rust: the matching preset, then the weights.
    let store = ParamStore::new(DType::F32, 0);
    let net = EdmPrecond::new(&store.root(), &presets::cifar10_ddpmpp(false))?;
    store.load("OUT.safetensors")?;

Unpickling needs PyTorch and the official repository on the Python path (its `dnnlib` and
`torch_utils` modules define the pickled classes). The attention `qkv` weights keep the
official interleaved q/k/v row layout, which scorch's attention reads as is. Every tensor is
written as contiguous f32; the FIR `resample_filter` buffers are dropped (scorch derives
them from the configuration), so the strict `store.load` accepts the file.

    python3 tools/convert_edm.py --fixture OUT.safetensors

writes the test fixture models/tests/edm_networks.rs checks instead: a small DDPM++ net
(model_channels 16, one block per level) from benches/torch_sid.py's PyTorch network, its
state dict converted exactly as above, plus an input batch and PyTorch's output.
"""
import os
import sys


def convert_state_dict(sd):
    """{name: tensor} -> {name: contiguous f32 numpy array}. The `resample_filter` buffers
    are left out: they are the fixed FIR taps the configuration implies ([1, 1] for DDPM++,
    [1, 3, 3, 1] for NCSN++), which scorch builds itself rather than loads."""
    return {
        k: v.detach().to("cpu").float().contiguous().numpy()
        for k, v in sd.items()
        if not k.endswith(".resample_filter")
    }


def save(tensors, out, metadata):
    from safetensors.numpy import save_file

    tmp = out + ".tmp"
    save_file(tensors, tmp, metadata=metadata)
    os.replace(tmp, out)


def convert_pickle(pkl, out):
    import pickle

    with open(pkl, "rb") as f:
        data = pickle.load(f)
    net = data["ema"] if isinstance(data, dict) and "ema" in data else data
    tensors = convert_state_dict(net.state_dict())
    save(tensors, out, {"format": "scorch.params", "source": os.path.basename(pkl)})
    print(f"{out}: {len(tensors)} tensors, {sum(t.size for t in tensors.values())} values")


def make_fixture(out):
    import torch

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benches"))
    import torch_sid as ts

    torch.manual_seed(0)
    net = ts.build_net(True)  # model_channels 16, num_blocks 1, augment_dim 9, attention at 16x16
    net.eval()
    # Random (not zero-initialised) weights everywhere, so every layer affects the output.
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.copy_(torch.randn_like(p) * (0.5 / max(1, p[0].numel()) ** 0.5 if p.dim() > 1 else 0.1))
    tensors = convert_state_dict(net.state_dict())
    x = torch.randn(2, 3, 32, 32)
    sigma = torch.tensor([0.7, 4.0])
    with torch.no_grad():
        d = net(x, sigma)
    tensors["test.x"] = x.numpy()
    tensors["test.sigma"] = sigma.numpy()
    tensors["test.d"] = d.contiguous().numpy()
    save(tensors, out, {"format": "scorch.params", "source": "tools/convert_edm.py --fixture", "torch": torch.__version__})
    print(f"{out}: {len(tensors)} tensors; output mean |D| {d.abs().mean():.4f}")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--fixture":
        make_fixture(sys.argv[2])
    elif len(sys.argv) == 3:
        convert_pickle(sys.argv[1], sys.argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
