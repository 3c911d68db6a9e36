#!/usr/bin/env bash
# Paper Table 3 (RLVR), one run: GRPO-style group-normalised advantages with the PPO-clip surrogate
# ("GRPO") or with CFPO, a Qwen2.5 model on the MATH train split, rewarded by
# openrlhf_cfpo/rewards/math_reward.py (math-verify), OpenRLHF 0.11.2's hybrid engine on one node.
# table3_rlvr_math.sh, sweep_rlvr_sample_reuse.sh and sweep_rlvr_batch_ratio.sh call this script.
#
#   MODEL=Qwen/Qwen2.5-7B POLICY_LOSS=ppo bash examples/scripts/train_rlvr_math_qwen2.5.sh [more flags]
#
# Batch: 128 prompts x 3 completions (group 3) per optimizer step, so --train.batch_size (counted in
# samples) is 384; a rollout samples BATCH_RATIO x 128 prompts (--rollout.batch_size counts prompts).
# Environment (defaults in brackets):
#   MODEL          Qwen/Qwen2.5-{1.5B,3B,7B}[-Instruct]; lr 1e-6 for 7B, else 3e-6  [Qwen/Qwen2.5-1.5B-Instruct]
#   POLICY_LOSS    ppo | cfpo                                                 [cfpo]
#   MAX_EPOCHS     sample reuse: optimizer passes over each rollout batch    [1]
#   BATCH_RATIO    rollout batch / train batch                               [1]
#   MATH_TRAIN     Hugging Face dataset id or local file of MATH train        [DigitalLearningGmbH/MATH-lighteval]
#   SYSTEM_PROMPT  system message before every problem       [the paper's B.1 prompt for MODEL's size]
#   DATA_DIR       where the chat-formatted MATH train file is written once  [./data]
#   GPUS_PER_NODE  [8]   OUTPUT_ROOT [./runs]   PYTHON [python3]
#   RUN_NAME       [rlvr_math_<model>_<POLICY_LOSS>_ep<MAX_EPOCHS>_ratio<BATCH_RATIO>]
#   LAUNCHER       the command that receives the flags, split on spaces  [openrlhf-cfpo train]
# Extra arguments are appended after these flags; for a flag given twice the later value wins.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

MODEL="${MODEL:-Qwen/Qwen2.5-1.5B-Instruct}"
POLICY_LOSS="${POLICY_LOSS:-cfpo}"
MAX_EPOCHS="${MAX_EPOCHS:-1}"
BATCH_RATIO="${BATCH_RATIO:-1}"
MATH_TRAIN="${MATH_TRAIN:-DigitalLearningGmbH/MATH-lighteval}"
DATA_DIR="${DATA_DIR:-./data}"
GPUS_PER_NODE="${GPUS_PER_NODE:-8}"
PYTHON="${PYTHON:-python3}"
# The paper's per-size system prompt (appendix B.1), the one `openrlhf-cfpo eval` prompts with too.
SYSTEM_PROMPT="${SYSTEM_PROMPT:-$("${PYTHON}" -m openrlhf_cfpo.prompts "${MODEL}")}"
RUN_NAME="${RUN_NAME:-rlvr_math_${MODEL##*/}_${POLICY_LOSS}_ep${MAX_EPOCHS}_ratio${BATCH_RATIO}}"
RUN_DIR="${OUTPUT_ROOT:-./runs}/${RUN_NAME}"
read -r -a LAUNCH <<< "${LAUNCHER:-openrlhf-cfpo train}"

PROMPTS_PER_STEP=128
GROUP_SIZE=3
case "${MODEL}" in
   *7B*) LR=1e-6 ;;
   *) LR=3e-6 ;;
esac

# The chat-formatted prompts, written once per (source, system prompt).
PROMPT_FILE="${DATA_DIR}/math_train_$(printf '%s\n%s' "${MATH_TRAIN}" "${SYSTEM_PROMPT}" | sha1sum | cut -c1-12).jsonl"
if [[ ! -f "${PROMPT_FILE}" ]]; then
   "${PYTHON}" "${HERE}/prepare_math_train.py" --source "${MATH_TRAIN}" --system-prompt "${SYSTEM_PROMPT}" \
      --output "${PROMPT_FILE}"
fi
# OpenRLHF loads the reward function from this path on every vLLM engine's node.
REWARD_FILE="$("${PYTHON}" -c 'import importlib.util as u; print(u.find_spec("openrlhf_cfpo.rewards.math_reward").origin)')"

ARGS=(
   --actor.num_nodes 1
   --actor.num_gpus_per_node "${GPUS_PER_NODE}"
   --vllm.num_engines "${GPUS_PER_NODE}"
   --vllm.tensor_parallel_size 1
   --vllm.gpu_memory_utilization 0.6
   --vllm.sync_backend nccl
   --vllm.enable_sleep
   --ds.enable_sleep
   --train.colocate_all
   --actor.model_name_or_path "${MODEL}"
   --reward.remote_url "${REWARD_FILE}"
   --data.prompt_dataset "${PROMPT_FILE}"
   --data.input_key prompt
   --data.label_key solution
   --data.apply_chat_template
   --data.max_len "$((512 + 3072))"
   --rollout.max_new_tokens 3072
   --rollout.temperature 0.9
   --rollout.n_samples_per_prompt "${GROUP_SIZE}"
   --rollout.batch_size "$((PROMPTS_PER_STEP * BATCH_RATIO))"
   --train.batch_size "$((PROMPTS_PER_STEP * GROUP_SIZE))"
   --train.max_epochs "${MAX_EPOCHS}"
   --train.dynamic_batch_enable
   --train.max_tokens_per_gpu 16384
   --algo.advantage.estimator group_norm
   --algo.kl.init_coef 0
   --actor.policy_loss_type "${POLICY_LOSS}"
   --actor.eps_clip 0.2
   --actor.entropy_coef 0
   --actor.adam.lr "${LR}"
   --actor.lr_scheduler cosine
   --actor.lr_warmup_ratio 0.1
   --actor.gradient_checkpointing_enable
   --ds.zero_stage 3
   --ds.param_dtype bf16
   --ds.packing_samples
   --logger.tensorboard_dir "${RUN_DIR}/tensorboard"
   --ckpt.path "${RUN_DIR}/ckpt"
   --ckpt.output_dir "${RUN_DIR}/model"
   --ckpt.save_hf
)

set -x
"${LAUNCH[@]}" "${ARGS[@]}" "$@"
