"""Turn training logs and evaluation results into the paper's tables and figures.

Reads OpenRLHF tensorboard logs (--logger.tensorboard_dir), wandb offline runs and the lab's
metrics.jsonl under each --runs folder, and `openrlhf-cfpo eval` results.json files. Writes
OUT/table1.{md,csv} (alignment), OUT/table2.{md,csv} (OpenLLM and alignment tax vs --baseline),
OUT/reasoning.{md,csv} (Tables 5-10), OUT/diagnostics.{md,csv}, OUT/figures/*.png and OUT/report.md.
A run label is its folder name; what it stands for comes from the run's saved OpenRLHF arguments,
else from --labels. See docs/reports.md.
"""

from __future__ import annotations

import sys

HELP = "tables (Table 1, 2, 5-10) and figures (Figures 2-8) from training logs and eval results"


def add_arguments(parser) -> None:
    parser.add_argument(
        "--runs", nargs="+", default=[], metavar="DIR",
        help="folders holding training logs (tensorboard event files, wandb offline runs, metrics.jsonl)",
    )
    parser.add_argument(
        "--evals", nargs="+", default=[], metavar="PATH",
        help="results.json files of `openrlhf-cfpo eval`, or folders holding them (label = folder name)",
    )
    parser.add_argument(
        "--labels", metavar="YAML",
        help="run label -> objective, kl_beta, iterations, batch_ratio, model (overrides saved arguments)",
    )
    parser.add_argument(
        "--baseline", metavar="LABEL", help="the evaluation label the alignment tax is measured against"
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")


def run(args, passthrough) -> int:
    from openrlhf_cfpo.reporting.report import ReportInputError, ReportInputs, build_report
    from openrlhf_cfpo.reporting.run_settings import LabelsFileError

    inputs = ReportInputs(runs=args.runs, evals=args.evals, labels=args.labels, baseline=args.baseline)
    try:
        result = build_report(inputs, args.out)
    except (ReportInputError, LabelsFileError) as err:
        print(f"openrlhf-cfpo report: error: {err}", file=sys.stderr)
        return 2
    print(f"report written to {result.out}/report.md ({len(result.files)} files, {len(result.notes)} notes)")
    return 0
