#!/usr/bin/env bash
# Alignment suite (paper section 4.2, Table 1) of a trained checkpoint on a GPU node:
# AlpacaEval 2.0, Arena-Hard v0.1 and MT-Bench (judged through an OpenAI-compatible endpoint) + IFEval.
#
#   evaluation/run_alignment.sh CHECKPOINT OUT_DIR [more `openrlhf-cfpo eval` flags]
#
# Judge: the key comes from OPENAI_API_KEY; JUDGE_MODEL / JUDGE_BASE_URL override the paper's judges
# (GPT-4.1 for AlpacaEval and Arena-Hard, GPT-4 for MT-Bench; see evaluation/judges/); JUDGE_MODEL
# is one name for all or per benchmark, e.g. mt_bench=gpt-4,alpaca_eval=gpt-4.1.
# Compare with the SFT model by running this script on it too, into another OUT_DIR.
set -euo pipefail
usage="usage: $0 CHECKPOINT OUT_DIR [flags]"
MODEL=${1:?$usage}
OUT=${2:?$usage}
shift 2
judge=()
if [[ -n "${JUDGE_MODEL:-}" ]]; then judge+=(--judge-model "$JUDGE_MODEL"); fi
if [[ -n "${JUDGE_BASE_URL:-}" ]]; then judge+=(--judge-base-url "$JUDGE_BASE_URL"); fi

openrlhf-cfpo eval \
    --model "$MODEL" \
    --suite alignment \
    --backend vllm \
    --concurrency "${JUDGE_CONCURRENCY:-16}" \
    --out "$OUT" \
    "${judge[@]}" \
    "$@"
