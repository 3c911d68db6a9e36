"""The paper's tables from evaluation scores: Table 1 (alignment), Table 2 (OpenLLM capability and
alignment tax), Tables 5–10 (reasoning benchmarks × objective × iterations).

Every table is one row per model (run label) with ``model`` first and lower-snake columns; it is
written as CSV (numbers at full precision, empty cells for missing values) and markdown (numbers
rounded for reading, one precision per column: 3 decimals when its largest value is below 10, 2
below 100, else 1).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from openrlhf_cfpo.reporting.eval_results import EvalScores
from openrlhf_cfpo.reporting.run_settings import RunSettings

Cell = Optional[object]

# (column, results.json key, markdown header)
TABLE1_SCORES: Tuple[Tuple[str, str, str], ...] = (
    ("arena_hard", "arena_hard.score", "Arena-Hard"),
    ("arena_hard_ci_low", "arena_hard.ci_low", "AH CI low"),
    ("arena_hard_ci_high", "arena_hard.ci_high", "AH CI high"),
    ("alpaca_eval_lc", "alpaca_eval.lc_win_rate", "AlpacaEval LC"),
    ("alpaca_eval_wr", "alpaca_eval.win_rate", "AlpacaEval WR"),
    ("mt_bench", "mt_bench.score", "MT-Bench"),
    ("ifeval_prompt_strict", "ifeval.prompt_strict", "IFEval prompt strict"),
    ("ifeval_prompt_loose", "ifeval.prompt_loose", "IFEval prompt loose"),
    ("ifeval_inst_strict", "ifeval.inst_strict", "IFEval inst strict"),
    ("ifeval_inst_loose", "ifeval.inst_loose", "IFEval inst loose"),
    ("avg_length", "alpaca_eval.avg_length", "Avg length"),
)
OPENLLM_TASKS: Tuple[Tuple[str, str], ...] = (
    ("arc", "ARC"),
    ("hellaswag", "HellaSwag"),
    ("mmlu", "MMLU"),
    ("truthfulqa", "TruthfulQA"),
    ("winogrande", "Winogrande"),
    ("gsm8k", "GSM8K"),
)
REASONING_BENCHMARKS: Tuple[Tuple[str, str], ...] = (
    ("math500", "MATH-500"),
    ("gsm8k", "GSM8K"),
    ("aime24", "AIME24"),
    ("gpqa_diamond", "GPQA-Diamond"),
)


@dataclass
class Table:
    """Rows keyed by lower-snake column names; ``headers`` are the markdown titles."""

    name: str
    title: str
    columns: List[str]
    headers: List[str]
    rows: List[Dict[str, Cell]] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self.columns)
        for row in self.rows:
            writer.writerow([csv_cell(row.get(column)) for column in self.columns])
        return buffer.getvalue()

    def to_markdown(self) -> str:
        lines = [f"### {self.title}", ""]
        if not self.rows:
            lines.append("_No rows: no evaluation results with these benchmarks._")
        else:
            lines.append("| " + " | ".join(self.headers) + " |")
            lines.append("|" + "|".join(["---"] + ["---:"] * (len(self.headers) - 1)) + "|")
            decimals = {c: column_decimals([row.get(c) for row in self.rows]) for c in self.columns}
            for row in self.rows:
                lines.append("| " + " | ".join(markdown_cell(row.get(c), decimals[c]) for c in self.columns) + " |")
        if self.notes:
            lines += [""] + [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"


def csv_cell(value: Cell) -> str:
    """Full precision (shortest repr that round-trips); empty for missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def column_decimals(values: Sequence[Cell]) -> int:
    """Decimals for a markdown column, from its largest magnitude: 3 below 10, 2 below 100, else 1."""
    numbers = [abs(v) for v in values if isinstance(v, float) and not math.isnan(v)]
    largest = max(numbers, default=0.0)
    return 3 if largest < 10 else 2 if largest < 100 else 1


