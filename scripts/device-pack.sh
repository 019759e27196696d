#!/usr/bin/env bash
# Builds the release `scorch` binary (x86-64, stripped) and gathers it with the scripts the
# GPU machine needs into ./device-pack (ignored by git; name it in the device tool's carry).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin scorch
rm -rf device-pack
mkdir -p device-pack
cp target/release/scorch device-pack/
cp scripts/device-check.sh device-pack/
cp benches/torch_gpu.py benches/gpu_table.py benches/torch_sid.py device-pack/
# The Fashion-MNIST test split, for the GPU quickstart's FD-FMNIST (SiD itself is data-free).
fm="${SCORCH_FMNIST_DIR:-/usr/share/datasets/fashion-mnist}"
if [ -f "$fm/t10k-images-idx3-ubyte.gz" ]; then
  mkdir -p device-pack/fmnist
  cp "$fm"/t10k-*-idx1-ubyte.gz "$fm"/t10k-*-idx3-ubyte.gz device-pack/fmnist/
fi
git rev-parse --short HEAD > device-pack/COMMIT
du -sh device-pack
