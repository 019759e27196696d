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
git rev-parse --short HEAD > device-pack/COMMIT
du -sh device-pack