def markdown_cell(value: Cell, decimals: int) -> str:
    """A float with ``decimals`` decimals, other values as text, "–" if missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{decimals}f}"
    return str(value)


def _ordered_labels(labels, baseline: Optional[str]) -> List[str]:
    ordered = sorted(labels)
    if baseline in ordered:
        ordered.remove(baseline)
        ordered.insert(0, baseline)
    return ordered


def build_table1(results: Mapping[str, EvalScores], baseline: Optional[str] = None) -> Table:
    """Table 1 style: alignment benchmarks, the LC−WR gap (AlpacaEval length-controlled minus raw
    win rate; the paper's verbosity signal) and the average output length."""
    columns = ["model", *(c for c, _, _ in TABLE1_SCORES[:5]), "lc_wr_gap", *(c for c, _, _ in TABLE1_SCORES[5:])]
    header_of = {c: h for c, _, h in TABLE1_SCORES}
    header_of.update(model="Model", lc_wr_gap="LC−WR")
    table = Table("table1", "Table 1: alignment benchmarks", columns, [header_of[c] for c in columns])
    keys = {key for _, key, _ in TABLE1_SCORES}
    for label in _ordered_labels([l for l, s in results.items() if keys & set(s)], baseline):
        scores = results[label]
        row: Dict[str, Cell] = {"model": label}
        row.update({column: scores.get(key) for column, key, _ in TABLE1_SCORES})
        if row["alpaca_eval_lc"] is not None and row["alpaca_eval_wr"] is not None:
            row["lc_wr_gap"] = row["alpaca_eval_lc"] - row["alpaca_eval_wr"]
        table.rows.append(row)
    return table


def openllm_average(scores: EvalScores) -> Optional[float]:
    """Mean of the six OpenLLM tasks; None unless all six are present."""
    values = [scores.get(f"openllm.{task}") for task, _ in OPENLLM_TASKS]
    return None if any(v is None for v in values) else sum(values) / len(values)


def alignment_tax_pct(average: float, baseline_average: float) -> float:
    """Relative drop of the OpenLLM average from the baseline's, in percent (positive = worse)."""
    return (baseline_average - average) / baseline_average * 100.0


def build_table2(results: Mapping[str, EvalScores], baseline: Optional[str] = None) -> Table:
    """Table 2 style: the six OpenLLM tasks, their average (recomputed from the six) and the
    alignment tax relative to ``baseline`` (empty for the baseline itself)."""
    columns = ["model", *(t for t, _ in OPENLLM_TASKS), "average", "alignment_tax_pct"]
    headers = ["Model", *(h for _, h in OPENLLM_TASKS), "Avg", "Alignment tax (%)"]
    table = Table("table2", "Table 2: OpenLLM capability and alignment tax", columns, headers)
    labels = [l for l, s in results.items() if any(k.startswith("openllm.") for k in s)]
    baseline_average = openllm_average(results[baseline]) if baseline in labels else None
    if baseline is None:
        table.notes.append("alignment tax left empty: no --baseline given")
    elif baseline not in labels:
        table.notes.append(f"alignment tax left empty: baseline {baseline!r} has no OpenLLM results")
    elif baseline_average is None:
        table.notes.append(f"alignment tax left empty: baseline {baseline!r} lacks some of the six tasks")
    for label in _ordered_labels(labels, baseline):
        scores = results[label]
        row: Dict[str, Cell] = {"model": label}
        row.update({task: scores.get(f"openllm.{task}") for task, _ in OPENLLM_TASKS})
        row["average"] = openllm_average(scores)
        if row["average"] is None:
            missing = [t for t, _ in OPENLLM_TASKS if row[t] is None]
            table.notes.append(f"{label}: average left empty, missing {', '.join(missing)}")
        elif baseline_average is not None and label != baseline:
            row["alignment_tax_pct"] = alignment_tax_pct(row["average"], baseline_average)
        table.rows.append(row)
    return table


def _grid_column(settings: RunSettings, label: str, varying_ratio: bool) -> str:
    if settings.objective is None or settings.iterations is None:
        return label
    column = f"{settings.objective} it={settings.iterations}"
    if varying_ratio and settings.batch_ratio is not None:
        column += f" br={settings.batch_ratio:g}"
    return column


def build_reasoning_table(
    results: Mapping[str, EvalScores], settings: Mapping[str, RunSettings]
) -> Tuple[Table, str]:
    """Tables 5–10 style. Returns the per-model table (CSV) and its markdown, which shows one
    benchmark × (objective, iterations) grid per base model, as the paper does per model size."""
    columns = ["model", "base_model", "objective", "iterations", "batch_ratio"]
    columns += [b for b, _ in REASONING_BENCHMARKS] + ["average"]
    headers = ["Model", "Base model", "Objective", "Iterations", "Batch ratio"]
    headers += [h for _, h in REASONING_BENCHMARKS] + ["Avg"]
    table = Table("reasoning", "Tables 5–10: reasoning benchmarks", columns, headers)
    labels = [l for l, s in results.items() if any(k.startswith("reasoning.") for k in s)]

    def order(label):
        s = settings.get(label, RunSettings())
        return (s.model or "", s.objective or "", s.iterations or 0, s.batch_ratio or 0.0, label)

    for label in sorted(labels, key=order):
        s = settings.get(label, RunSettings())
        row: Dict[str, Cell] = {
            "model": label,
            "base_model": s.model,
            "objective": s.objective,
            "iterations": s.iterations,
            "batch_ratio": s.batch_ratio,
        }
        row.update({b: results[label].get(f"reasoning.{b}") for b, _ in REASONING_BENCHMARKS})
        values = [row[b] for b, _ in REASONING_BENCHMARKS]
        row["average"] = None if any(v is None for v in values) else sum(values) / len(values)
        table.rows.append(row)
        if s.objective is None or s.iterations is None:
            table.notes.append(f"{label}: objective/iterations unknown (give them in --labels); shown by label")
    return table, _reasoning_grids(table)


def _reasoning_grids(table: Table) -> str:
    lines = [f"### {table.title}", ""]
    if not table.rows:
        lines.append("_No rows: no evaluation results with reasoning benchmarks._")
    groups: Dict[str, List[Dict[str, Cell]]] = {}
    for row in table.rows:
        groups.setdefault(row["base_model"] or "model unknown", []).append(row)
    for base_model, rows in groups.items():
        varying_ratio = len({r["batch_ratio"] for r in rows}) > 1
        names = [
            _grid_column(
                RunSettings(objective=r["objective"], iterations=r["iterations"], batch_ratio=r["batch_ratio"]),
                r["model"],
                varying_ratio,
            )
            for r in rows
        ]
        lines += [f"**{base_model}**", "", "| Benchmark | " + " | ".join(names) + " |"]
        lines.append("|---|" + "---:|" * len(names))
        for key, header in [*REASONING_BENCHMARKS, ("average", "Avg")]:
            decimals = column_decimals([r[key] for r in rows])
            lines.append(f"| {header} | " + " | ".join(markdown_cell(r[key], decimals) for r in rows) + " |")
        lines.append("")
    lines.extend(f"- {note}" for note in table.notes)
    return "\n".join(lines) + "\n"
