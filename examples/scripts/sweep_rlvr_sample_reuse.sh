#!/usr/bin/env bash
# Sample-reuse sweep (paper, RLVR): --train.max_epochs 1, 2, 4, 8, 16 optimizer passes over each
# rollout batch, for GRPO (ppo) and CFPO; each point a train_rlvr_math_qwen2.5.sh run on MODEL
# (default Qwen/Qwen2.5-1.5B-Instruct) with BATCH_RATIO (default 1) held fixed.
#
#   MODEL=Qwen/Qwen2.5-3B bash examples/scripts/sweep_rlvr_sample_reuse.sh [OpenRLHF flags]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
unset RUN_NAME  # each run names itself

for policy_loss in ppo cfpo; do
   for max_epochs in 1 2 4 8 16; do
      POLICY_LOSS="${policy_loss}" MAX_EPOCHS="${max_epochs}" bash "${HERE}/train_rlvr_math_qwen2.5.sh" "$@"
   done
done
