#!/usr/bin/env bash
# Paper Tables 5-10 in TRL, one model: GRPO (--loss_type dapo) and CFPO x sample reuse 2, 4, 8, 16
# (--iterations, TRL's num_iterations), one run after another, each with the Table 3 recipe.
#
#   MODEL=Qwen/Qwen2.5-3B bash examples/trl/sweep_iterations.sh [more recipe / GRPOConfig flags]
#
# Environment (defaults in brackets):
#   MODEL       Qwen/Qwen2.5-{1.5B,3B,7B}[-Instruct]                        [Qwen/Qwen2.5-1.5B-Instruct]
#   ITERATIONS  sample-reuse values (1 = on-policy, where both coincide)     [2 4 8 16]
#   LOSS_TYPES  dapo = GRPO (PPO-clip), cfpo = CFPO                         [dapo cfpo]
#   LAUNCHER    the command that runs the recipe, split on spaces           [accelerate launch]
# Extra arguments go to every run; for a flag given twice the later value wins.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

MODEL="${MODEL:-Qwen/Qwen2.5-1.5B-Instruct}"
ITERATIONS="${ITERATIONS:-2 4 8 16}"
LOSS_TYPES="${LOSS_TYPES:-dapo cfpo}"
read -r -a LAUNCH <<< "${LAUNCHER:-accelerate launch}"

for LOSS_TYPE in ${LOSS_TYPES}; do
   for ITER in ${ITERATIONS}; do
      set -x
      "${LAUNCH[@]}" "${HERE}/train_grpo_cfpo.py" --model "${MODEL}" --loss_type "${LOSS_TYPE}" --iterations "${ITER}" "$@"
      { set +x; } 2>/dev/null
   done
done
