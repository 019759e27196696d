#!/usr/bin/env bash
# The one device check, run on the GPU machine (CUDA 13 driver, nvcc, PyTorch; no Rust):
#   bash device-pack/device-check.sh            (writes $OUT/table.txt and $OUT/log.txt)
# First it says where everything is, so a failure explains itself; then it runs the CUDA
# kernels' CPU-parity check; then (when present) the PyTorch side of the GPU benchmarks.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${OUT:-$here/out}"
mkdir -p "$out"
log="$out/log.txt"
table="$out/table.txt"
{
  echo "== scorch device check, commit $(cat "$here/COMMIT" 2>/dev/null || echo unknown), $(date -u +%Y-%m-%dT%H:%MZ)"
  nvidia-smi || echo "nvidia-smi failed"
  echo "== libraries"
  for lib in libcuda.so libnvrtc.so libcublas.so libcublasLt.so; do
    echo "$lib: $(ldconfig -p 2>/dev/null | grep -m1 "$lib" || find / -name "$lib*" -not -path '*/proc/*' 2>/dev/null | head -1)"
  done
  cuda_home="${CUDA_HOME:-${CUDA_PATH:-/usr/local/cuda}}"
  echo "CUDA include path: $cuda_home/include ($( [ -f "$cuda_home/include/cuda_bf16.h" ] && echo has cuda_bf16.h || echo missing))"
} >"$log" 2>&1

# NVRTC from the toolkit if the loader does not already see it.
for d in "${CUDA_HOME:-/usr/local/cuda}/lib64" /usr/local/cuda/lib64 /usr/local/cuda-13*/lib64; do
  [ -d "$d" ] && export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
if ! ldconfig -p 2>/dev/null | grep -q libnvrtc.so.13; then
  nv="$(find / -name 'libnvrtc.so.13' -not -path '/proc/*' 2>/dev/null | head -1)"
  [ -n "$nv" ] && export LD_LIBRARY_PATH="$(dirname "$nv"):$LD_LIBRARY_PATH"
fi
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH" >>"$log"
export SCORCH_KERNEL_CACHE="$out/kernel-cache"

{
  echo "# scorch device check — commit $(cat "$here/COMMIT" 2>/dev/null), $(date -u +%Y-%m-%d)"
  echo "## CUDA kernels vs CPU reference (scorch cuda-check)"
  timeout 300 "$here/scorch" cuda-check --device cuda:0 2>&1
  echo "exit: $?"
} | tee -a "$log" >"$table"

if [ -f "$here/torch_gpu.py" ]; then
  { echo "## PyTorch on the same card"; timeout 180 python3 "$here/torch_gpu.py" 2>&1; } | tee -a "$log" >>"$table"
fi
cat "$table"
