"""``openrlhf-cfpo eval``: alignment, capability and reasoning benchmarks after training.

Each benchmark is a module here exposing ``NAME``, ``PROTOCOL`` (the official protocol version it
reproduces) and ``run(ctx: EvalContext) -> dict`` (see ``context.py``); ``registry.py`` maps
names to modules, ``generation.py`` holds the backends, ``data.py`` the benchmark files and
``results.py`` the outputs.
"""
