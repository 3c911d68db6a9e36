"""``openrlhf-cfpo eval``: alignment, capability and reasoning benchmarks after training.

Each benchmark is a module here exposing ``NAME``, ``PROTOCOL`` (the official protocol version it
reproduces) and ``run(ctx: EvalContext) -> dict`` (see ``context.py``): its metrics, plus
``protocol`` where this run's data made the protocol differ from ``PROTOCOL``. A module whose
benchmark loads the model itself (lm-eval) sets ``OWN_MODEL = True``: it runs after the
generation engine is released. ``registry.py`` maps names to modules, ``generation.py`` holds
the backends, ``answers.py`` the saved answers of judged benchmarks, ``data.py`` the benchmark
files and ``results.py`` the outputs.
"""
