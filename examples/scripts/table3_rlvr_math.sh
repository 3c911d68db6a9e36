#!/usr/bin/env bash
# Paper Table 3: GRPO (ppo) and CFPO on MATH train for Qwen2.5-{1.5B,3B,7B} and their -Instruct
# models, one after another, each a train_rlvr_math_qwen2.5.sh run (its header lists the
# environment it reads; MAX_EPOCHS and BATCH_RATIO set the update schedule of all twelve runs).
#
#   bash examples/scripts/table3_rlvr_math.sh [OpenRLHF flags added to every run]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
unset RUN_NAME  # each run names itself

for model in Qwen/Qwen2.5-1.5B Qwen/Qwen2.5-1.5B-Instruct Qwen/Qwen2.5-3B Qwen/Qwen2.5-3B-Instruct \
   Qwen/Qwen2.5-7B Qwen/Qwen2.5-7B-Instruct; do
   for policy_loss in ppo cfpo; do
      MODEL="${model}" POLICY_LOSS="${policy_loss}" bash "${HERE}/train_rlvr_math_qwen2.5.sh" "$@"
   done
done
