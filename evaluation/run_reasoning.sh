#!/usr/bin/env bash
# Reasoning suite (paper section 4.1, Tables 5-10) of an RLVR checkpoint on a GPU node: MATH500,
# GSM8K, AIME24, GPQA-Diamond with the RLVR system prompt of the model's size (paper B.1; pass
# --model-size 1.5B|3B|7B when the checkpoint's path does not name it), temperature 0.6, top-p 0.95.
#
#   evaluation/run_reasoning.sh CHECKPOINT OUT_DIR [more `openrlhf-cfpo eval` flags]
#
# GPQA-Diamond is gated: accept its terms at https://huggingface.co/datasets/Idavidrein/gpqa and
# export HF_TOKEN (or put gpqa_diamond/gpqa_diamond.csv under --data-dir). Without it GPQA is
# reported as missing and the other three tasks still run.
set -euo pipefail
usage="usage: $0 CHECKPOINT OUT_DIR [flags]"
MODEL=${1:?$usage}
OUT=${2:?$usage}
shift 2

openrlhf-cfpo eval \
    --model "$MODEL" \
    --suite reasoning \
    --backend vllm \
    --out "$OUT" \
    "$@"
