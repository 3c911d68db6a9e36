"""Ray's worker_process_setup_hook in a fresh process, measured; prints one JSON line.

    python tests/integration/worker_hook_probe.py --actor-module openrlhf.trainer.ray.ppo_actor \
        [--visible-devices 0] [--device cpu|cuda] [--check]

1. Wraps every function of ``torch.cuda`` (and torch._C's CUDA entry points) with a counter.
2. Runs the hook named by ``ray_runtime_env()`` as Ray's worker does (import the module, call the
   function) and records the CUDA calls it made and the CUDA-probing modules it imported.
3. Sets CUDA_VISIBLE_DEVICES as Ray does for the actor placed in that worker, imports the actor's
   module (the actor's own code) and runs its ``PolicyLoss(policy_loss_type="cfpo")`` on fixed
   tensors on ``--device``; reports that loss and ``objectives.cfpo_loss``'s token mean, and whether
   CUDA is usable at the end (with ``--visible-devices ""`` on a GPU machine it must not be: a CUDA
   initialised by the hook would have kept every GPU visible).

``--check`` exits 1, naming each failure, unless the hook made no CUDA call and imported none of
CUDA_PROBING_MODULES, CFPO matched, and (after ``--visible-devices ""``) CUDA is not usable.
Where flash_attn is not installed, the actor's import runs with tests/gpu_stubs on the path.
Used by tests/integration/test_worker_hook.py (CPU) and by bench/gpu_check.sh (a real GPU, where a
hook that initialised CUDA would freeze the device list).
"""

from __future__ import annotations

import argparse
import collections
import functools
import importlib
import importlib.util
import inspect
import json
import os
import sys
from pathlib import Path

GPU_STUBS = Path(__file__).resolve().parents[1] / "gpu_stubs"

# Modules that call torch.cuda when imported (deepspeed, bitsandbytes via peft), or pull those in.
CUDA_PROBING_MODULES = (
    "openrlhf.models", "openrlhf.trainer", "peft", "bitsandbytes", "deepspeed", "vllm", "flash_attn",
    "transformers", "accelerate",
)


def cuda_probing_modules_imported():
    """The CUDA_PROBING_MODULES now in sys.modules."""
    return [module for module in CUDA_PROBING_MODULES if module in sys.modules]


def count_cuda_calls(torch) -> collections.Counter:
    """Wrap torch.cuda's functions and torch._C's CUDA entry points; return the live call counter."""
    calls: collections.Counter = collections.Counter()

    def counted(owner, name):
        original = getattr(owner, name)

        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            calls[f"{owner.__name__}.{name}"] += 1
            return original(*args, **kwargs)

        setattr(owner, name, wrapper)

    for name, value in list(vars(torch.cuda).items()):
        if inspect.isfunction(value) and value.__module__.startswith("torch.cuda"):
            counted(torch.cuda, name)
    for name in ("_cuda_init", "_cuda_getDeviceCount", "_cuda_setDevice", "_cuda_getDevice"):
        if hasattr(torch._C, name):
            counted(torch._C, name)
    return calls


def run_ray_setup_hook() -> str:
    """Import and call the hook the way ray/_private/runtime_env/setup_hook.py does; return its name."""
    from openrlhf_cfpo.openrlhf_patch import ray_runtime_env

    hook = ray_runtime_env()["worker_process_setup_hook"]
    module_name, function_name = hook.rsplit(".", 1)
    getattr(importlib.import_module(module_name), function_name)()
    return hook


def cfpo_through_policy_loss(policy_loss_cls, device: str):
    """(PolicyLoss("cfpo") loss, objectives.cfpo_loss token mean) on fixed tensors."""
    import torch

    from openrlhf_cfpo.objectives import cfpo_loss

    log_probs = torch.tensor([[0.0, 0.5, -0.5, 0.05]], device=device)
    advantages = torch.tensor([[1.0, 1.0, -1.0, -1.0]], device=device)
    loss, *_ = policy_loss_cls(policy_loss_type="cfpo")(
        log_probs, torch.zeros_like(log_probs), advantages, action_mask=torch.ones_like(log_probs)
    )
    return loss.item(), cfpo_loss(log_probs.exp(), advantages).mean().item()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actor-module", required=True, help="module whose PolicyLoss the actor uses")
    parser.add_argument("--visible-devices", help="CUDA_VISIBLE_DEVICES to set after the hook, as Ray does")
    parser.add_argument("--device", default="cpu", help="device of the CFPO check [cpu]")
    parser.add_argument("--check", action="store_true", help="exit 1 unless every invariant holds")
    args = parser.parse_args(argv)

    import torch

    calls = count_cuda_calls(torch)
    before = cuda_probing_modules_imported()
    hook = run_ray_setup_hook()
    report = {
        "hook": hook,
        "hook_cuda_calls": dict(calls),
        "hook_imported": [module for module in cuda_probing_modules_imported() if module not in before],
    }
    if args.visible_devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = args.visible_devices
    if importlib.util.find_spec("flash_attn") is None:  # CPU, or gpu_check.sh's bare GPU machine
        sys.path.insert(0, str(GPU_STUBS))  # openrlhf.models imports it; the loss never calls it
    policy_loss_cls = importlib.import_module(args.actor_module).PolicyLoss
    report["import_hook_left"] = [type(f).__name__ for f in sys.meta_path if "openrlhf_cfpo" in type(f).__module__]
    report["cfpo_loss"], report["cfpo_expected"] = cfpo_through_policy_loss(policy_loss_cls, args.device)
    try:  # after CUDA_VISIBLE_DEVICES="" only a CUDA initialised earlier (by the hook) still works
        torch.zeros(1, device="cuda")
        report["cuda_usable_after"] = True
    except (AssertionError, RuntimeError):
        report["cuda_usable_after"] = False
    print(json.dumps(report, sort_keys=True))
    if args.check:
        failures = failed_invariants(report, cuda_hidden=args.visible_devices == "")
        print("hook check: " + ("; ".join(failures) if failures else "ok"))
        return 1 if failures else 0
    return 0


def failed_invariants(report: dict, cuda_hidden: bool) -> list:
    """What ``report`` shows to be wrong, one phrase each (empty when the hook is right)."""
    failures = []
    if report["hook_cuda_calls"]:
        failures.append(f"the hook called {report['hook_cuda_calls']}")
    if report["hook_imported"]:
        failures.append(f"the hook imported {report['hook_imported']}")
    if abs(report["cfpo_loss"] - report["cfpo_expected"]) > 1e-6 * max(1.0, abs(report["cfpo_expected"])):
        failures.append(f"PolicyLoss('cfpo') gave {report['cfpo_loss']}, objectives.cfpo_loss {report['cfpo_expected']}")
    if report["import_hook_left"]:
        failures.append(f"the import hook is still installed after firing: {report['import_hook_left']}")
    if cuda_hidden and report["cuda_usable_after"]:
        failures.append("CUDA still usable after CUDA_VISIBLE_DEVICES='': it was initialised before")
    return failures


if __name__ == "__main__":
    sys.exit(main())
