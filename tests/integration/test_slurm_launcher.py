"""examples/slurm/openrlhf_cfpo.sbatch, run by bash as sbatch would, with ``srun``, ``scontrol``,
``ray``, ``apptainer``, ``getent`` and ``nvidia-smi`` replaced by recorders on PATH.

The recorders log every call (program, pid, arguments); ``srun`` and ``apptainer`` then run the command
they were given, as Slurm would on the target node. ``srun`` behaves as Slurm 21.08 does: a step gets
all of the job's GPUs unless it says ``--gres``, and a step that wants GPUs another step holds waits
(here: fails at once, saying so). It binds a GPU step to its GPUs through ``CUDA_VISIBLE_DEVICES``.
``ray`` is a Python script, like the real console script, so that the launcher can find its Python from
its ``#!`` line; ``python3`` on PATH is a decoy that is not that Python. ``ray start --head`` answers
only after ``HEAD_START_SECONDS``; a worker started before that gives up (Ray's retries, shortened);
``ray start --block`` and, when asked, ``ray job submit`` become long sleeps, so that stopping them (the
trap) is observable; ``ray status`` reports one node per registered ``ray start``. The runtime env comes
from the real ``openrlhf_cfpo.ray_runtime_env()``. Waits are short: JOIN_POLL_SECONDS=0.1.
"""

from __future__ import annotations

import json
import os
import re
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
HOSTS = {"gpu-a1": "10.0.0.1", "gpu-a2": "10.0.0.2", "gpu-b7": "10.0.1.7", "gpu-a1-ib": "10.1.0.1"}
RAY_TEMP_DIR = "/tmp/ray-4242"
SEP = "\x1f"

# One line per call (a newline in an argument written as \n), in one write: the recorders of concurrent
# sruns append to the same log.
RECORD = (f'record=$(printf "%s{SEP}" "$(basename "$0")" "$$" "${{@//$\'\\n\'/\\\\n}}"); '
          'printf "%s\\n" "$record" >> "$REC_DIR/calls"\n')
