#!/usr/bin/env bash
# The GPU figures of the language model in one run of under 5 minutes on one H100/H200 (so that a
# rerun fits in 15 device minutes), each beside the torch and transformers versions that made it:
#   1. training at OPT-125M's shape, block 64, the paper's batch 128: tokens/s, MFU and the ratio to
#      a plain eager loop in the same process, per path of our engine (benchmarks/lm_train.py); the
#      `precision: bf16` paths also against a plain bf16 loop (bf16 weights, fp32 master copies)
#   2. the paper's decoding (beam 5, penalty 3.0, 64 new tokens): ours with fp32 and with bf16
#      weights, each with CUDA graphs of the decode step on and off, HF generate, the ratios and
#      the token agreement rates (graphs on with off, each with HF generate; benchmarks/lm_generation.py)
#   3. a chain of 2 generations at OPT-125M's shape (benchmarks/gpu-chain.yaml): seconds per phase
# The last line is `ours/plain-eager: X` (the fastest training path at the paper's batch).
# usage: bash benchmarks/gpu.sh [OUT_DIR]   (PYTHON=, PEAK_TFLOPS= dense bf16 peak, default 989;
#        PATHS= the training paths, default autocast,compiled,bf16; TINY=1: tiny shapes, a dry run
#        on a CPU)
# Where deepspeed is not installed, wheels in .whl/ are installed first: bash benchmarks/gpu_wheels.sh
# (run where a registry is reachable); without deepspeed and submitit it stops at once. The chain
# needs data/wikivital prepared. Both are git-ignored: carry .whl and data.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-runs/gpu-bench}}
py=${PYTHON:-python3}
peak=${PEAK_TFLOPS:-989}
paths=${PATHS:-autocast,compiled,bf16}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
if ! "$py" -c "import deepspeed" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 2
  export PYTHONPATH=$PYTHONPATH:/tmp/site
fi
"$py" -c "import sys, torch, transformers; print(f'python {sys.version.split()[0]}, torch {torch.__version__}, transformers {transformers.__version__}')" >"$out/versions.txt" \
  || { echo "gpu.sh: $py cannot import torch and transformers; give the interpreter that has them (PYTHON=.venv/bin/python)" >&2; exit 2; }
"$py" -c "import deepspeed, submitit" >"$out/imports.log" 2>&1 \
  || { echo "gpu.sh: $py cannot import deepspeed and submitit ($(tail -1 "$out/imports.log")); build .whl/ with bash benchmarks/gpu_wheels.sh where a registry is reachable, and carry it" >&2; exit 2; }
cat "$out/versions.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | tee "$out/gpu.txt"

if [ "${TINY:-0}" = 1 ]; then  # a dry run of every step with tiny shapes (CPU)
  train_args=(--tiny --blocks 256); decode_args=(--blocks 16 --batch 16 --hf-blocks 16)
  chain_sets=(--set lm.hidden_size=64 --set lm.layers=2 --set lm.heads=4 --set lm.ffn_size=256 --set lm.vocab_size=1000
              --set lm.max_train_blocks=128 --set lm.max_eval_blocks=64 --set lm.compile=false)
  limits=(1800 1800 1800)  # seconds: a shared CPU is slow
else
  train_args=(); decode_args=(--opt125m --blocks 2048 --batch 512 --hf-blocks 128); chain_sets=()
  limits=(170 90 200)  # seconds on one H200: 8 min at most, under 5 expected
fi

failed=0
bench() {  # name, seconds, then the command; the full log stays in $out/<name>.log
  local name=$1 limit=$2 started=$SECONDS rc; shift 2
  echo "== $name: $*"
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  rc=$?
  [ "$rc" -eq 0 ] || failed=$((failed + 1))
  echo "   exit $rc, $((SECONDS - started)) s"
}
bench train "${limits[0]}" "$py" benchmarks/lm_train.py --opt125m --paths "$paths" --peak-tflops "$peak" "${train_args[@]}"
grep -E "^(device|plain|ours|fastest)" "$out/train.log" | sed 's/^/   /'
bench decode "${limits[1]}" "$py" benchmarks/lm_generation.py --decode-only "${decode_args[@]}"
grep -E "^(decoding|ours|HF|token|decode )" "$out/decode.log" | sed 's/^/   /'
rm -rf "$out/chain"
bench chain "${limits[2]}" "$py" -m collapse_hpc run benchmarks/gpu-chain.yaml --run "$out/chain" --only lm "${chain_sets[@]}"
grep -rh "start-up:" "$out/chain.log" "$out/chain/logs" 2>/dev/null | sed 's/^.*\(gen [0-9]*: start-up\)/   \1/' | sort -u
"$py" - "$out/chain" <<'PY'
import json, sys
from pathlib import Path
for m in sorted(Path(sys.argv[1]).glob("lm/*/gen_*/manifest.json")):
    facts = json.loads(m.read_text())
    phases = {**facts.get("startup_seconds", {}), **facts.get("phase_seconds", {})}
    order = ("imports", "process_group", "tokenizer", "model_load", "deepspeed_import", "deepspeed_init", "first_step",
             "train", "sample", "evaluate")
    shown = ", ".join(f"{k} {phases[k]:.1f} s" for k in sorted(phases, key=lambda k: (k not in order, order.index(k)
                                                                                     if k in order else 0, k)))
    print(f"   {m.parent.name}: {shown}; whole job {facts['seconds']:.1f} s")
PY
grep -h "^ours/plain-eager:" "$out/train.log" || echo "ours/plain-eager: n/a (see $out/train.log)"
[ "$failed" -eq 0 ]  # a step that failed fails the script, after its last line
