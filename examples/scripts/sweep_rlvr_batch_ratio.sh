#!/usr/bin/env bash
# Batch-ratio sweep (paper, RLVR): rollout batch / train batch = 1, 2, 4, 8 (the train batch stays
# 128 prompts x 3 completions), for GRPO (ppo) and CFPO; each point a train_rlvr_math_qwen2.5.sh
# run on MODEL (default Qwen/Qwen2.5-1.5B-Instruct) with MAX_EPOCHS (default 1) held fixed.
#
#   MODEL=Qwen/Qwen2.5-3B bash examples/scripts/sweep_rlvr_batch_ratio.sh [OpenRLHF flags]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
unset RUN_NAME  # each run names itself

for policy_loss in ppo cfpo; do
   for batch_ratio in 1 2 4 8; do
      POLICY_LOSS="${policy_loss}" BATCH_RATIO="${batch_ratio}" bash "${HERE}/train_rlvr_math_qwen2.5.sh" "$@"
   done
done
