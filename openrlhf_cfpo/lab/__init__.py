"""The CPU lab: "clipping collapses under sample reuse, CFPO stays stable" at toy scale.

A tiny Llama learns multi-digit addition by RL with a verifiable reward after a short supervised
warm-up; a sweep trains it with each objective of ``openrlhf_cfpo.objectives`` at several
sample-reuse settings and writes metrics, a summary, figures and a report.

    config   hyper-parameters (``LabConfig``), validation, the `--quick` preset
    task     the addition task, its vocabulary and reward
    model    the tiny policy: build, sample, log-probs, held-out accuracy
    warmup   supervised warm-up with an on-disk cache
    loop     one cell: the RL loop
    sweep    every cell of a sweep into one output folder, in worker processes, resumable
    workers  the worker processes' set-up (light: runs before torch is imported)
    report   summary.json (with intervals over seeds), report.md and the figures
"""
