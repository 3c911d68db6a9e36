#!/usr/bin/env bash
# Paper Table 4: the four RLHF runs — RLOO, RLOO (KL=0), CFPO, CFPO (KL=0) — one after another,
# each a train_rlhf_llama3_8b.sh run (see its header for the environment it reads).
#
#   bash examples/scripts/table4_rlhf.sh [OpenRLHF flags added to every run]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
unset RUN_NAME  # each run names itself

for policy_loss in ppo cfpo; do
   for kl_coef in 1e-4 0; do
      POLICY_LOSS="${policy_loss}" KL_COEF="${kl_coef}" bash "${HERE}/train_rlhf_llama3_8b.sh" "$@"
   done
done
