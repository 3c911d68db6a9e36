#!/usr/bin/env bash
# Paper RLVR (Table 3 settings), one run: GRPO-style group-normalised advantages with the PPO-clip
# surrogate ("GRPO") or with CFPO, a Qwen2.5 model on the MATH train split, rewarded by
# openrlhf_cfpo/rewards/math_reward.py (math-verify), OpenRLHF 0.11.2's hybrid engine on one node
# or NUM_NODES of them (docs/cluster.md).
# rlvr_iterations_grid.sh (Tables 5-10) and rlvr_batch_ratio_grid.sh (Figures 4-8) call this script.
#
#   MODEL=Qwen/Qwen2.5-7B POLICY_LOSS=ppo MAX_EPOCHS=4 bash examples/scripts/train_rlvr_math_qwen2.5.sh [flags]
#
# Update schedule: each rollout samples 128 prompts x 3 completions (group 3); the policy then makes
# MAX_EPOCHS passes over it (the paper's iterations, TRL's num_iterations), each pass BATCH_RATIO
# optimizer steps on 384/BATCH_RATIO samples (verl's batch / mini-batch). With both at 1 every step
# is on-policy and GRPO and CFPO are the same update. The loss is reduced as eq. (8): each response's
# token mean, then the mean over the responses (--actor.loss_agg_mode seq-mean-token-mean).
# Environment (defaults in brackets):
#   MODEL          Qwen/Qwen2.5-{1.5B,3B,7B}[-Instruct]                        [Qwen/Qwen2.5-1.5B-Instruct]
#   MODEL_SIZE     1.5B | 3B | 7B: picks Table 3's lr and the B.1 system prompt [the size in MODEL's name]
#   POLICY_LOSS    ppo | cfpo                                                 [cfpo]
#   MAX_EPOCHS     iterations: optimizer passes over each rollout             [1]
#   BATCH_RATIO    optimizer steps per pass, a divisor of 384                 [1]
#   MATH_TRAIN     Hugging Face dataset id or local file of MATH train        [DigitalLearningGmbH/MATH-lighteval]
#   MATH_EVAL      validation problems (validation reward, Figure 5): HF id (split "test") or local
#                  file; empty = no validation                                [empty]
#   SYSTEM_PROMPT  system message before every problem       [the paper's B.1 prompt for MODEL's size]
#   DATA_DIR       where the chat-formatted prompt files are written once    [./data]
#   NUM_NODES      nodes of the Ray cluster: the actor spans NUM_NODES x GPUS_PER_NODE GPUs, one vLLM
#                  engine per GPU; batches unchanged                          [1]
#   GPUS_PER_NODE  [8]   OUTPUT_ROOT [./runs]   PYTHON [python3]
#   RUN_NAME       [rlvr_math_<model>_<POLICY_LOSS>_it<MAX_EPOCHS>_br<BATCH_RATIO>]; also the wandb run
#                  name, hence the tensorboard folder OUTPUT_ROOT/RUN_NAME/tensorboard/RUN_NAME
#   WANDB_API_KEY  set: log to wandb too (--logger.wandb.key env:WANDB_API_KEY: the flag names the
#                  variable, the key stays in the environment; docs/recipes.md)                 [unset]
#   LAUNCHER       the command that receives the flags, split on spaces  [openrlhf-cfpo train]
# A finished run (OUTPUT_ROOT/RUN_NAME/model/tokenizer_config.json, saved after the weights) is skipped.
# Extra arguments are appended after these flags; for a flag given twice the later value wins.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

MODEL="${MODEL:-Qwen/Qwen2.5-1.5B-Instruct}"
POLICY_LOSS="${POLICY_LOSS:-cfpo}"
MAX_EPOCHS="${MAX_EPOCHS:-1}"
BATCH_RATIO="${BATCH_RATIO:-1}"
MATH_TRAIN="${MATH_TRAIN:-DigitalLearningGmbH/MATH-lighteval}"
MATH_EVAL="${MATH_EVAL:-}"
DATA_DIR="${DATA_DIR:-./data}"
NUM_NODES="${NUM_NODES:-1}"
GPUS_PER_NODE="${GPUS_PER_NODE:-8}"
PYTHON="${PYTHON:-python3}"

PROMPTS_PER_ROLLOUT=128
GROUP_SIZE=3
SAMPLES_PER_ROLLOUT=$((PROMPTS_PER_ROLLOUT * GROUP_SIZE))
if [[ ! "${BATCH_RATIO}" =~ ^[1-9][0-9]*$ ]] || ((SAMPLES_PER_ROLLOUT % BATCH_RATIO)); then
   echo "$(basename "$0"): BATCH_RATIO=${BATCH_RATIO} must divide the ${SAMPLES_PER_ROLLOUT} samples of a rollout;" \
      "use 1, 2, 4 or 8 (the paper's) or another divisor of ${SAMPLES_PER_ROLLOUT}" >&2
   exit 2
fi

RUN_NAME="${RUN_NAME:-rlvr_math_${MODEL##*/}_${POLICY_LOSS}_it${MAX_EPOCHS}_br${BATCH_RATIO}}"
RUN_DIR="${OUTPUT_ROOT:-./runs}/${RUN_NAME}"
if [[ -f "${RUN_DIR}/model/tokenizer_config.json" ]]; then
   echo "$(basename "$0"): ${RUN_DIR} has a trained model; skipping ${RUN_NAME}" \
      "(remove ${RUN_DIR} to train it again)" >&2
   exit 0
