#!/usr/bin/env bash
# Capability suite (paper section 4.2, Table 2: the alignment tax) of a trained checkpoint on a GPU
# node: the six Open LLM Leaderboard v1 tasks through lm-eval-harness (vLLM backend), their average.
#
#   evaluation/run_capability.sh CHECKPOINT OUT_DIR [more `openrlhf-cfpo eval` flags]
#
# Data comes from the Hugging Face Hub through lm-eval (needs internet, or a filled HF cache);
# pass --data-dir DIR for local copies (a folder filled by `openrlhf-cfpo data fetch --to DIR`).
set -euo pipefail
usage="usage: $0 CHECKPOINT OUT_DIR [flags]"
MODEL=${1:?$usage}
OUT=${2:?$usage}
shift 2

openrlhf-cfpo eval \
    --model "$MODEL" \
    --suite capability \
    --backend vllm \
    --out "$OUT" \
    "$@"
