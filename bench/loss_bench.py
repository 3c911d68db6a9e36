"""OpenRLHF's PolicyLoss("ppo") vs the patched PolicyLoss("cfpo"): forward+backward cost, as ratios.

    python bench/loss_bench.py [--shapes 64x4096,8x32768] [--repeats 30] [--device cpu|cuda]
                               [--eps-clip-low-high 0.2 0.2] [--threads 1]

Each step is the call OpenRLHF 0.11.2's actor makes per micro-batch (trainer/ray/ppo_actor.py,
``training_step``): ``PolicyLoss(clip_eps_low, clip_eps_high, policy_loss_type)`` on float32
log-probs of shape (batch, seq) with gradient, the old log-probs, per-token advantages and a bool
action mask with ragged responses, with the ``dp_size`` / ``batch_num_tokens`` /
``global_batch_size`` of OpenRLHF's ``get_loss_batch_info`` (token-mean), then backward to the
log-probs. "ppo" is upstream's code, untouched (its process never imports the patch); "cfpo" is
the same class after ``patch_openrlhf()``. Every (objective, shape) runs in its own process.

- Time: median over ``--repeats`` after a warm-up; on CPU the process's CPU time (user+sys) with
  ``--threads`` torch threads, so other load on a shared machine inflates it less than wall time;
  on CUDA wall time between synchronisations.
- Peak memory above the inputs during one step, measured after the timing: on CUDA
  ``torch.cuda.max_memory_allocated``; on CPU (Linux, glibc) the resident-set high-water mark
  (VmHWM, reset through /proc/self/clear_refs) with glibc's mmap threshold fixed at 16 KiB
  (``mallopt``), so that every tensor is its own mapping and leaves the resident set when freed.

Prints a table per shape, then ``time ratio cfpo/ppo: X`` and ``peak memory ratio cfpo/ppo: Y``,
each the largest over the shapes (the worst case).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import importlib
import importlib.util
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

OBJECTIVES = ("ppo", "cfpo")
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


def set_malloc_thresholds(mmap_bytes: int) -> None:
    """glibc: allocations of ``mmap_bytes`` or more get their own mapping (unmapped when freed), and
    free memory at the heap's top is kept up to twice that, as glibc's own adaptive setting does."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    if not hasattr(libc, "mallopt") or not (libc.mallopt(M_MMAP_THRESHOLD, mmap_bytes)
                                            and libc.mallopt(M_TRIM_THRESHOLD, 2 * mmap_bytes)):
        raise SystemExit("loss_bench: CPU peak memory needs glibc's mallopt (Linux); use --device cuda")


def import_openrlhf_loss_module():
    """``openrlhf.models.loss``, the file OpenRLHF runs, without executing ``openrlhf/models/__init__.py``.

    That ``__init__`` imports the actor model (flash-attn, peft), which a CPU machine or a bare GPU
    machine lacks; the loss module itself needs only torch and ``openrlhf.models.utils``
    (DeepSpeed). For this benchmark's processes only: the bare package cannot import the actor.
    """
    if "openrlhf.models" not in sys.modules:
        spec = importlib.util.find_spec("openrlhf.models")
        sys.modules["openrlhf.models"] = importlib.util.module_from_spec(spec)
    return importlib.import_module("openrlhf.models.loss")


def make_inputs(batch: int, seq: int, device: str, seed: int = 0) -> dict:
    """Trainer-like tensors: log-probs drifted from the old ones (some tokens leave the trust region),
    one advantage per response repeated over its tokens, responses of seq/2 to seq tokens."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    old = -torch.rand(batch, seq, generator=gen) * 3
    log_probs = old + torch.randn(batch, seq, generator=gen) * 0.3
    advantages = torch.randn(batch, 1, generator=gen).expand(batch, seq).contiguous()
    lengths = torch.randint(seq // 2, seq + 1, (batch, 1), generator=gen)
    action_mask = torch.arange(seq).unsqueeze(0) < lengths
    return {
        "log_probs": log_probs.to(device).requires_grad_(True),
        "old_log_probs": old.to(device),
        "advantages": advantages.to(device),
        "action_mask": action_mask.to(device),
    }


def _proc_status_bytes(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        return int(re.search(rf"^{field}:\s+(\d+) kB", status.read(), flags=re.MULTILINE).group(1)) * 1024


class TrainerStep:
    """One forward+backward of ``policy_loss`` at the trainer's call on a (batch, seq) micro-batch."""

    def __init__(self, policy_loss, batch: int, seq: int, device: str):
        import torch

        from openrlhf.utils.loss_utils import get_loss_batch_info

        self.torch, self.device, self.policy_loss = torch, device, policy_loss
        self.inputs = make_inputs(batch, seq, device)
        # token-mean normalisers; dp_size is 1 outside torch.distributed
        self.loss_batch_info = get_loss_batch_info(None, self.inputs["action_mask"])

    def __call__(self):
        log_probs = self.inputs["log_probs"]
        log_probs.grad = None
        loss, *_ = self.policy_loss(
            log_probs, self.inputs["old_log_probs"], self.inputs["advantages"],
            action_mask=self.inputs["action_mask"], **self.loss_batch_info,
        )
        loss.backward()
        log_probs.grad = None

    def sync(self):
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def peak_bytes(self) -> int:
        """Memory above the inputs at the peak of one step."""
        torch = self.torch
        self()
        self.sync()
        if self.device == "cuda":
            baseline = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            self()
            self.sync()
            return torch.cuda.max_memory_allocated() - baseline
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")  # reset the high-water mark to the current resident set
        baseline = _proc_status_bytes("VmRSS")
        self()
        return _proc_status_bytes("VmHWM") - baseline

    def median_seconds(self, repeats: int) -> float:
        clock = time.perf_counter if self.device == "cuda" else time.process_time
        for _ in range(3):
            self()
        times = []
        for _ in range(repeats):
            self.sync()
            start = clock()
            self()
            self.sync()
            times.append(clock() - start)
        return statistics.median(times)


