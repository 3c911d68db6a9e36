"""bench/lab_engine_bench.py: per-model cost of today's lab path and the stacked engine, as ratios,
and the arithmetic floor of the default sweep."""

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "lab_engine_bench.py"


def test_lab_engine_bench_prints_per_model_costs_ratios_and_the_floor():
    out = subprocess.run([sys.executable, str(BENCH), "--stacks", "2", "--repeats", "1"],
                         capture_output=True, text=True, check=True).stdout
    rows = re.findall(r"^\| (today .*|stacked engine, M = 2) \| ([\d.]+) \| ([\d.]+) \|$", out, flags=re.MULTILINE)
    assert len(rows) == 2 and all(float(update) > 0 and float(evaluate) > 0 for _, update, evaluate in rows)
    for label in ("update", "evaluation"):
        assert float(re.search(rf"^{label} ratio today/stacked \(best stack\): (\S+)$", out, re.MULTILINE).group(1)) > 0
    floor = re.search(r"^default RLVR sweep: ([\d.]+) TFLOP .* at least (\d+) s of CPU time$", out, re.MULTILINE)
    assert floor and float(floor.group(1)) > 10 and int(floor.group(2)) > 0  # 19.7 TFLOP at the default settings
