# Sourced by every grid script (examples/scripts/{rlvr_batch_ratio_grid,rlvr_iterations_grid,table4_rlhf}.sh,
# examples/trl/sweep_iterations.sh, examples/verl/batch_ratio_grid.sh): a grid checks the layout of
# all its runs before it starts any of them.
#
# A grid defines `grid_runs` (its loops, with one `grid_run COMMAND...` per run and the run's settings
# as environment assignments in front of it), sets GRID_CHECK to its checker command, and calls
# `grid_main "$@"` (grid_runs receives the grid's arguments):
#   1. every run's COMMAND runs with LAYOUT_ONLY=1: the recipe writes the run's name and layout and
#      exits, preparing and launching nothing (a finished run writes nothing);
#   2. GRID_CHECK FOLDER checks all of them in one process (openrlhf_cfpo/launch_layout.py) and prints
#      one line per run that cannot work;
#   3. with such runs the grid stops before starting any, in one message listing each with its reason;
#      with SKIP_INVALID=1 it prints one line per skipped run and runs the others.
# GRID_RECORDS is a scratch folder for the grid's run, removed when the grid exits.

GRID_RECORDS="$(mktemp -d)"
# shellcheck disable=SC2064  # the folder's name is known now
trap "rm -rf '${GRID_RECORDS}'" EXIT

grid_run() {
   GRID_INDEX=$((GRID_INDEX + 1))
   if [[ "${GRID_PHASE}" == layout ]]; then
      local status=0
      LAYOUT_ONLY=1 "$@" >"${GRID_RECORDS}/${GRID_INDEX}.layout" 2>"${GRID_RECORDS}/${GRID_INDEX}.err" || status=$?
      echo "${status}" >"${GRID_RECORDS}/${GRID_INDEX}.status"
   elif [[ -z "${GRID_SKIPPED[${GRID_INDEX}]:-}" ]]; then
      "$@"
   fi
}

grid_main() {
   local grid report count=0 index line
   grid="$(basename "$0")"
   GRID_PHASE=layout GRID_INDEX=0 GRID_SKIPPED=()
   grid_runs "$@"
   report="$("${GRID_CHECK[@]}" "${GRID_RECORDS}")" \
      || { echo "${grid}: checking the runs' layouts failed (${GRID_CHECK[*]}); nothing was started" >&2; exit 1; }
   while IFS=$'\t' read -r index line; do
      [[ -n "${index}" ]] || continue
      GRID_SKIPPED[index]="${line}"
      count=$((count + 1))
   done <<<"${report}"
   if ((count)); then
      if [[ "${SKIP_INVALID:-0}" != 1 ]]; then
         {
            echo "${grid}: ${count} of ${GRID_INDEX} runs cannot work as set up; nothing was started:"
            for index in "${!GRID_SKIPPED[@]}"; do echo "   ${GRID_SKIPPED[index]}"; done
            echo "Fix what the reasons name (the layout, e.g. NUM_NODES or GPUS_PER_NODE, or the flags passed to" \
               "every run), or set SKIP_INVALID=1 to skip these and run the other $((GRID_INDEX - count))."
         } >&2
         exit 2
      fi
      for index in "${!GRID_SKIPPED[@]}"; do echo "${grid}: SKIP_INVALID=1: skipping ${GRID_SKIPPED[index]}" >&2; done
   fi
   GRID_PHASE=launch GRID_INDEX=0
   grid_runs "$@"
}
