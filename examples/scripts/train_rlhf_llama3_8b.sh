#!/usr/bin/env bash
# Paper Table 4 (RLHF), one run: RLOO advantages with the PPO-clip surrogate ("RLOO") or with CFPO,
# Llama-3-8B-SFT-Mixture policy, Llama-3-8B-RM-700K reward model, prompt-collection-v0.1, ZeRO-3,
# OpenRLHF 0.11.2's hybrid engine on one 8-GPU node or NUM_NODES of them (a Ray cluster:
# docs/cluster.md). table4_rlhf.sh runs the paper's four runs.
#
#   POLICY_LOSS=cfpo KL_COEF=0 bash examples/scripts/train_rlhf_llama3_8b.sh [more OpenRLHF flags]
#
# Models and prompts: pass local paths with --actor.model_name_or_path, --reward.model_name_or_path and
# --data.prompt_dataset (extra arguments win) on compute nodes without internet.
# Environment (defaults in brackets):
#   POLICY_LOSS    ppo (= the paper's RLOO baseline) | cfpo                                 [cfpo]
#   KL_COEF        KL penalty β to the reference model: 1e-4 | 0 (0 = no reference model)  [1e-4]
#   NUM_NODES      nodes of the Ray cluster; actor, reference and reward model (colocated) span
#                  NUM_NODES x GPUS_PER_NODE GPUs, one vLLM engine per 2 of them; batches unchanged   [1]
#   GPUS_PER_NODE  GPUs of each node                                                       [8]
#   OUTPUT_ROOT    runs go to OUTPUT_ROOT/RUN_NAME/{tensorboard,ckpt,model}                [./runs]
#   RUN_NAME       [rlhf_llama3_8b_<POLICY_LOSS>_kl<KL_COEF>]; also the wandb run name, hence the
#                  tensorboard folder OUTPUT_ROOT/RUN_NAME/tensorboard/RUN_NAME
#   WANDB_API_KEY  set: log to wandb too (--logger.wandb.key env:WANDB_API_KEY: the flag names the
#                  variable, the key stays in the environment; docs/recipes.md)                 [unset]
#   LAUNCHER       the command that receives the flags, split on spaces  [openrlhf-cfpo train]
#                  e.g. "openrlhf-cfpo train --dry-run" (check only) or a `ray job submit` line
#                  ending in "-- python -m openrlhf_cfpo.cli.train_ppo_ray" (docs/recipes.md).
# A finished run (OUTPUT_ROOT/RUN_NAME/model/tokenizer_config.json, saved after the weights) is skipped.
# Extra arguments are appended after these flags; for a flag given twice the later value wins.
set -euo pipefail

POLICY_LOSS="${POLICY_LOSS:-cfpo}"
KL_COEF="${KL_COEF:-1e-4}"
NUM_NODES="${NUM_NODES:-1}"
GPUS_PER_NODE="${GPUS_PER_NODE:-8}"
VLLM_TP=2
RUN_NAME="${RUN_NAME:-rlhf_llama3_8b_${POLICY_LOSS}_kl${KL_COEF}}"
RUN_DIR="${OUTPUT_ROOT:-./runs}/${RUN_NAME}"
if [[ -f "${RUN_DIR}/model/tokenizer_config.json" ]]; then
   echo "$(basename "$0"): ${RUN_DIR} has a trained model; skipping ${RUN_NAME}" \
      "(remove ${RUN_DIR} to train it again)" >&2
   exit 0
fi
# The run's layout: where OpenRLHF places its models and how its batches split. LAYOUT_ONLY=1 (the
# grids' check of all their runs, examples/grid.sh) writes the run's name and these flags, each ending
# in a NUL byte, and exits: nothing is launched.
LAYOUT=(
   --actor.num_nodes "${NUM_NODES}"
   --actor.num_gpus_per_node "${GPUS_PER_NODE}"
   --ref.num_nodes "${NUM_NODES}"
   --ref.num_gpus_per_node "${GPUS_PER_NODE}"
   --reward.num_nodes "${NUM_NODES}"
   --reward.num_gpus_per_node "${GPUS_PER_NODE}"
   --vllm.num_engines "$((NUM_NODES * GPUS_PER_NODE / VLLM_TP))"
   --vllm.tensor_parallel_size "${VLLM_TP}"
   --train.colocate_all
   --reward.model_name_or_path OpenRLHF/Llama-3-8b-rm-700k
   --rollout.batch_size 512
   --rollout.n_samples_per_prompt 2
   --train.batch_size 64
   --algo.kl.init_coef "${KL_COEF}"
)
if [[ "${LAYOUT_ONLY:-0}" == 1 ]]; then
   printf '%s\0' "${RUN_NAME}" "${LAYOUT[@]}" "$@"
   exit 0
fi
read -r -a LAUNCH <<< "${LAUNCHER:-openrlhf-cfpo train}"

ARGS=(
   "${LAYOUT[@]}"
   --vllm.gpu_memory_utilization 0.5
   --vllm.sync_backend nccl
   --vllm.enforce_eager
   --vllm.enable_sleep
   --ds.enable_sleep
   --actor.model_name_or_path OpenRLHF/Llama-3-8b-sft-mixture
   --reward.normalize_enable
   --data.prompt_dataset OpenRLHF/prompt-collection-v0.1
   --data.input_key context_messages
   --data.apply_chat_template
   --data.max_len 2048
   --rollout.max_new_tokens 1024
   --train.max_epochs 1
   --train.dynamic_batch_enable
   --train.max_tokens_per_gpu 16384
   --algo.advantage.estimator rloo
   --actor.policy_loss_type "${POLICY_LOSS}"
   --actor.eps_clip 0.2
   --actor.entropy_coef 0
   --actor.adam.lr 5e-7
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
if [[ -n "${WANDB_API_KEY:-}" ]]; then
   ARGS+=(--logger.wandb.key env:WANDB_API_KEY)
fi

set -x
"${LAUNCH[@]}" "${ARGS[@]}" "$@"
