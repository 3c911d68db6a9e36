"""CPU test stand-in for flash_attn (see tests/gpu_stubs/README.md)."""
