"""Prompts shared by training recipes and evaluation, so that both use the same text."""

# The RLVR system prompt (training chat template and the reasoning evaluation). The paper's
# appendix B.1 text could not be retrieved here; this is the standard Qwen2.5-Math instruction.
MATH_SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."
