#!/usr/bin/env bash
# The GPU figures of the language model in one run of about 6 minutes on one H100/H200:
#   OPT-125M bf16 training tokens/s and MFU (autocast, autocast + torch.compile, DeepSpeed bf16
#   weights), and the paper's decoding (beam 5, penalty 3.0, 64 new tokens) on 4096 prompts.
# usage: bash benchmarks/gpu.sh [OUT_DIR]   (PYTHON=, PEAK_TFLOPS= dense bf16 peak, default 989)
# Where deepspeed is not installed, wheels in .whl/ are installed first: bash benchmarks/gpu_wheels.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-runs/gpu-bench}}
py=${PYTHON:-python3}
peak=${PEAK_TFLOPS:-989}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if ! "$py" -c "import deepspeed" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 2
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"

bench() {  # name, seconds, then the benchmark's arguments; the full log stays in $out/<name>.log
  local name=$1 limit=$2; shift 2
  echo "== $name: $*"
  timeout "$limit" "$py" "$@" >"$out/$name.log" 2>&1
  echo "   exit $?"
  grep -E "^(device|ours|plain|tokens_per_s|decod|seconds|prompts)" "$out/$name.log" | sed 's/^/   /'
}
bench train-autocast 150 benchmarks/lm_train.py --opt125m --peak-tflops "$peak"
bench train-compiled 200 benchmarks/lm_train.py --opt125m --compile --peak-tflops "$peak"
bench train-bf16 150 benchmarks/lm_train.py --opt125m --precision bf16 --peak-tflops "$peak"
bench decode 150 benchmarks/lm_generation.py --decode-only --opt125m --blocks 4096 --batch 512
