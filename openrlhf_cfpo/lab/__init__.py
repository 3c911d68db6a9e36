"""The CPU lab: the paper's two claims at toy scale, each a sweep over seeds with paired intervals.

Setting rlvr ("clipping collapses under sample reuse, CFPO stays stable"): a tiny Llama learns
multi-digit addition by RL with a verifiable reward after a short supervised warm-up, with each
objective of ``openrlhf_cfpo.objectives`` at several sample-reuse settings. Setting rlhf (RLOO's
verbosity exploitation and alignment tax, Tables 1-2 and Figure 3): an SFT policy trained by RLOO
against a learned reward model with a length bias.

    config   hyper-parameters (``LabConfig``), validation, the `--quick` preset
    task     the addition task, its vocabulary and reward
    model    the tiny policy: build, sample, log-probs, held-out accuracy
    warmup   supervised warm-up with an on-disk cache
    loop     one cell: the RL loop
    sweep    every cell of a sweep into one output folder, in worker processes, resumable
    workers  the worker processes' set-up (light: runs before torch is imported)
    report   summary.json (with intervals over seeds), report.md and the figures
    engine   many tiny Llamas (or reward models) stacked in one batched model, per-model AdamW
    rlhf_world     the RLHF toy world: prompts, gold preference, length-biased annotator, data
    rlhf_formulas  OpenRLHF 0.11.2's pairwise loss, reward normalization and RLOO with KL in the reward
    rlhf_config    the RLHF setting's hyper-parameters (``RLHFConfig``)
    rlhf_loop      SFT policy and reward model per seed, RL of a stack of cells, evaluation
    rlhf_sweep     the RLHF sweep: one job per seed, cached worlds, resumable
    rlhf_report    its summary.json, report.md (Table 1/2 analogues, verdict) and Figure 3
"""
