"""``openrlhf-cfpo eval``: alignment, capability and reasoning benchmarks after training.

Each benchmark is a module here exposing ``NAME``, ``PROTOCOL`` (the official protocol version it
reproduces) and ``run(ctx: EvalContext) -> dict`` (see ``context.py``).
"""
