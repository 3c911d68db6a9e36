"""Tables and figures from run files (metrics JSONL, summaries); imports no lab or evaluation code.

- ``metrics``: the JSONL metrics writer every run uses and a reader that survives a killed run.
- ``figures``: generic matplotlib plots (Agg backend, PNG): a metric grid in the style of the
  paper's Figure 2 (CFPO solid, other objectives dashed) and a plain line plot (Figure 1).
"""
