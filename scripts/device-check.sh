#!/usr/bin/env bash
# The one device check, run on the GPU machine (CUDA 13 driver, nvcc, PyTorch; no Rust):
#   bash device-pack/device-check.sh
# Writes into $OUT (default device-pack/out): log.txt (everything), parity.txt (CPU-vs-CUDA
# parity of every registry op) and table.md (benchmarks side by side with PyTorch on the same
# card). First it says where everything is, so a failure explains itself. About 3-6 minutes.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${OUT:-$here/out}"
mkdir -p "$out"
log="$out/log.txt"
commit="$(cat "$here/COMMIT" 2>/dev/null || echo unknown)"
{
  echo "== scorch device check, commit $commit, $(date -u +%Y-%m-%dT%H:%MZ)"
  nvidia-smi || echo "nvidia-smi failed"
  echo "== libraries"
  for lib in libcuda.so libnvrtc.so libcublas.so libcublasLt.so; do
    echo "$lib: $(ldconfig -p 2>/dev/null | grep -m1 "$lib" || find / -name "$lib*" -not -path '*/proc/*' 2>/dev/null | head -1)"
  done
  cuda_home="${CUDA_HOME:-${CUDA_PATH:-/usr/local/cuda}}"
  echo "CUDA include path: $cuda_home/include ($( [ -f "$cuda_home/include/cuda_bf16.h" ] && echo has cuda_bf16.h || echo missing))"
} >"$log" 2>&1

# NVRTC / cuBLAS from the toolkit if the loader does not already see them.
for d in "${CUDA_HOME:-/usr/local/cuda}/lib64" /usr/local/cuda/lib64; do
  [ -d "$d" ] && export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}" >>"$log"
# Compiled kernels are cached outside $OUT (only a few files come back from the machine).
export SCORCH_KERNEL_CACHE="${SCORCH_KERNEL_CACHE:-/tmp/scorch-kernel-cache}"
scorch="$here/scorch"
samples="${SAMPLES:-3}"

step() { echo; echo "== $1 ($(date -u +%H:%M:%S))"; }
{
  step "kernel families vs CPU (scorch cuda-check)"
  timeout 40 "$scorch" cuda-check --device cuda:0; echo "exit: $?"
} >>"$log" 2>&1

{
  echo "# CPU-vs-CUDA parity of every registry op — commit $commit, $(date -u +%Y-%m-%d), $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"
  echo "# err/tol: largest |cuda - cpu| / (atol + rtol |cpu|) over outputs and input gradients; ok when <= 1"
  timeout 170 "$scorch" ops --check --device cuda:0 --samples "$samples"; echo "exit: $?"
  echo
  echo "# attention through the cuBLAS path (SCORCH_ATTENTION=gemm)"
  SCORCH_ATTENTION=gemm timeout 40 "$scorch" ops --check --device cuda:0 --samples "$samples" --filter attention; echo "exit: $?"
} >"$out/parity.txt" 2>&1
cat "$out/parity.txt" >>"$log"

step "scorch bench" >>"$log"
timeout 110 "$scorch" bench --device cuda:0 >"$out/scorch_bench.txt" 2>>"$log"
echo "exit: $?" >>"$log"
cat "$out/scorch_bench.txt" >>"$log"
step "PyTorch on the same card" >>"$log"
PYTHONUNBUFFERED=1 timeout 80 python3 "$here/torch_gpu.py" >"$out/torch_bench.txt" 2>>"$log"
echo "exit: $?" >>"$log"
PYTHONUNBUFFERED=1 timeout 70 python3 "$here/torch_sid.py" --device cuda --iters 5 --warmup 2 --line 2>>"$log" | tee -a "$log" | grep '|' >>"$out/torch_bench.txt"
cat "$out/torch_bench.txt" >>"$log"

# Reproducibility on the GPU: the same 12 SiD iterations twice, and 6 + resume + 6.
if [ "${DETERMINISM:-1}" = 1 ]; then
  step "GPU reproducibility: SiD 12 iterations twice, and 6 then --resume to 12" >>"$log"
  ( cd "$here/.." && for run in a b; do rm -rf /tmp/sid-$run
      timeout 60 "$scorch" distill sid --recipe recipes/sid-fmnist.toml --device cuda:0 --steps 12 --out /tmp/sid-$run \
        --set eval_every=0 --set sample_every=0 --set checkpoint_every=6 >/dev/null 2>&1; echo "run $run exit $?"; done
    rm -rf /tmp/sid-c
    timeout 60 "$scorch" distill sid --recipe recipes/sid-fmnist.toml --device cuda:0 --steps 6 --out /tmp/sid-c \
      --set eval_every=0 --set sample_every=0 --set checkpoint_every=6 >/dev/null 2>&1
    timeout 60 "$scorch" distill sid --recipe recipes/sid-fmnist.toml --device cuda:0 --steps 12 --out /tmp/sid-c --resume \
      --set eval_every=0 --set sample_every=0 --set checkpoint_every=6 >/dev/null 2>&1; echo "run c exit $?"
    sha256sum /tmp/sid-a/generator.safetensors /tmp/sid-b/generator.safetensors /tmp/sid-c/generator.safetensors ) >>"$log" 2>&1
fi

if [ "${QUICKSTART:-1}" = 1 ]; then
step "quickstart on the GPU (1 minute of SiD from the shipped teacher)" >>"$log"
rm -rf /tmp/scorch-quickstart
( cd "$here/.." && SCORCH_FMNIST_DIR="$here/fmnist" timeout 240 "$scorch" quickstart --device cuda:0 \
    --set max_minutes=1 --out /tmp/scorch-quickstart ) >>"$log" 2>&1
echo "exit: $?" >>"$log"
cp /tmp/scorch-quickstart/samples.png "$out/quickstart_samples.png" 2>/dev/null
fi

{
  echo "# scorch vs PyTorch — commit $commit, $(date -u +%Y-%m-%d), $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)"
  python3 "$here/gpu_table.py" "$out/scorch_bench.txt" "$out/torch_bench.txt"
} >"$out/table.md" 2>>"$log"
cat "$out/table.md" >>"$log"
tail -3 "$out/parity.txt"
cat "$out/table.md"