def measure(objective: str, shapes, repeats: int, device: str, eps: tuple, threads: int) -> list:
    """Peak memory of every shape, then median step time of every shape, for one objective in this process."""
    import torch

    if device == "cpu":
        set_malloc_thresholds(16 * 1024)  # before any tensor exists: each one is its own mapping
    torch.set_num_threads(threads)
    loss_module = import_openrlhf_loss_module()
    if objective == "cfpo":
        from openrlhf_cfpo.openrlhf_patch import patch_openrlhf

        patch_openrlhf()
    policy_loss = loss_module.PolicyLoss(clip_eps_low=eps[0], clip_eps_high=eps[1], policy_loss_type=objective)
    results = [{"shape": list(shape), "peak_bytes": TrainerStep(policy_loss, *shape, device).peak_bytes()}
               for shape in shapes]
    if device == "cpu":
        set_malloc_thresholds(32 * 2**20)  # glibc's adaptive ceiling: steady-state reuse, as in training
    for result in results:
        result["seconds"] = TrainerStep(policy_loss, *result["shape"], device).median_seconds(repeats)
    return results


def parse_shapes(text: str):
    try:
        shapes = [tuple(int(n) for n in part.lower().split("x")) for part in text.split(",") if part.strip()]
    except ValueError:
        shapes = []
    if not shapes or any(len(shape) != 2 or min(shape) < 1 for shape in shapes):
        raise argparse.ArgumentTypeError(f"--shapes takes BATCHxSEQ[,BATCHxSEQ...], e.g. 64x4096; got {text!r}")
    return shapes


def run_worker(objective: str, args) -> list:
    shapes = ",".join(f"{batch}x{seq}" for batch, seq in args.shapes)
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", objective, "--shapes", shapes,
               "--repeats", str(args.repeats), "--device", args.device, "--threads", str(args.threads),
               "--eps-clip-low-high", *map(str, args.eps_clip_low_high)]
    process = subprocess.run(command, capture_output=True, text=True)
    if process.returncode != 0:
        raise SystemExit(f"loss_bench: the {objective} worker failed:\n{process.stderr[-3000:]}")
    return json.loads(process.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", type=parse_shapes, default=parse_shapes("64x4096,8x32768"),
                        help="comma-separated BATCHxSEQ micro-batch shapes [64x4096,8x32768]")
    parser.add_argument("--repeats", type=int, default=30, help="timed steps per objective and shape [30]")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--eps-clip-low-high", type=float, nargs=2, default=(0.2, 0.2), metavar=("LOW", "HIGH"),
                        help="trust region, as OpenRLHF's --actor.eps_clip_low_high [0.2 0.2]")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads [1]")
    parser.add_argument("--worker", choices=OBJECTIVES, help=argparse.SUPPRESS)  # internal: one objective, JSON
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(args.worker, args.shapes, args.repeats, args.device,
                                 tuple(args.eps_clip_low_high), args.threads)))
        return 0
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            parser.error("--device cuda: no CUDA device is visible; use --device cpu")
    clock = "CPU time" if args.device == "cpu" else "wall time"
    memory = "peak RSS above inputs" if args.device == "cpu" else "max_memory_allocated above inputs"
    results = {objective: run_worker(objective, args) for objective in OBJECTIVES}
    time_ratios, memory_ratios = [], []
    for index, (batch, seq) in enumerate(args.shapes):
        ppo, cfpo = results["ppo"][index], results["cfpo"][index]
        time_ratios.append(cfpo["seconds"] / ppo["seconds"])
        memory_ratios.append(cfpo["peak_bytes"] / max(ppo["peak_bytes"], 1))
        print(f"OpenRLHF PolicyLoss forward+backward, {batch}x{seq} tokens, float32 log-probs on {args.device}, "
              f"eps {args.eps_clip_low_high[0]}/{args.eps_clip_low_high[1]}, median {clock} of {args.repeats}")
        print(f"| objective | time (ms) | {memory} (MiB) |")
        print("|---|---|---|")
        for name, r in (("ppo", ppo), ("cfpo", cfpo)):
            print(f"| {name} | {r['seconds'] * 1e3:.2f} | {r['peak_bytes'] / 2**20:.1f} |")
        print(f"cfpo/ppo at {batch}x{seq}: time {time_ratios[-1]:.3f}, peak memory {memory_ratios[-1]:.3f}\n")
    print(f"time ratio cfpo/ppo: {max(time_ratios):.3f}")
    print(f"peak memory ratio cfpo/ppo: {max(memory_ratios):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
