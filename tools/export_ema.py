#!/usr/bin/env python3
"""Copies the EMA weights out of a scorch training checkpoint (the `ema.<name>` entries of
checkpoint.safetensors) into a weights-only file under the network's own names, plus the
run's recipe.toml: a teacher directory `scorch distill`, `sample` and `eval` can load.

    python3 tools/export_ema.py RUN_DIR OUT_DIR

Needs the `safetensors` and `numpy` Python packages. The step the EMA belongs to is
recorded in OUT_DIR/SOURCE.txt.
"""
import os
import shutil
import sys

from safetensors.numpy import load_file, save_file


def main():
    run, out = sys.argv[1], sys.argv[2]
    ckpt = load_file(os.path.join(run, "checkpoint.safetensors"))
    ema = {k[len("ema."):]: v for k, v in ckpt.items() if k.startswith("ema.")}
    if not ema:
        sys.exit(f"{run}/checkpoint.safetensors holds no ema.* entries")
    step = int(ckpt["train.state"][0]) if "train.state" in ckpt else None
    os.makedirs(out, exist_ok=True)
    tmp = os.path.join(out, "ema.safetensors.tmp")
    save_file(ema, tmp, metadata={"format": "scorch.params"})
    os.replace(tmp, os.path.join(out, "ema.safetensors"))
    shutil.copy(os.path.join(run, "recipe.toml"), os.path.join(out, "recipe.toml"))
    with open(os.path.join(out, "SOURCE.txt"), "w") as f:
        f.write(f"EMA weights of {os.path.abspath(run)} at step {step} ({len(ema)} tensors)\n")
    print(f"{len(ema)} tensors, step {step} -> {out}")


if __name__ == "__main__":
    main()
