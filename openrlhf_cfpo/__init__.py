"""openrlhf-cfpo: Clipping-Free Policy Optimization for OpenRLHF 0.11.2, TRL 1.16.0 and verl 0.9.1.

``patch_openrlhf``, ``ray_runtime_env`` and ``patch_trl`` are loaded on first use, so that importing
the package (and ``openrlhf-cfpo --help``) stays fast.
"""

__version__ = "0.1.0"
__all__ = ["patch_openrlhf", "ray_runtime_env", "patch_trl", "__version__"]


def __getattr__(name):
    if name in ("patch_openrlhf", "ray_runtime_env"):
        from openrlhf_cfpo import openrlhf_patch

        return getattr(openrlhf_patch, name)
    if name == "patch_trl":
        from openrlhf_cfpo import trl_patch

        return trl_patch.patch_trl
    raise AttributeError(f"module 'openrlhf_cfpo' has no attribute {name!r}")