RECORDERS = {
    "scontrol": RECORD + 'printf "%s\\n" $FAKE_NODES\n',
    # srun [--options] command...: run the command, as Slurm does on the node it picked (its name in
    # SLURMD_NODENAME, as Slurm sets it for a task).
    "srun": RECORD + """gres=""; nodes="$FAKE_NODES"
while [[ "$1" == --* ]]; do
   case "$1" in
      --nodelist=*) export SLURMD_NODENAME="${1#--nodelist=}"; nodes="$SLURMD_NODENAME" ;;
      --gres=*) gres="${1#--gres=}" ;;
   esac
   shift
done
if [[ "$gres" == none ]]; then
   unset CUDA_VISIBLE_DEVICES
else
   for node in $nodes; do
      if grep -qx "$node" "$REC_DIR/gpus_held"; then
         echo "srun: Job step creation temporarily disabled, retrying (Requested nodes are busy)" >&2
         echo "(recorder: this step waits for ever for the GPUs a step holds on $node)" >&2
         exit 1
      fi
   done
   printf "%s\\n" $nodes >> "$REC_DIR/gpus_held"
   count="${gres#gpu:}"; count="${count:-$SLURM_GPUS_ON_NODE}"
   export CUDA_VISIBLE_DEVICES="$(seq -s, 0 $((count - 1)))"
   # ODD_NODE's GPU step is bound as ODD_BINDING says instead ("unset": no CUDA_VISIBLE_DEVICES)
   if [[ -n "$ODD_NODE" && "${SLURMD_NODENAME:-}" == "$ODD_NODE" ]]; then
      export CUDA_VISIBLE_DEVICES="$ODD_BINDING"
      [[ "$ODD_BINDING" == unset ]] && unset CUDA_VISIBLE_DEVICES
   fi
fi
exec "$@"
""",
    # apptainer exec --nv --bind M --pwd P IMAGE command...
    "apptainer": RECORD + 'shift 7\nexec "$@"\n',
    # getent ahostsv4 NAME, for the names in FAKE_HOSTS ("name=ip ...")
    "getent": """for pair in $FAKE_HOSTS; do
   ip="${pair#*=}"
   [[ "$1 $2" == "ahostsv4 ${pair%%=*}" ]] && printf "%s       STREAM %s\\n%s       DGRAM\\n" "$ip" "$2" "$ip" && exit 0
done
exit 2
""",
    "nvidia-smi": 'for ((i = 0; i < SMI_GPUS; i++)); do echo "GPU $i: NVIDIA H100 80GB HBM3 (UUID: GPU-$i)"; done\n',
    "python3": 'echo "python3 on PATH is a decoy, not the Python that runs ray" >&2; exit 1\n',
    # the `#!/usr/bin/env ray-python` form of the ray script
    "ray-python": f'exec "{sys.executable}" "$@"\n',
}
RAY = f"""
import json, os, sys, time
from pathlib import Path

rec_dir, args = Path(os.environ["REC_DIR"]), sys.argv[1:]
node = os.environ.get("SLURMD_NODENAME", "")


def append(name, line):
    fd = os.open(rec_dir / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, line.encode())
    os.close(fd)


append("calls", "{SEP}".join(["ray", str(os.getpid()), *args, ""]) + "\\n")
registered = (rec_dir / "started").read_text().splitlines()
if args[0] == "start":
    if node == os.environ["FAIL_NODE"]:
        sys.exit(1)
    if "--head" in args:
        time.sleep(float(os.environ["HEAD_START_SECONDS"]))
    elif not registered:
        sys.exit("ray start: no Ray head answers at " + args[1] + "; giving up")
    if node != os.environ["SILENT_NODE"]:
        append("started", node + "\\n")
    os.execvp("sleep", ["sleep", "300"])
elif args[0] == "status":
    time.sleep(float(os.environ["STATUS_SECONDS"]))
    if not registered:
        sys.exit("ConnectionError: no Ray cluster at " + args[1])
    print("Active:")
    for _ in registered:
        print(" 1 node_" + os.urandom(4).hex())
elif args[:2] == ["job", "submit"]:
    append("job_env", json.dumps({{k: os.environ.get(k) for k in ("no_proxy", "NO_PROXY")}}) + "\\n")
    if os.environ.get("JOB_SECONDS"):
        os.execvp("sleep", ["sleep", os.environ["JOB_SECONDS"]])
    print("job logs: training done")
"""
# The first lines of a `ray` console script, as pip writes them: the interpreter's path; /usr/bin/env and a
# name; or, for a path too long for #!, a /bin/sh line that execs the interpreter.
RAY_SHEBANGS = {
    "path": f"#!{sys.executable} -S\n",
    "env": "#!/usr/bin/env ray-python\n",
    "sh": f"#!/bin/sh\n'''exec' \"{sys.executable}\" \"$0\" \"$@\"\n' '''\n",
}


