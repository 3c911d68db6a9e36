"""bench/loss_bench.py keeps running and prints its ratios (values are reported, not asserted)."""

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "loss_bench.py"


def test_loss_bench_prints_cfpo_over_ppo_ratios():
    out = subprocess.run([sys.executable, str(BENCH), "--batch", "2", "--seq", "64", "--repeats", "2"],
                         capture_output=True, text=True, check=True).stdout
    for label in ("time ratio cfpo/ppo", "peak memory ratio cfpo/ppo"):
        match = re.search(rf"^{label}: (\S+)$", out, flags=re.MULTILINE)
        assert match, out
        assert float(match.group(1)) >= 0
    assert re.search(r"^\| cfpo \| [\d.]+ \| [\d.]+ \|$", out, flags=re.MULTILINE)
