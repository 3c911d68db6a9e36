#!/usr/bin/env bash
# Paper Table 4: the four RLHF runs — RLOO, RLOO (KL=0), CFPO, CFPO (KL=0) — one after another,
# each a train_rlhf_llama3_8b.sh run (see its header for the environment it reads).
#
#   bash examples/scripts/table4_rlhf.sh [OpenRLHF flags added to every run]
#
# Before any run starts, the layout of every run is checked at once (examples/grid.sh): runs that
# cannot work stop the script, listed, unless SKIP_INVALID=1, which runs the others and prints one
# line per skipped run. PYTHON [python3] runs the check (openrlhf-cfpo installed).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
unset RUN_NAME  # each run names itself
source "${HERE}/../grid.sh"
GRID_CHECK=("${PYTHON:-python3}" -m openrlhf_cfpo.cli train --check-layouts)

grid_runs() {
   for policy_loss in ppo cfpo; do
      for kl_coef in 1e-4 0; do
         POLICY_LOSS="${policy_loss}" KL_COEF="${kl_coef}" grid_run bash "${HERE}/train_rlhf_llama3_8b.sh" "$@"
      done
   done
}
grid_main "$@"
