"""``openrlhf-cfpo report``: training logs and evaluation results → the paper's tables and figures.

``build_report`` writes, under ``out``:

    table1.{md,csv}  table2.{md,csv}  reasoning.{md,csv}  diagnostics.{md,csv}
    figures/*.png    report.md (everything on one page)   report_config.json (inputs, versions, SHA)

A problem with one input (an empty or truncated log, a missing metric, an unreadable file) becomes a
note in report.md and the log; the rest of the report is still produced.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence

from openrlhf_cfpo.reporting.diagnostics import diagnostics_table
from openrlhf_cfpo.reporting.eval_results import EvalScores, read_eval_results
from openrlhf_cfpo.reporting.intervals import BAND_METHOD, seed_band
from openrlhf_cfpo.reporting.run_settings import RunSettings, read_labels_yaml
from openrlhf_cfpo.reporting.tables import build_reasoning_table, build_table1, build_table2
from openrlhf_cfpo.reporting.training_logs import TrainingRun, discover_training_runs, missing_metric_note
from openrlhf_cfpo.runinfo import atomic_write_text, write_run_record

if TYPE_CHECKING:
    from openrlhf_cfpo.reporting.figures import Curve

logger = logging.getLogger(__name__)

# (file stem, title, metrics): Figure 2/4–8 style grids and Figure 3 (response length).
FIGURES = (
    ("training_dynamics", "Training dynamics", ("reward_mean", "accuracy", "clip_ratio", "policy_kl", "entropy")),
    ("reward", "Training reward", ("reward_mean",)),
    ("validation_reward", "Validation reward", ("accuracy",)),
    ("clip_ratio", "Clip ratio", ("clip_ratio",)),
    ("policy_kl", "Policy KL between consecutive policies", ("policy_kl",)),
    ("entropy", "Entropy", ("entropy",)),
    ("response_length", "Response length", ("response_length_mean",)),
)
FIGURE_METRICS = tuple(dict.fromkeys(m for _, _, metrics in FIGURES for m in metrics))


class ReportInputError(ValueError):
    """Bad command-line input; the message names the flag and the fix."""


@dataclass
class ReportInputs:
    runs: Sequence[str] = ()
    evals: Sequence[str] = ()
    labels: Optional[str] = None
    baseline: Optional[str] = None


@dataclass
class ReportResult:
    out: str
    files: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)


def panel_dimension(runs: Sequence[TrainingRun]) -> str:
    """The setting that tells runs apart, one panel per value: iterations, else KL β, else batch
    ratio; "all" (one panel) when none varies."""
    for name in ("iterations", "kl_beta", "batch_ratio"):
        if len({getattr(run.settings, name) for run in runs}) > 1:
            return name
    return "all"


def panel_title(settings: RunSettings, dimension: str) -> str:
    if dimension == "all":
        return "all runs"
    value = getattr(settings, dimension)
    shown = "unknown" if value is None else f"{value:g}"
    return {"iterations": "iterations", "kl_beta": "KL", "batch_ratio": "batch ratio"}[dimension] + f"={shown}"


def seed_curves(runs: Sequence[TrainingRun], metrics: Sequence[str], dimension: str) -> List[Curve]:
    """One curve per run and metric; runs of one group (a lab cell's seeds) become one curve, their
    mean over seeds with the seeds' range as its band (``intervals.seed_band``)."""
    from openrlhf_cfpo.reporting.figures import Curve  # noqa: F811 (matplotlib only when drawing)

    def order(run: TrainingRun) -> tuple:  # panels in numeric order, then objective and label
        value = None if dimension == "all" else getattr(run.settings, dimension)
        return (value is None, value or 0, run.settings.objective or "", run.label)

    groups: Dict[tuple, List[TrainingRun]] = {}
    for run in sorted(runs, key=order):
        groups.setdefault((run.source, run.group), []).append(run)
    curves = []
    for (_, group), members in groups.items():
        first = members[0]
        for metric in metrics:
            series = [run.series[metric] for run in members if metric in run.series]
            if not series:
                continue
            common = dict(objective=first.settings.objective or "unknown", metric=metric,
                          panel=panel_title(first.settings, dimension))
            if len(members) == 1:
                curves.append(Curve(label=first.label, steps=series[0][0], values=series[0][1], **common))
                continue
            steps, mean, low, high = seed_band(series)
            curves.append(Curve(label=f"{group} (mean of {len(series)} seeds)", steps=steps, values=mean,
                                low=low, high=high, **common))
    return curves


def write_figures(runs: Sequence[TrainingRun], figures_dir: str, notes: List[str]) -> List[str]:
    """The FIGURES grids for ``runs``; metrics no run logged are skipped with a note."""
    from openrlhf_cfpo.reporting.figures import plot_metric_grid

    if not runs:
        notes.append("figures skipped: no training runs with metrics")
        return []
    curves = seed_curves(runs, FIGURE_METRICS, panel_dimension(runs))
    for run in runs:
        notes.extend(missing_metric_note(run, m) for m in FIGURE_METRICS if m not in run.series)
    logged = {curve.metric for curve in curves}
    written = []
    for stem, title, metrics in FIGURES:
        path = os.path.join(figures_dir, f"{stem}.png")
        present = [m for m in metrics if m in logged]
        if not present:
            notes.append(f"figure {stem}.png skipped: no run logged {', '.join(metrics)}")
            if os.path.exists(path):  # left by an earlier report into the same folder
                os.remove(path)
            continue
        empty_cells = plot_metric_grid([c for c in curves if c.metric in present], present, path, title=title)
        notes.extend(f"figure {stem}.png: {note}" for note in empty_cells)
        written.append(path)
    return written


def _runs_markdown(runs: Sequence[TrainingRun]) -> str:
    lines = ["## Runs", ""]
    if not runs:
        return "\n".join(lines + ["_No training runs._", ""])
    lines += [
        "| Run | Objective | KL β | Iterations | Batch ratio | Model | Source |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for run in sorted(runs, key=lambda r: r.label):
        s = run.settings
        cells = [run.label, s.objective, s.kl_beta, s.iterations, s.batch_ratio, s.model, run.source]
        shown = ("–" if c is None else f"{c:g}" if isinstance(c, float) else str(c) for c in cells)
        lines.append("| " + " | ".join(shown) + " |")
    return "\n".join(lines) + "\n"


def _apply_labels(
    runs: Sequence[TrainingRun], results: Dict[str, EvalScores], labels: Dict[str, RunSettings], notes: List[str]
) -> Dict[str, RunSettings]:
    """YAML settings over saved ones for runs; settings per evaluation label (YAML, else the
    training run of the same label)."""
    for run in runs:
        if run.label in labels:
            run.settings = run.settings.overridden_by(labels[run.label])
    known = {run.label for run in runs} | set(results)
    unmatched = [label for label in labels if label not in known]
    notes.extend(f"--labels entry {label!r} matches no run or evaluation result" for label in unmatched)
    by_run = {run.label: run.settings for run in runs}
    return {
        label: by_run.get(label, RunSettings()).overridden_by(labels.get(label, RunSettings())) for label in results
    }


def build_report(inputs: ReportInputs, out: str) -> ReportResult:
    """Read every input, write all tables, figures and report.md under ``out``."""
    if not inputs.runs and not inputs.evals:
        raise ReportInputError("nothing to report: give training logs with --runs DIR and/or results with --evals PATH")
    for path in inputs.runs:
        if not os.path.isdir(path):
            raise ReportInputError(f"--runs {path}: no such folder; pass folders that hold training logs")
    for path in inputs.evals:
        if not os.path.exists(path):
            raise ReportInputError(f"--evals {path}: no such file or folder; pass results.json files or their folders")
    result = ReportResult(out=out)
    notes = result.notes
    labels = read_labels_yaml(inputs.labels) if inputs.labels else {}
    runs = discover_training_runs(inputs.runs, notes)
    results = read_eval_results(inputs.evals, notes)
    if inputs.baseline is not None and inputs.baseline not in results:
        found = ", ".join(sorted(results)) or "none"
        raise ReportInputError(
            f"--baseline {inputs.baseline!r} is not among the evaluation labels ({found}); "
            "pass the folder name of the baseline's results.json"
        )
    eval_settings = _apply_labels(runs, results, labels, notes)

    table1 = build_table1(results, inputs.baseline)
    table2 = build_table2(results, inputs.baseline)
    reasoning, reasoning_md = build_reasoning_table(results, eval_settings)
    diagnostics = diagnostics_table(runs)
    markdown_of = {table.name: table.to_markdown() for table in (table1, table2, diagnostics)}
    markdown_of["reasoning"] = reasoning_md
    for table in (table1, table2, reasoning, diagnostics):
        for suffix, text in (("csv", table.to_csv()), ("md", markdown_of[table.name])):
            path = os.path.join(out, f"{table.name}.{suffix}")
            atomic_write_text(path, text)
            result.files.append(path)

    figures_dir = os.path.join(out, "figures")
    os.makedirs(figures_dir, exist_ok=True)
    figures = write_figures(runs, figures_dir, notes)
    result.files += figures

    for note in notes:
        logger.warning("%s", note)
    page = ["# openrlhf-cfpo report", "", _runs_markdown(runs)]
    page += [markdown_of[name] for name in ("table1", "table2", "reasoning", "diagnostics")]
    page += ["## Figures", ""]
    if len({(run.source, run.group) for run in runs}) < len(runs):
        page += [f"Runs that differ only in their seed are drawn as one curve: {BAND_METHOD}.", ""]
    page += [f"![{os.path.basename(f)}](figures/{os.path.basename(f)})\n" for f in figures] or ["_No figures._\n"]
    page += ["## Notes", ""] + ([f"- {note}" for note in notes] or ["_None._"])
    report_path = os.path.join(out, "report.md")
    atomic_write_text(report_path, "\n".join(page) + "\n")
    config_path = os.path.join(out, "report_config.json")
    write_run_record(config_path, {
        "inputs": asdict(inputs),
        "runs": {run.label: {"source": run.source, **asdict(run.settings)} for run in runs},
        "evaluations": sorted(results),
    })
    result.files += [report_path, config_path]
    return result
