"""CPU test stand-in for vllm (see tests/gpu_stubs/README.md)."""
from _unavailable import unavailable

SamplingParams = unavailable("vllm.SamplingParams")
