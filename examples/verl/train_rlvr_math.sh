#!/usr/bin/env bash
# Paper Figures 4-8, one run in verl 0.9.1: cold-start RLVR of a Qwen2.5 base model on the MATH train
# split with GRPO advantages and the PPO-clip surrogate (POLICY_LOSS=vanilla, "GRPO") or CFPO
# (POLICY_LOSS=cfpo, registered in every verl process by openrlhf-cfpo's verl.plugins entry point),
# rewarded by openrlhf_cfpo.rewards.math_reward.compute_score, validated on MATH-500 (Figure 5).
# batch_ratio_grid.sh runs the paper's 32 cells through this script.
#
#   POLICY_LOSS=cfpo ITERATIONS=4 BATCH_RATIO=2 bash examples/verl/train_rlvr_math.sh [Hydra overrides]
#
# Update schedule: each step samples 128 prompts x 3 completions (data.train_batch_size, rollout.n);
# the actor then makes ITERATIONS passes over them (actor.ppo_epochs), each pass BATCH_RATIO optimizer
# steps on 128/BATCH_RATIO prompts' samples (actor.ppo_mini_batch_size). The loss is reduced as eq. (8):
# each response's token mean, then the mean over the responses (actor.loss_agg_mode=seq-mean-token-mean).
# Environment (defaults in brackets):
#   MODEL          [Qwen/Qwen2.5-3B]
#   MODEL_SIZE     1.5B | 3B | 7B: picks Table 3's lr and the B.1 system prompt [the size in MODEL's name]
#   POLICY_LOSS    vanilla | cfpo                                         [cfpo]
#   ITERATIONS     passes over each rollout (actor.ppo_epochs)             [1]
#   BATCH_RATIO    data.train_batch_size / actor.ppo_mini_batch_size, a divisor of 128  [1]
#   TRAIN_FILE     verl parquet of MATH train (prepare_math_parquet.py)    [DATA_DIR/math_train_<prompt>.parquet]
#   VAL_FILE       verl parquet of MATH-500; empty = no validation          [DATA_DIR/math500_<prompt>.parquet]
#   MATH_TRAIN / MATH_EVAL  sources the two files are prepared from when missing
#                  [DigitalLearningGmbH/MATH-lighteval / HuggingFaceH4/MATH-500]
#   SYSTEM_PROMPT  [the paper's B.1 prompt for MODEL's size]   DATA_DIR [./data/verl]
#   NUM_NODES [1]  GPUS_PER_NODE [8]  OUTPUT_ROOT [./runs]  PYTHON [python3]
#   RUN_NAME       [verl_math_<model>_<POLICY_LOSS>_it<ITERATIONS>_br<BATCH_RATIO>] = trainer.experiment_name
#   LAUNCHER       the command that receives the overrides, split on spaces [PYTHON -m verl.trainer.main_ppo]
# Output: OUTPUT_ROOT/RUN_NAME/{checkpoints (a rerun resumes from the last), tensorboard/RUN_NAME (with
# verl_overrides.json, this run's settings for `openrlhf-cfpo report`), finished}.
# A run with OUTPUT_ROOT/RUN_NAME/finished (written when the launcher succeeds) is skipped.
# Extra arguments are Hydra overrides appended after these; for a key given twice the later wins.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

MODEL="${MODEL:-Qwen/Qwen2.5-3B}"
POLICY_LOSS="${POLICY_LOSS:-cfpo}"
ITERATIONS="${ITERATIONS:-1}"
BATCH_RATIO="${BATCH_RATIO:-1}"
DATA_DIR="${DATA_DIR:-./data/verl}"
NUM_NODES="${NUM_NODES:-1}"
GPUS_PER_NODE="${GPUS_PER_NODE:-8}"
PYTHON="${PYTHON:-python3}"

PROMPTS_PER_STEP=128
GROUP_SIZE=3
if [[ ! "${BATCH_RATIO}" =~ ^[1-9][0-9]*$ ]] || ((PROMPTS_PER_STEP % BATCH_RATIO)); then
   echo "$(basename "$0"): BATCH_RATIO=${BATCH_RATIO} must divide the ${PROMPTS_PER_STEP} prompts of a step;" \
      "use 1, 2, 4 or 8 (the paper's) or another divisor of ${PROMPTS_PER_STEP}" >&2
   exit 2
fi

RUN_NAME="${RUN_NAME:-verl_math_${MODEL##*/}_${POLICY_LOSS}_it${ITERATIONS}_br${BATCH_RATIO}}"
# Absolute: on an existing Ray cluster or under `ray job submit`, verl's workers run in another directory.
RUN_DIR="$(realpath -m "${OUTPUT_ROOT:-./runs}/${RUN_NAME}")"
if [[ -f "${RUN_DIR}/finished" ]]; then
   echo "$(basename "$0"): ${RUN_DIR} is finished; skipping ${RUN_NAME} (remove ${RUN_DIR} to train it again)" >&2
   exit 0
fi
# The run's layout: its GPUs and how its batches split over them. LAYOUT_ONLY=1 (the grid's check of
# all its runs, examples/grid.sh) writes the run's name and these overrides, each ending in a NUL byte,
# and exits: nothing is prepared or launched.
LAYOUT=(
   trainer.nnodes="${NUM_NODES}"
   trainer.n_gpus_per_node="${GPUS_PER_NODE}"
   data.train_batch_size="${PROMPTS_PER_STEP}"
   actor_rollout_ref.rollout.n="${GROUP_SIZE}"
   actor_rollout_ref.actor.ppo_mini_batch_size="$((PROMPTS_PER_STEP / BATCH_RATIO))"
   actor_rollout_ref.actor.use_dynamic_bsz=true
)
if [[ "${LAYOUT_ONLY:-0}" == 1 ]]; then
   printf '%s\0' "${RUN_NAME}" "${LAYOUT[@]}" "$@"
   exit 0
