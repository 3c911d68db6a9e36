"""CFPO vs PPO-clip: forward+backward time and peak memory of the policy loss, printed as ratios.

    python bench/loss_bench.py [--batch 64] [--seq 4096] [--repeats 20] [--device cpu|cuda] [--dtype float32]

Both objectives run the same pipeline a trainer runs per micro-batch: bounded log-ratio → per-token
surrogate (``openrlhf_cfpo.objectives``) → token-mean over the action mask → backward to the
log-probs. Each objective is measured in its own subprocess so that peak memories do not mix:
on CUDA the allocator's peak (``max_memory_allocated``) above the inputs; on CPU the process's
peak resident set (``ru_maxrss``) above the inputs. Time is the median over ``--repeats`` after
a warm-up.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path


def measure(objective: str, batch: int, seq: int, repeats: int, device: str, dtype_name: str) -> dict:
    import torch

    from openrlhf_cfpo.objectives import bounded_ratio, get_objective

    dtype = getattr(torch, dtype_name)
    loss_fn = get_objective(objective)
    gen = torch.Generator().manual_seed(0)
    old = (-torch.rand(batch, seq, generator=gen) * 3).to(device, dtype)
    log_probs = (old.float().cpu() + torch.randn(batch, seq, generator=gen) * 0.3).to(device, dtype)
    log_probs.requires_grad_(True)
    advantages = torch.randn(batch, 1, generator=gen).expand(batch, seq).to(device, dtype)
    mask = (torch.rand(batch, seq, generator=gen) > 0.1).to(device, dtype)

    def step():
        log_probs.grad = None
        loss = (loss_fn(bounded_ratio(log_probs, old), advantages) * mask).sum() / mask.sum()
        loss.backward()

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    if device == "cuda":
        torch.cuda.synchronize()
        baseline = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    step()
    sync()
    peak = (
        torch.cuda.max_memory_allocated() if device == "cuda" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    return {"objective": objective, "seconds": statistics.median(times), "peak_bytes": peak - baseline}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seq", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: measure one objective, print JSON
    args = parser.parse_args(argv)
    settings = (args.batch, args.seq, args.repeats, args.device, args.dtype)
    if args.worker:
        print(json.dumps(measure(args.worker, *settings)))
        return 0
    results = {}
    for objective in ("ppo", "cfpo"):
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", objective,
                   "--batch", str(args.batch), "--seq", str(args.seq), "--repeats", str(args.repeats),
                   "--device", args.device, "--dtype", args.dtype]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        results[objective] = json.loads(output.strip().splitlines()[-1])
    ppo, cfpo = results["ppo"], results["cfpo"]
    print(f"policy loss forward+backward, {args.batch}x{args.seq} tokens, {args.dtype} on {args.device}, "
          f"median of {args.repeats}")
    print("| objective | time (ms) | peak memory (MiB) |")
    print("|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['seconds'] * 1e3:.2f} | {r['peak_bytes'] / 2**20:.1f} |")
    print(f"time ratio cfpo/ppo: {cfpo['seconds'] / ppo['seconds']:.3f}")
    print(f"peak memory ratio cfpo/ppo: {cfpo['peak_bytes'] / max(ppo['peak_bytes'], 1):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