fi
# The run's layout: where OpenRLHF places its models and how its batches split. LAYOUT_ONLY=1 (the
# grids' check of all their runs, examples/grid.sh) writes the run's name and these flags, each ending
# in a NUL byte, and exits: nothing is prepared or launched.
LAYOUT=(
   --actor.num_nodes "${NUM_NODES}"
   --actor.num_gpus_per_node "${GPUS_PER_NODE}"
   --vllm.num_engines "$((NUM_NODES * GPUS_PER_NODE))"
   --vllm.tensor_parallel_size 1
   --train.colocate_all
   --rollout.n_samples_per_prompt "${GROUP_SIZE}"
   --rollout.batch_size "${PROMPTS_PER_ROLLOUT}"
   --train.batch_size "$((SAMPLES_PER_ROLLOUT / BATCH_RATIO))"
   --algo.kl.init_coef 0
)
if [[ "${LAYOUT_ONLY:-0}" == 1 ]]; then
   printf '%s\0' "${RUN_NAME}" "${LAYOUT[@]}" "$@"
   exit 0
fi
read -r -a LAUNCH <<< "${LAUNCHER:-openrlhf-cfpo train}"
# The paper's per-size system prompt (appendix B.1), the one `openrlhf-cfpo eval` prompts with too,
# and Table 3's per-size learning rate.
SYSTEM_PROMPT="${SYSTEM_PROMPT:-$("${PYTHON}" -m openrlhf_cfpo.prompts "${MODEL}" ${MODEL_SIZE:+"${MODEL_SIZE}"})}"
LR="$("${PYTHON}" -m openrlhf_cfpo.learning_rate "${MODEL}" ${MODEL_SIZE:+"${MODEL_SIZE}"})"

# prompt_file SOURCE SPLIT: the chat-formatted problems of SOURCE, written once per (source, split, prompt).
prompt_file() {
   local file
   file="${DATA_DIR}/math_$2_$(printf '%s\n%s\n%s' "$1" "$2" "${SYSTEM_PROMPT}" | sha1sum | cut -c1-12).jsonl"
   if [[ ! -f "${file}" ]]; then
      "${PYTHON}" "${HERE}/prepare_math_prompts.py" --source "$1" --split "$2" \
         --system-prompt "${SYSTEM_PROMPT}" --output "${file}" || return
   fi
   echo "${file}"
}
TRAIN_FILE="$(prompt_file "${MATH_TRAIN}" train)"
# OpenRLHF loads the reward function from this path on every vLLM engine's node.
REWARD_FILE="$("${PYTHON}" -c 'import importlib.util as u; print(u.find_spec("openrlhf_cfpo.rewards.math_reward").origin)')"

ARGS=(
   "${LAYOUT[@]}"
   --vllm.gpu_memory_utilization 0.6
   --vllm.sync_backend nccl
   --vllm.enable_sleep
   --ds.enable_sleep
   --actor.model_name_or_path "${MODEL}"
   --reward.remote_url "${REWARD_FILE}"
   --data.prompt_dataset "${TRAIN_FILE}"
   --data.input_key prompt
   --data.label_key solution
   --data.apply_chat_template
   --data.max_len "$((512 + 3072))"
   --rollout.max_new_tokens 3072
   --rollout.temperature 0.9
   --train.max_epochs "${MAX_EPOCHS}"
   --train.num_episodes 3
   --train.dynamic_batch_enable
   --train.max_tokens_per_gpu 16384
   --algo.advantage.estimator group_norm
   --actor.policy_loss_type "${POLICY_LOSS}"
   --actor.loss_agg_mode seq-mean-token-mean
   --actor.eps_clip 0.2
   --actor.entropy_coef 0
   --actor.adam.lr "${LR}"
   --actor.adam.betas 0.9 0.999
   --actor.adam.eps 1e-8
   --actor.lr_scheduler cosine
   --actor.lr_warmup_ratio 0.1
   --actor.gradient_checkpointing_enable
   --ds.zero_stage 3
   --ds.param_dtype bf16
   --ds.packing_samples
   --logger.tensorboard_dir "${RUN_DIR}/tensorboard"
   --logger.wandb.run_name "${RUN_NAME}"
   --ckpt.path "${RUN_DIR}/ckpt"
   --ckpt.output_dir "${RUN_DIR}/model"
   --ckpt.save_hf
)
if [[ -n "${MATH_EVAL}" ]]; then
   # Validation as verl does it by default: one greedy answer per problem; every 10 rollouts.
   ARGS+=(
      --eval.dataset "$(prompt_file "${MATH_EVAL}" test)"
      --eval.steps 10
      --eval.temperature 0
      --eval.n_samples_per_prompt 1
      --ckpt.best_metric_key none
   )
fi
if [[ -n "${WANDB_API_KEY:-}" ]]; then
   ARGS+=(--logger.wandb.key env:WANDB_API_KEY)
fi

set -x
"${LAUNCH[@]}" "${ARGS[@]}" "$@"
