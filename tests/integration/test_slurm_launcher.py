"""examples/slurm/openrlhf_cfpo.sbatch, run by bash as sbatch would, with ``srun``, ``scontrol``,
``ray`` and ``apptainer`` replaced by recorders on PATH.

The recorders log every call (program, pid, arguments); ``srun`` and ``apptainer`` then run the command
they were given, as Slurm would on the target node. ``ray start --block`` and, when asked, ``ray job
submit`` become long sleeps, so that stopping them (the trap) is observable; ``ray status`` reports one
node per ``ray start`` so far. The runtime env comes from the real ``openrlhf_cfpo.ray_runtime_env()``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List

import pytest

from openrlhf_cfpo.openrlhf_patch import ray_runtime_env

REPO = Path(__file__).resolve().parents[2]
SBATCH = REPO / "examples" / "slurm" / "openrlhf_cfpo.sbatch"
RECIPE = REPO / "examples" / "scripts" / "train_rlhf_llama3_8b.sh"
NODES = ["gpu-a1", "gpu-a2", "gpu-b7"]
SEP = "\x1f"

# One write per call: the recorders of concurrent sruns append to the same log.
RECORD = f'record=$(printf "%s{SEP}" "$(basename "$0")" "$$" "$@"); printf "%s\\n" "$record" >> "$REC_DIR/calls"\n'
RECORDERS = {
    "scontrol": RECORD + 'printf "%s\\n" $FAKE_NODES\n',
    # srun [--options] command...: run the command, as Slurm does on the node it picked (its name in
    # SLURMD_NODENAME, as Slurm sets it for a task).
    "srun": RECORD + """while [[ "$1" == --* ]]; do
   [[ "$1" == --nodelist=* ]] && export SLURMD_NODENAME="${1#--nodelist=}"
   shift
done
exec "$@"
""",
    # apptainer exec --nv --bind M --pwd P IMAGE command...
    "apptainer": RECORD + 'shift 7\nexec "$@"\n',
    "ray": RECORD + """case "$1 ${*: -1}" in
   "start --block") [[ -n "$FAIL_NODE" && "${SLURMD_NODENAME:-}" == "$FAIL_NODE" ]] && exit 1
                    echo >> "$REC_DIR/started"; exec sleep 300 ;;
   status*) echo "Active:"; while read -r _; do echo " 1 node_$RANDOM"; done < "$REC_DIR/started" ;;
   job*) [[ -n "${JOB_SECONDS:-}" ]] && exec sleep "$JOB_SECONDS"; echo "job logs: training done" ;;
