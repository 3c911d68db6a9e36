#!/usr/bin/env bash
# Paper Tables 5-10 in TRL, one model: GRPO (--loss_type grpo) and CFPO x sample reuse 2, 4, 8, 16
# (--iterations, TRL's num_iterations), one run after another, each with the Table 3 recipe.
#
#   MODEL=Qwen/Qwen2.5-3B bash examples/trl/sweep_iterations.sh [more recipe / GRPOConfig flags]
#
# Environment (defaults in brackets):
#   MODEL          Qwen/Qwen2.5-{1.5B,3B,7B}[-Instruct]                        [Qwen/Qwen2.5-1.5B-Instruct]
#   ITERATIONS     sample-reuse values (1 = on-policy, where both coincide)     [2 4 8 16]
#   LOSS_TYPES     grpo = GRPO (PPO-clip), cfpo = CFPO, both normalized as eq. (8) [grpo cfpo]
#   LAUNCHER       the command that runs the recipe, split on spaces           [accelerate launch]
#   NUM_PROCESSES  processes LAUNCHER starts (accelerate's --num_processes)      [1]
#   PYTHON         the Python with openrlhf-cfpo[trl] that checks the runs      [python3]
# Extra arguments go to every run; for a flag given twice the later value wins.
# Before any run starts, every run's settings go through the recipe's own checks at once, in one
# process (examples/grid.sh; the batch of 128 problems x 3 against NUM_PROCESSES x the per-device
# batch, the loss type, the sample reuse): runs that cannot work stop the sweep, listed, unless
# SKIP_INVALID=1, which runs the others and prints one line per skipped run.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

MODEL="${MODEL:-Qwen/Qwen2.5-1.5B-Instruct}"
ITERATIONS="${ITERATIONS:-2 4 8 16}"
LOSS_TYPES="${LOSS_TYPES:-grpo cfpo}"
read -r -a LAUNCH <<< "${LAUNCHER:-accelerate launch}"
source "${HERE}/../grid.sh"
GRID_CHECK=("${PYTHON:-python3}" "${HERE}/train_grpo_cfpo.py" --check_layouts "${NUM_PROCESSES:-1}")

# run_recipe RUN FLAGS...: with LAYOUT_ONLY=1 (the check) the run's name and flags, else the run.
run_recipe() {
   local run="$1"
   shift
   if [[ "${LAYOUT_ONLY:-0}" == 1 ]]; then
      printf '%s\0' "${run}" "$@"
      return
   fi
   set -x
   "${LAUNCH[@]}" "${HERE}/train_grpo_cfpo.py" "$@"
   { set +x; } 2>/dev/null
}

grid_runs() {
   for loss_type in ${LOSS_TYPES}; do
      for iterations in ${ITERATIONS}; do
         grid_run run_recipe "--loss_type ${loss_type} --iterations ${iterations}" \
            --model "${MODEL}" --loss_type "${loss_type}" --iterations "${iterations}" "$@"
      done
   done
}
grid_main "$@"
