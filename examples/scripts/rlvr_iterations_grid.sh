#!/usr/bin/env bash
# Paper Tables 5-10 (RLVR, the grid the paper trained with TRL): Qwen2.5-{1.5B,3B,7B}-Instruct
# (Tables 5-7) and Qwen2.5-{1.5B,3B,7B} (Tables 8-10) x GRPO (ppo) / CFPO x iterations 2, 4, 8, 16:
# 48 train_rlvr_math_qwen2.5.sh runs, one after another. TRL reuses each rollout num_iterations
# times without mini-batches; here that is MAX_EPOCHS (--train.max_epochs) = iterations with the
# train batch equal to the rollout batch (BATCH_RATIO 1). The tables' untrained row is the model
# itself (evaluation only).
#
#   bash examples/scripts/rlvr_iterations_grid.sh [OpenRLHF flags added to every run]
#   MODELS=Qwen/Qwen2.5-3B bash examples/scripts/rlvr_iterations_grid.sh      # Table 9 only
#
# Environment: MODELS (space-separated) [the six models]; runs go to
# OUTPUT_ROOT/rlvr_iterations_grid/<run name>/ [OUTPUT_ROOT ./runs]; the rest as in
# train_rlvr_math_qwen2.5.sh. Finished runs are skipped, so rerunning resumes the grid.
# Before any run starts, the layout of every run is checked at once (examples/grid.sh): a grid with
# runs that cannot work stops, listing them, unless SKIP_INVALID=1, which runs the others and prints
# one line per skipped run.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODELS="${MODELS:-Qwen/Qwen2.5-1.5B-Instruct Qwen/Qwen2.5-3B-Instruct Qwen/Qwen2.5-7B-Instruct \
Qwen/Qwen2.5-1.5B Qwen/Qwen2.5-3B Qwen/Qwen2.5-7B}"
export OUTPUT_ROOT="${OUTPUT_ROOT:-./runs}/rlvr_iterations_grid"
unset RUN_NAME  # each run names itself
source "${HERE}/../grid.sh"
GRID_CHECK=("${PYTHON:-python3}" -m openrlhf_cfpo.cli train --check-layouts)

grid_runs() {
   for model in ${MODELS}; do
      for policy_loss in ppo cfpo; do
         for iterations in 2 4 8 16; do
            MODEL="${model}" POLICY_LOSS="${policy_loss}" MAX_EPOCHS="${iterations}" BATCH_RATIO=1 \
               grid_run bash "${HERE}/train_rlvr_math_qwen2.5.sh" "$@"
         done
      done
   done
}
grid_main "$@"
