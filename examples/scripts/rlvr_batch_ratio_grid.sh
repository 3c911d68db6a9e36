#!/usr/bin/env bash
# Paper Figures 4-8 (RLVR, the grid the paper trained with verl): Qwen2.5-3B (base) x GRPO (ppo) /
# CFPO x iterations 1, 2, 4, 8 x batch ratio 1, 2, 4, 8: 32 train_rlvr_math_qwen2.5.sh runs, one
# after another. verl's batch ratio is its batch over its mini-batch: each rollout (128 prompts x 3)
# is split into BATCH_RATIO optimizer steps, and the split is made MAX_EPOCHS (iterations) times.
# Every run is validated on MATH_EVAL (Figure 5's validation reward).
#
#   bash examples/scripts/rlvr_batch_ratio_grid.sh [OpenRLHF flags added to every run]
#
# Environment: MODEL [Qwen/Qwen2.5-3B]; MATH_EVAL [HuggingFaceH4/MATH-500; empty = no validation];
# runs go to OUTPUT_ROOT/rlvr_batch_ratio_grid/<run name>/ [OUTPUT_ROOT ./runs]; the rest as in
# train_rlvr_math_qwen2.5.sh. Finished runs are skipped, so rerunning resumes the grid.
# Before any run starts, the layout of every run is checked at once (NUM_NODES x GPUS_PER_NODE against
# each run's batch; examples/grid.sh): a grid with runs that cannot work stops, listing them, unless
# SKIP_INVALID=1, which runs the others and prints one line per skipped run.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export MODEL="${MODEL:-Qwen/Qwen2.5-3B}"
export MATH_EVAL="${MATH_EVAL-HuggingFaceH4/MATH-500}"
export OUTPUT_ROOT="${OUTPUT_ROOT:-./runs}/rlvr_batch_ratio_grid"
unset RUN_NAME  # each run names itself
source "${HERE}/../grid.sh"
GRID_CHECK=("${PYTHON:-python3}" -m openrlhf_cfpo.cli train --check-layouts)

grid_runs() {
   for policy_loss in ppo cfpo; do
      for iterations in 1 2 4 8; do
         for batch_ratio in 1 2 4 8; do
            POLICY_LOSS="${policy_loss}" MAX_EPOCHS="${iterations}" BATCH_RATIO="${batch_ratio}" \
               grid_run bash "${HERE}/train_rlvr_math_qwen2.5.sh" "$@"
         done
      done
   done
}
grid_main "$@"
