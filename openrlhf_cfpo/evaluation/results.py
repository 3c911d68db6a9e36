"""Evaluation outputs: ``OUT/results.json``, ``OUT/results.md``, ``OUT/run_config.json``, per-benchmark reports.

``results.json`` maps each benchmark NAME to its metrics under stable keys (``ifeval.prompt_strict``,
``openllm.average``, ``reasoning.math500``, ...) plus ``protocol`` (the official protocol version
reproduced), ``judge`` (a judged benchmark's judge model) and, where some tasks could not run,
``missing`` (task names) and ``note``. A metric that could not be computed is ``null``. The file is rewritten atomically after each benchmark, so
an interrupted run keeps what finished.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Mapping

from openrlhf_cfpo.runinfo import atomic_write_json, atomic_write_text, write_run_record

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
RUN_CONFIG_JSON = "run_config.json"


def write_run_config(out_dir: Path, config: Mapping[str, Any]) -> Path:
    """``OUT/run_config.json``: the resolved configuration, package versions and git SHA."""
    return write_run_record(Path(out_dir) / RUN_CONFIG_JSON, dict(config))


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if value is None:
        return "—"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return str(value)


def metrics_markdown(name: str, entry: Mapping[str, Any]) -> str:
    """One benchmark's entry of results.json as a markdown section."""
    lines = [f"## {name}", ""]
    if entry.get("protocol"):
        lines += [f"Protocol: {entry['protocol']}", ""]
    if entry.get("judge"):
        lines += [f"Judge: {entry['judge']}", ""]
    lines += ["| metric | value |", "|---|---|"]
    lines += [f"| {key} | {_format(value)} |" for key, value in entry.items() if key not in ("protocol", "judge", "note")]
    if entry.get("note"):
        lines += ["", f"Note: {entry['note']}"]
    return "\n".join(lines) + "\n"


def read_results(out_dir: Path) -> Dict[str, Dict[str, Any]]:
    path = Path(out_dir) / RESULTS_JSON
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def record_results(out_dir: Path, name: str, metrics: Mapping[str, Any], protocol: str) -> Dict[str, Any]:
    """Add benchmark ``name`` to ``OUT/results.json`` and ``OUT/results.md``; return its entry.

    Also writes ``OUT/NAME/results.md`` unless the benchmark wrote its own.
    """
    out_dir = Path(out_dir)
    entry = {**metrics, "protocol": protocol}
    results = read_results(out_dir)
    results[name] = entry
    atomic_write_json(out_dir / RESULTS_JSON, results)
    atomic_write_text(
        out_dir / RESULTS_MD,
        "# Evaluation results\n\n" + "\n".join(metrics_markdown(n, e) for n, e in results.items()),
    )
    own_report = out_dir / name / RESULTS_MD
    if not own_report.exists():
        atomic_write_text(own_report, metrics_markdown(name, entry))
    return entry
