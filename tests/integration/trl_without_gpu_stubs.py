"""Import TRL's GRPO modules with tests/gpu_stubs/ out of sight.

TRL 1.16.0 probes for vLLM when ``trl.generation`` is imported (``find_spec("vllm")``, then its
version): the import-only vllm stand-in would pass for an installed vLLM whose version ("N/A") TRL
cannot parse. CPU tests use HF generation, so TRL must see no vLLM; OpenRLHF's tests keep the stand-in.
"""

import sys
from pathlib import Path

GPU_STUBS = Path(__file__).resolve().parents[1] / "gpu_stubs"


def import_trl_grpo() -> None:
    """Import ``trl.trainer.grpo_trainer`` once with the GPU stand-ins hidden; sys.path and
    sys.modules are restored afterwards, so OpenRLHF tests in the same session still find them."""
    if "trl.trainer.grpo_trainer" in sys.modules:
        return
    saved_path = list(sys.path)
    stand_ins = {name: sys.modules.pop(name) for name in list(sys.modules) if name.split(".")[0] == "vllm"}
    sys.path[:] = [entry for entry in sys.path if entry and Path(entry).resolve() != GPU_STUBS]
    try:
        import trl.trainer.grpo_trainer  # noqa: F401
    finally:
        sys.path[:] = saved_path
        sys.modules.update(stand_ins)
