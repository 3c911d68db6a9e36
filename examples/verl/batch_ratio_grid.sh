#!/usr/bin/env bash
# Paper Figures 4-8 in verl 0.9.1: Qwen2.5-3B (base, cold start) x GRPO (vanilla) / CFPO x iterations
# 1, 2, 4, 8 x batch ratio 1, 2, 4, 8: 32 train_rlvr_math.sh runs, one after another.
#
#   bash examples/verl/batch_ratio_grid.sh [Hydra overrides added to every run]
#   DRY_RUN=1 bash examples/verl/batch_ratio_grid.sh      # validate all 32 runs; no GPU, nothing trained
#
# Environment: MODEL [Qwen/Qwen2.5-3B]; runs go to OUTPUT_ROOT/verl_batch_ratio_grid/<RUN_NAME><run>/
# [OUTPUT_ROOT ./runs; RUN_NAME: a prefix, empty by default]; LAUNCHER, PYTHON, NUM_NODES,
# GPUS_PER_NODE, DATA_DIR, TRAIN_FILE, VAL_FILE as in train_rlvr_math.sh. Finished runs are skipped,
# so rerunning resumes the grid. DRY_RUN=1 composes verl's own Hydra config with each run's overrides
# and builds its actor config as verl's driver does, in one process (dry_run.py): an unknown key, a
# loss verl does not know, an ε CFPO refuses or a batch ratio that does not divide fails first.
# Every grid, dry run or not, first checks the layout of all 32 runs at once (examples/grid.sh): verl's
# runtime rule that each mini-batch's samples (ppo_mini_batch_size x rollout.n) divide over the
# data-parallel size NUM_NODES x GPUS_PER_NODE. Runs that break it stop the grid, listed, before any
# starts, unless SKIP_INVALID=1, which runs the others and prints one line per skipped run.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export MODEL="${MODEL:-Qwen/Qwen2.5-3B}"
export OUTPUT_ROOT="${OUTPUT_ROOT:-./runs}/verl_batch_ratio_grid"
export PYTHON="${PYTHON:-python3}"
PREFIX="${RUN_NAME:-}"
unset RUN_NAME
source "${HERE}/../grid.sh"
GRID_CHECK=("${PYTHON}" -m openrlhf_cfpo.launch_layout verl)

if [[ "${DRY_RUN:-0}" == 1 ]]; then
   RECORD="${GRID_RECORDS}/dry_run.jsonl"
   : >"${RECORD}"
   export LAUNCHER="${PYTHON} ${HERE}/dry_run.py record ${RECORD}"
fi
grid_runs() {
   for policy_loss in vanilla cfpo; do
      for iterations in 1 2 4 8; do
         for batch_ratio in 1 2 4 8; do
            RUN_NAME="${PREFIX}verl_math_${MODEL##*/}_${policy_loss}_it${iterations}_br${batch_ratio}" \
               POLICY_LOSS="${policy_loss}" ITERATIONS="${iterations}" BATCH_RATIO="${batch_ratio}" \
               grid_run bash "${HERE}/train_rlvr_math.sh" "$@"
         done
      done
   done
}
grid_main "$@"
if [[ "${DRY_RUN:-0}" == 1 ]]; then
   "${PYTHON}" "${HERE}/dry_run.py" check "${RECORD}"
fi