esac
""",
}


@pytest.fixture()
def slurm(tmp_path):
    """run(*args, background=False, **env) → the finished (or started) sbatch script; calls() → its log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in RECORDERS.items():
        (bin_dir / name).write_text("#!/usr/bin/env bash\n" + body)
        (bin_dir / name).chmod(0o755)
    (tmp_path / "started").touch()
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "REC_DIR": str(tmp_path), "PYTHON": sys.executable,
           "FAKE_NODES": " ".join(NODES), "SLURM_JOB_NODELIST": "gpu-a[1-2],gpu-b7", "SLURM_GPUS_ON_NODE": "4",
           "SLURM_CPUS_ON_NODE": "16", "FAIL_NODE": ""}

    def run(*args: str, background: bool = False, **settings: str):
        process = subprocess.Popen(["bash", str(SBATCH), *args], env={**env, **settings}, cwd=tmp_path, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        if background:
            return process
        out, err = process.communicate(timeout=120)
        return process.returncode, out, err

    run.cwd = tmp_path

    def calls() -> List[List[str]]:
        lines = (tmp_path / "calls").read_text().splitlines() if (tmp_path / "calls").exists() else []
        return [line.split(SEP)[:-1] for line in lines]

    return run, calls


def ray_calls(calls, *words: str) -> List[List[str]]:
    return [call for call in calls if call[0] == "ray" and call[2:2 + len(words)] == list(words)]


def node_of(calls, ray_call) -> str:
    """The --nodelist of the srun that started ``ray_call`` (srun execs: same pid)."""
    (srun,) = [call for call in calls if call[0] == "srun" and call[1] == ray_call[1]]
    (node,) = [arg.split("=", 1)[1] for arg in srun if arg.startswith("--nodelist=")]
    return node


def assert_nothing_left_running(calls):
    for call in calls:
        with pytest.raises(ProcessLookupError):
            os.kill(int(call[1]), 0)


@pytest.mark.parametrize("container", ["", "pyxis:/images/openrlhf-cfpo.sqsh", "apptainer:/images/openrlhf-cfpo.sif"])
def test_head_workers_job_and_stop_in_order(slurm, container):
    run, calls = slurm
    code, out, err = run(str(RECIPE), "--train.max_epochs", "2", CONTAINER=container)
    assert code == 0, err
    assert "job logs: training done" in out
    log = calls()
    assert log[0][0] == "scontrol" and log[0][2:] == ["show", "hostnames", "gpu-a[1-2],gpu-b7"]
    (head,) = ray_calls(log, "start", "--head")
    workers = [c for c in ray_calls(log, "start") if "--head" not in c]
    assert node_of(log, head) == NODES[0] and sorted(node_of(log, w) for w in workers) == NODES[1:]
    for start in (head, *workers):
        assert "--num-gpus=4" in start and "--num-cpus=16" in start and start[-1] == "--block"
    for worker in workers:
        assert f"--address={NODES[0]}:6379" in worker
    (submit,) = ray_calls(log, "job", "submit")
    (stop,) = ray_calls(log, "stop")
    # The status that saw every node comes after all starts; the job after it; Ray stops last.
    last_start = max(log.index(call) for call in (head, *workers))
    order = [last_start, *(log.index(call) for call in (ray_calls(log, "status")[-1], submit, stop))]
    assert order == sorted(order)
    assert node_of(log, submit) == NODES[0] and f"--address=http://{NODES[0]}:8265" in submit
    (runtime_env,) = [json.loads(a.split("=", 1)[1]) for a in submit if a.startswith("--runtime-env-json=")]
    assert runtime_env == ray_runtime_env()
    entrypoint = submit[submit.index("--") + 1:]
    assert entrypoint[:6] == ["env", f"--chdir={run.cwd}", "NUM_NODES=3", "GPUS_PER_NODE=4",
                              f"LAUNCHER={sys.executable} -m openrlhf_cfpo.cli.train_ppo_ray", "bash"]
    assert entrypoint[6:] == [str(RECIPE), "--train.max_epochs", "2"]
    # Ray stops on every node of the allocation; the Ray steps are gone.
    (stop_srun,) = [c for c in log if c[0] == "srun" and c[1] == stop[1]]
    assert "--nodes=3" in stop_srun and "--ntasks-per-node=1" in stop_srun
    assert_nothing_left_running(log)
    sruns = [c for c in log if c[0] == "srun"]
    if container.startswith("pyxis:"):
        assert all("--container-image=/images/openrlhf-cfpo.sqsh" in c for c in sruns)
    apptainers = [c for c in log if c[0] == "apptainer"]
    if container.startswith("apptainer:"):
        assert len(apptainers) == len(sruns) and all(c[2:4] == ["exec", "--nv"] and
                                                     c[8] == "/images/openrlhf-cfpo.sif" for c in apptainers)
    else:
        assert apptainers == []


def test_scancel_stops_ray_on_every_node(slurm):
    run, calls = slurm
    process = run(str(RECIPE), background=True, JOB_SECONDS="300")
    deadline = time.monotonic() + 60
    while not ray_calls(calls(), "job", "submit"):
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()[1]
        time.sleep(0.1)
    time.sleep(0.3)  # the submit's srun is now in the background `wait`
    process.send_signal(signal.SIGTERM)  # what scancel sends the batch script
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    log = calls()
    (stop,) = ray_calls(log, "stop")
    assert log.index(stop) > log.index(ray_calls(log, "job", "submit")[0])
    assert_nothing_left_running(log)


def test_a_node_that_does_not_join_is_one_line_and_ray_still_stops(slurm):
    run, calls = slurm
    code, _, err = run(str(RECIPE), FAIL_NODE=NODES[2], JOIN_TIMEOUT="4")
    assert code == 2, err
    assert "only 2 of 3 nodes joined the Ray cluster in 4 s" in err and "docs/cluster.md" in err
    log = calls()
    assert ray_calls(log, "stop") and not ray_calls(log, "job", "submit")
    assert_nothing_left_running(log)


@pytest.mark.parametrize("args, settings, message", [
    ([], {}, "usage: sbatch --nodes N"),
    (["no_such_recipe.sh"], {}, "no_such_recipe.sh is not a file"),
    ([str(RECIPE)], {"SLURM_GPUS_ON_NODE": "", "SLURM_GPUS_PER_NODE": ""}, "submit with --gpus-per-node N"),
    ([str(RECIPE)], {"CONTAINER": "docker:x"}, "CONTAINER=docker:x is not understood"),
])
def test_bad_input_is_one_line_before_anything_starts(slurm, args, settings, message):
    run, calls = slurm
    code, _, err = run(*args, **settings)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not [c for c in calls() if c[0] in ("srun", "ray")]


def test_gpu_count_from_slurm_gpus_per_node_with_a_type(slurm):
    run, calls = slurm
    code, _, err = run(str(RECIPE), SLURM_GPUS_ON_NODE="", SLURM_GPUS_PER_NODE="h100:8")
    assert code == 0, err
    assert all("--num-gpus=8" in c for c in ray_calls(calls(), "start"))
