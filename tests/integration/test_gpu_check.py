"""bench/gpu_check.sh, the prepared GPU check, run end to end on the CPU (GPU_CHECK_DEVICE=cpu).

Every step runs as on the GPU machine (same entry points and flags, the device aside), with this
environment's interpreter instead of step 0's venv. Step 0 (installs) needs the network or a
wheel folder; docs/bench.md says how it was checked.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "gpu_check.sh"


def pins():
    text = SCRIPT.read_text()
    block = re.search(r"^PINS=\((.*?)^\)", text, flags=re.MULTILINE | re.DOTALL).group(1)
    return dict(pin.partition("==")[::2] for pin in block.split())


def test_script_parses_and_pins_openrlhf_and_deepspeed_as_the_project_does():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    setup_version = re.search(r'OPENRLHF_VERSION = "([^"]+)"', (ROOT / "setup.py").read_text()).group(1)
    cpu_requirements = (ROOT / "requirements" / "openrlhf-cpu.txt").read_text()
    assert pins()["openrlhf"] == setup_version
    assert f"deepspeed=={pins()['deepspeed']}" in cpu_requirements.split()
    assert "vllm" not in pins() and "ray" not in pins() and "flash-attn" not in pins()


@pytest.mark.slow  # the loss bench, a lab sweep, a generation and two hook probes (~2 min of CPU)
def test_gpu_check_runs_every_step_on_the_cpu(tmp_path):
    env = {**os.environ, "GPU_CHECK_PYTHON": sys.executable, "GPU_CHECK_DEVICE": "cpu",
           "GPU_CHECK_DIR": str(tmp_path), "GPU_CHECK_BENCH_SHAPES": "16x8192"}
    out = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    text = out.stdout
    for step in ("1/4 loss bench", "2/4 openrlhf-cfpo lab", "3/4 HF evaluation backend", "4/4 Ray worker hook"):
        assert f"== {step}" in text
    assert re.search(r"^time ratio cfpo/ppo: [\d.]+$", text, flags=re.MULTILINE)
    assert re.search(r"^peak memory ratio cfpo/ppo: [\d.]+$", text, flags=re.MULTILINE)
    assert (tmp_path / "lab" / "report.md").is_file()
    assert "| cfpo | " in text  # the bench's row
    assert "+ CFPO-iteration 4 |" in text and "4 cells, 1 worker(s)" in text  # the lab's table and sweep
    assert "hf generation check: ok (3 replies on cpu)" in text
    assert text.count("hook check: ok") == 2
    assert re.search(r"^gpu check passed in \d+ s$", text, flags=re.MULTILINE)