@pytest.fixture()
def slurm(tmp_path):
    """run(*args, background=False, shebang="path", **env) → the finished (or started) sbatch script;
    calls() → its log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in RECORDERS.items():
        (bin_dir / name).write_text("#!/usr/bin/env bash\n" + body)
        (bin_dir / name).chmod(0o755)
    for name in ("started", "gpus_held"):
        (tmp_path / name).touch()
    env = {key: value for key, value in os.environ.items()
           if key.lower() not in ("http_proxy", "https_proxy", "no_proxy", "cuda_visible_devices")}
    env.update({"PATH": f"{bin_dir}:{os.environ['PATH']}", "REC_DIR": str(tmp_path), "SLURM_JOB_ID": "4242",
                "FAKE_NODES": " ".join(NODES), "FAKE_HOSTS": " ".join(f"{n}={ip}" for n, ip in HOSTS.items()),
                "SLURM_JOB_NODELIST": "gpu-a[1-2],gpu-b7", "SLURM_GPUS_ON_NODE": "4", "SLURM_CPUS_ON_NODE": "16",
                "SMI_GPUS": "4", "JOIN_TIMEOUT": "20", "JOIN_POLL_SECONDS": "0.1", "HEAD_START_SECONDS": "0.3",
                "STATUS_SECONDS": "0", "FAIL_NODE": "", "SILENT_NODE": "", "ODD_NODE": "", "ODD_BINDING": ""})

    def run(*args: str, background: bool = False, shebang: str = "path", **settings: str):
        (bin_dir / "ray").write_text(RAY_SHEBANGS[shebang] + RAY)
        (bin_dir / "ray").chmod(0o755)
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


def srun_of(calls, ray_call) -> List[str]:
    """The srun that started ``ray_call`` (srun, bash -c and the interpreter exec: same pid)."""
    (srun,) = [call for call in calls if call[0] == "srun" and call[1] == ray_call[1]]
    return srun


def node_of(calls, ray_call) -> str:
    (node,) = [arg.split("=", 1)[1] for arg in srun_of(calls, ray_call) if arg.startswith("--nodelist=")]
    return node


def assert_nothing_left_running(calls):
    for call in calls:
        with pytest.raises(ProcessLookupError):
            os.kill(int(call[1]), 0)


def timed_run(run, *args, **settings):
    start = time.monotonic()
    code, _, err = run(*args, **settings)
    return code, err, time.monotonic() - start


# Each container also with one of the three forms of the ray script's #! line.
@pytest.mark.parametrize("container, shebang", [("", "path"), ("pyxis:/images/openrlhf-cfpo.sqsh", "env"),
                                                ("apptainer:/images/openrlhf-cfpo.sif", "sh")])
def test_head_workers_job_and_stop_in_order(slurm, container, shebang):
    run, calls = slurm
    code, out, err = run(str(RECIPE), "--train.max_epochs", "2", CONTAINER=container, shebang=shebang)
    assert code == 0, err
    assert "job logs: training done" in out
    log = calls()
    assert log[0][0] == "scontrol" and log[0][2:] == ["show", "hostnames", "gpu-a[1-2],gpu-b7"]
    (head,) = ray_calls(log, "start", "--head")
    workers = [c for c in ray_calls(log, "start") if "--head" not in c]
    assert node_of(log, head) == NODES[0] and sorted(node_of(log, w) for w in workers) == NODES[1:]
    # The head binds the IP of HEAD_ADDRESS (here its Slurm name), the one the workers dial.
    assert "--node-ip-address=10.0.0.1" in head
    for start in (head, *workers):
        assert {"--num-gpus=4", "--num-cpus=16", f"--temp-dir={RAY_TEMP_DIR}"} <= set(start) and start[-1] == "--block"
    for worker in workers:
        assert f"--address={NODES[0]}:6379" in worker
    # Only `ray start` holds GPUs (the node's, explicitly); every other step takes none, or it would wait
    # behind `ray start` on Slurm 21.08 (the srun recorder fails it then).
    ray_start_sruns = [srun_of(log, start) for start in (head, *workers)]
    assert all("--gres=gpu:4" in srun for srun in ray_start_sruns)
    other_sruns = [c for c in log if c[0] == "srun" and c not in ray_start_sruns]
    assert other_sruns and all("--gres=none" in srun for srun in other_sruns)
    # Workers start after the head answered `ray status` (the recorded workers would have given up).
    assert log.index(ray_calls(log, "status")[0]) < min(log.index(w) for w in workers)
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
    # The job runs the Python of `ray` (its #! line), the one the import check used, not python3 on PATH.
    assert entrypoint[:7] == ["env", f"--chdir={run.cwd}", "NUM_NODES=3", "GPUS_PER_NODE=4", f"PYTHON={sys.executable}",
                              f"LAUNCHER={sys.executable} -m openrlhf_cfpo.cli.train_ppo_ray", "bash"]
    assert entrypoint[7:] == [str(RECIPE), "--train.max_epochs", "2"]
    # Ray stops on every node of the allocation; the Ray steps are gone.
    stop_srun = srun_of(log, stop)
    assert "--nodes=3" in stop_srun and "--ntasks-per-node=1" in stop_srun
    assert_nothing_left_running(log)
    # Ray's temp dir is made on every node, outside any container, before anything else runs there.
    sruns = [c for c in log if c[0] == "srun"]
    assert sruns[0][2:] == ["--nodes=3", "--ntasks-per-node=1", "--overlap", "--gres=none", "mkdir", "-p", RAY_TEMP_DIR]
    in_container = sruns[1:]
    if container.startswith("pyxis:"):
        # One named container per node, started once by a step of its own before the Ray steps.
        assert all({"--container-image=/images/openrlhf-cfpo.sqsh", "--container-name=openrlhf-cfpo",
                    f"--container-mounts={run.cwd},{RAY_TEMP_DIR}"} <= set(c) for c in in_container)
        assert "--nodes=3" in in_container[0] and in_container[0][-1] == "true"
        assert sruns.index(in_container[0]) < min(log.index(s) for s in ray_start_sruns)
    else:
        assert not any(arg.startswith("--container") for c in sruns for arg in c)
    apptainers = [c for c in log if c[0] == "apptainer"]
    if container.startswith("apptainer:"):
        assert len(apptainers) == len(in_container) and all(
            c[2:8] == ["exec", "--nv", "--bind", f"{run.cwd},{RAY_TEMP_DIR}", "--pwd", str(run.cwd)]
            and c[8] == "/images/openrlhf-cfpo.sif" for c in apptainers)
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
    code, _, err = run(str(RECIPE), SILENT_NODE=NODES[2], JOIN_TIMEOUT="2")
    assert code == 2, err
    assert "only 2 of 3 nodes joined the Ray cluster in 2 s" in err and "docs/cluster.md" in err
    log = calls()
    assert ray_calls(log, "stop") and not ray_calls(log, "job", "submit")
    assert_nothing_left_running(log)


@pytest.mark.parametrize("node", [NODES[0], NODES[2]], ids=["head", "worker"])
def test_a_ray_start_that_dies_ends_the_wait_at_once_naming_its_node(slurm, node):
    run, calls = slurm
    code, err, seconds = timed_run(run, str(RECIPE), FAIL_NODE=node, JOIN_TIMEOUT="10")
    assert code == 2 and f"ray start on {node} exited with code 1 before all 3 nodes joined" in err, err
    assert seconds < 5  # not JOIN_TIMEOUT
    log = calls()
    assert ray_calls(log, "stop") and not ray_calls(log, "job", "submit")
    assert_nothing_left_running(log)


def test_join_timeout_counts_wall_clock_seconds_however_slow_ray_status_is(slurm):
    run, calls = slurm
    # Each `ray status` takes longer than the whole JOIN_TIMEOUT: the one in flight is stopped at the deadline.
    code, err, seconds = timed_run(run, str(RECIPE), STATUS_SECONDS="3", JOIN_TIMEOUT="2")
    assert code == 2 and "in 2 s; see docs/cluster.md" in err, err
    assert seconds < 2 + 1.5
    assert_nothing_left_running(calls())


@pytest.mark.parametrize("binding, settings, visible", [
    ("0,1,2", {}, 3),                     # Slurm bound fewer GPUs than the node has
    ("unset", {"SMI_GPUS": "3"}, 3),      # no CUDA_VISIBLE_DEVICES: Ray counts what nvidia-smi lists
    ("NoDevFiles", {}, 0),                # Slurm's value for GPUs it cannot bind: Ray counts none
])
def test_a_ray_start_step_that_sees_other_gpus_than_ray_advertises_fails_naming_its_node(slurm, binding, settings,
                                                                                          visible):
    run, calls = slurm
    code, _, err = run(str(RECIPE), ODD_NODE=NODES[2], ODD_BINDING=binding, **settings)
    assert code == 2, err
    check = [line for line in err.splitlines() if "GPU(s) in its ray start step" in line]
    assert check == [f"openrlhf_cfpo.sbatch: {NODES[2]} sees {visible} GPU(s) in its ray start step but Ray would"
                     " advertise 4: submit with --gpus-per-node 4, or set GPUS_PER_NODE to the GPUs each node has"]
    assert f"ray start on {NODES[2]} exited with code 3" in err
    log = calls()
    assert not [c for c in ray_calls(log, "start") if node_of(log, c) == NODES[2]]  # never reached `ray start`
    assert not ray_calls(log, "job", "submit")
    assert_nothing_left_running(log)


def test_a_site_with_an_infiniband_head_address_proxies_and_typed_gpus(slurm):
    """The head binds HEAD_ADDRESS's IP; the job client bypasses proxies for the head; the GPU count comes
    from SLURM_GPUS_PER_NODE with a type."""
    run, calls = slurm
    code, _, err = run(str(RECIPE), HEAD_ADDRESS="gpu-a1-ib", http_proxy="http://proxy:3128",
                       no_proxy="localhost,.cluster", NO_PROXY="localhost",
                       SLURM_GPUS_ON_NODE="", SLURM_GPUS_PER_NODE="h100:8", SMI_GPUS="8")
    assert code == 0, err
    log = calls()
    assert all("--num-gpus=8" in c and "--gres=gpu:8" in srun_of(log, c) for c in ray_calls(log, "start"))
    (head,) = ray_calls(log, "start", "--head")
    assert "--node-ip-address=10.1.0.1" in head and node_of(log, head) == NODES[0]
    assert all("--address=gpu-a1-ib:6379" in c for c in ray_calls(log, "start") if c is not head)
    (submit,) = ray_calls(log, "job", "submit")
    assert "--address=http://gpu-a1-ib:8265" in submit
    (job_env,) = [json.loads(line) for line in (run.cwd / "job_env").read_text().splitlines()]
    for variable in ("no_proxy", "NO_PROXY"):
        assert {"localhost", ".cluster", "gpu-a1-ib", "10.1.0.1"} <= set(job_env[variable].split(",")), job_env


def test_an_import_check_that_fails_is_one_line_naming_the_python(slurm):
    run, calls = slurm
    shadow = run.cwd / "shadow" / "openrlhf_cfpo"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('not this openrlhf_cfpo')\n")
    code, _, err = run(str(RECIPE), PYTHONPATH=str(shadow.parent))
    assert code == 2, err
    assert (f"openrlhf_cfpo.sbatch: openrlhf_cfpo is not importable by {sys.executable} on {NODES[0]} "
            "(the Python of the ray on PATH runs Ray's workers): install openrlhf-cfpo there or set CONTAINER") in err
    assert not ray_calls(calls(), "job", "submit")


def test_arrays_that_may_be_empty_are_expanded_safely_for_bash_before_4_4():
    """Under `set -u`, bash < 4.4 (RHEL/CentOS 7) calls an empty array expanded as "${A[@]}" unbound, and
    the script dies. An array the script ever sets to () may be expanded only as ${A[@]+"${A[@]}"} (or
    counted, ${#A[@]}). The runs above use empty ones (no container) with today's bash."""
    script = SBATCH.read_text()
    maybe_empty = set(re.findall(r"(?:^|[\s;(])([A-Za-z_]\w*)=\(\)", script, flags=re.M))
    assert {"CONTAINER_SRUN", "IN_CONTAINER"} <= maybe_empty
    for name in maybe_empty:
        unguarded = script.replace(f'${{{name}[@]+"${{{name}[@]}}"}}', "")
        assert not re.search(rf"\$\{{!?{name}\[[@*]\]", unguarded), f"{name} may be empty: expand it as " \
            f'${{{name}[@]+"${{{name}[@]}}"}}'


def test_the_job_asks_for_every_node_whole():
    """Exclusive nodes with all their memory (--mem=0): otherwise an exclusive job gets only what it
    requested where DefMemPerCPU is small, and the recipes' sleep modes park weights in host RAM."""
    directives = re.findall(r"^#SBATCH (\S+)", SBATCH.read_text(), flags=re.M)
    assert {"--exclusive", "--mem=0", "--ntasks-per-node=1"} <= set(directives)


@pytest.mark.parametrize("args, settings, message", [
    ([], {}, "usage: sbatch --nodes N"),
    (["no_such_recipe.sh"], {}, "no_such_recipe.sh is not a file"),
    ([str(RECIPE)], {"SLURM_GPUS_ON_NODE": "", "SLURM_GPUS_PER_NODE": ""}, "submit with --gpus-per-node N"),
    ([str(RECIPE)], {"CONTAINER": "docker:x"}, "CONTAINER=docker:x is not understood"),
    ([str(RECIPE)], {"HEAD_ADDRESS": "nowhere"}, "HEAD_ADDRESS=nowhere has no IPv4 address here: set HEAD_ADDRESS"),
    ([str(RECIPE)], {"JOIN_TIMEOUT": "10m"}, "JOIN_TIMEOUT=10m is not a whole number of seconds"),
    ([str(RECIPE)], {"JOIN_POLL_SECONDS": "fast"}, "JOIN_POLL_SECONDS=fast is not a number of seconds"),
])
def test_bad_input_is_one_line_before_anything_starts(slurm, args, settings, message):
    run, calls = slurm
    code, _, err = run(*args, **settings)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not [c for c in calls() if c[0] in ("srun", "ray")]

