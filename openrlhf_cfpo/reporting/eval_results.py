"""``openrlhf-cfpo eval`` outputs (``results.json``) → {label: {"benchmark.metric": number}}.

A results.json holds nested groups with stable keys (``alpaca_eval.lc_win_rate``,
``openllm.arc``, ``reasoning.math500``, ...); this module flattens them to dotted keys. The label
of a result is the name of the folder that holds its results.json.
"""

from __future__ import annotations

import json
import os
from typing import Dict, List, Sequence

RESULTS_FILE = "results.json"

EvalScores = Dict[str, float]


def flatten_scores(content: Dict[str, object], prefix: str = "") -> EvalScores:
    """Nested groups → ``{"group.metric": float}``; non-numeric leaves are left out."""
    flat: EvalScores = {}
    for key, value in content.items():
        if isinstance(value, dict):
            flat.update(flatten_scores(value, f"{prefix}{key}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[f"{prefix}{key}"] = float(value)
    return flat


def _results_files(path: str) -> List[str]:
    """A results.json itself, a folder holding one, or a folder of per-model folders holding one."""
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        return []
    own = os.path.join(path, RESULTS_FILE)
    if os.path.isfile(own):
        return [own]
    children = (os.path.join(path, name, RESULTS_FILE) for name in sorted(os.listdir(path)))
    return [child for child in children if os.path.isfile(child)]


def label_for_results(path: str) -> str:
    """The run label of a results.json: its folder's name."""
    return os.path.basename(os.path.dirname(os.path.abspath(path)))


def read_eval_results(paths: Sequence[str], notes: List[str]) -> Dict[str, EvalScores]:
    """Scores of every results.json under ``paths`` by label; unreadable files become notes."""
    results: Dict[str, EvalScores] = {}
    sources: Dict[str, str] = {}
    for path in paths:
        files = _results_files(path)
        if not files:
            notes.append(f"{path}: no {RESULTS_FILE} found (--evals takes results.json files or their folders)")
        for file in files:
            try:
                with open(file, encoding="utf-8") as handle:
                    content = json.load(handle)
            except (OSError, json.JSONDecodeError) as err:
                notes.append(f"{file}: skipped, not readable JSON ({err})")
                continue
            if not isinstance(content, dict):
                notes.append(f"{file}: skipped, expected a JSON object of benchmark groups")
                continue
            label = label_for_results(file)
            if label in results:
                notes.append(f"{file}: skipped, label {label!r} already taken by {sources[label]}")
                continue
            results[label], sources[label] = flatten_scores(content), file
    return results