fi
read -r -a LAUNCH <<< "${LAUNCHER:-${PYTHON} -m verl.trainer.main_ppo}"
SYSTEM_PROMPT="${SYSTEM_PROMPT:-$("${PYTHON}" -m openrlhf_cfpo.prompts "${MODEL}" ${MODEL_SIZE:+"${MODEL_SIZE}"})}"
LR="$("${PYTHON}" -m openrlhf_cfpo.learning_rate "${MODEL}" ${MODEL_SIZE:+"${MODEL_SIZE}"})"  # Table 3

# parquet_file NAME SOURCE SPLIT: the verl parquet of SOURCE, prepared once per (source, split, prompt)
# unless DRY_RUN=1 (the dry run only composes the configuration).
parquet_file() {
   local file
   file="${DATA_DIR}/$1_$(printf '%s\n%s\n%s' "$2" "$3" "${SYSTEM_PROMPT}" | sha1sum | cut -c1-12).parquet"
   if [[ ! -f "${file}" && "${DRY_RUN:-0}" != 1 ]]; then
      "${PYTHON}" "${HERE}/prepare_math_parquet.py" --source "$2" --split "$3" \
         --system-prompt "${SYSTEM_PROMPT}" --output "${file}" || return
   fi
   echo "${file}"
}
# The event files go to tensorboard/RUN_NAME (as in the OpenRLHF recipes), the report's run label.
TENSORBOARD_DIR="${RUN_DIR}/tensorboard/${RUN_NAME}"
TRAIN_FILE="${TRAIN_FILE:-$(parquet_file math_train "${MATH_TRAIN:-DigitalLearningGmbH/MATH-lighteval}" train)}"
VAL_FILE="${VAL_FILE-$(parquet_file math500 "${MATH_EVAL:-HuggingFaceH4/MATH-500}" test)}"

OVERRIDES=(
   "${LAYOUT[@]}"
   algorithm.adv_estimator=grpo
   algorithm.use_kl_in_reward=false
   data.train_files="${TRAIN_FILE}"
   data.val_files="${VAL_FILE:-${TRAIN_FILE}}"
   data.prompt_key=prompt
   data.max_prompt_length=512
   data.max_response_length=3072
   data.filter_overlong_prompts=true
   data.truncation=error
   actor_rollout_ref.model.path="${MODEL}"
   actor_rollout_ref.model.use_remove_padding=true
   actor_rollout_ref.model.enable_gradient_checkpointing=true
   actor_rollout_ref.actor.policy_loss.loss_mode="${POLICY_LOSS}"
   actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-mean
   actor_rollout_ref.actor.clip_ratio_low=0.2
   actor_rollout_ref.actor.clip_ratio_high=0.2
   actor_rollout_ref.actor.ppo_epochs="${ITERATIONS}"
   actor_rollout_ref.actor.ppo_max_token_len_per_gpu=16384
   actor_rollout_ref.actor.use_kl_loss=false
   actor_rollout_ref.actor.kl_loss_coef=0
   actor_rollout_ref.actor.entropy_coeff=0
   actor_rollout_ref.actor.optim.lr="${LR}"
   actor_rollout_ref.actor.optim.weight_decay=0.0
   actor_rollout_ref.actor.optim.betas=[0.9,0.999]
   actor_rollout_ref.actor.optim.lr_scheduler_type=cosine
   actor_rollout_ref.actor.optim.lr_warmup_steps_ratio=0.1
   actor_rollout_ref.rollout.name=vllm
   actor_rollout_ref.rollout.temperature=0.9
   actor_rollout_ref.rollout.tensor_model_parallel_size=1
   actor_rollout_ref.rollout.gpu_memory_utilization=0.6
   actor_rollout_ref.rollout.log_prob_use_dynamic_bsz=true
   actor_rollout_ref.ref.log_prob_use_dynamic_bsz=true
   reward.custom_reward_function.path=pkg://openrlhf_cfpo.rewards.math_reward
   reward.custom_reward_function.name=compute_score
   trainer.project_name=cfpo_verl_batch_ratio
   trainer.experiment_name="${RUN_NAME}"
   trainer.logger=[console,tensorboard]
   trainer.default_local_dir="${RUN_DIR}/checkpoints"
   trainer.resume_mode=auto
   trainer.total_epochs=3
   trainer.save_freq=20
   trainer.val_before_train="$([[ -n "${VAL_FILE}" ]] && echo true || echo false)"
   trainer.test_freq="$([[ -n "${VAL_FILE}" ]] && echo 10 || echo -1)"
   # verl's logger runs in its TaskRunner (a Ray actor), which gets only verl's own env list and this
   # runtime env, not the launching shell's environment.
   +ray_kwargs.ray_init.runtime_env.env_vars.TENSORBOARD_DIR="${TENSORBOARD_DIR}"
)

if [[ "${DRY_RUN:-0}" == 1 ]]; then
   exec "${LAUNCH[@]}" "${OVERRIDES[@]}" "$@"
fi
# The run's settings for `openrlhf-cfpo report` (verl saves none beside its logs).
mkdir -p "${TENSORBOARD_DIR}"
"${PYTHON}" -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "${OVERRIDES[@]}" "$@" \
   > "${TENSORBOARD_DIR}/verl_overrides.json"
"${LAUNCH[@]}" "${OVERRIDES[@]}" "$@"
touch "${RUN_DIR}/finished"
