"""Evaluation outputs: ``OUT/results.json``, ``OUT/results.md``, ``OUT/run_config.json``, per-benchmark reports.

``results.json`` maps each benchmark NAME to its metrics under stable keys (``ifeval.prompt_strict``,
``openllm.average``, ``reasoning.math500``, ...) plus ``protocol`` (the official protocol version
reproduced) and, where some tasks could not run, ``missing`` (task names) and ``note``. A metric
that could not be computed is ``null``. The file is rewritten atomically after each benchmark, so
an interrupted run keeps what finished.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
RUN_CONFIG_JSON = "run_config.json"

PACKAGES = (
    "openrlhf-cfpo",
    "torch",
    "transformers",
    "vllm",
    "lm-eval",
    "alpaca-eval",
    "math-verify",
    "openai",
    "nltk",
    "datasets",
)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_json_atomic(path: Path, content: Any) -> None:
    write_text_atomic(path, json.dumps(content, indent=2, ensure_ascii=False) + "\n")


def package_versions(names: Iterable[str] = PACKAGES) -> Dict[str, Optional[str]]:
    """Installed version of each distribution (None when not installed)."""
    versions: Dict[str, Optional[str]] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_sha() -> Optional[str]:
    """Commit of the source checkout this package runs from (None outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def write_run_config(out_dir: Path, config: Mapping[str, Any]) -> Path:
    """``OUT/run_config.json``: the resolved configuration, package versions and git SHA."""
    path = Path(out_dir) / RUN_CONFIG_JSON
    write_json_atomic(
        path,
        {
            "config": dict(config),
            "versions": package_versions(),
            "git_sha": git_sha(),
            "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    )
    return path


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
    lines += ["| metric | value |", "|---|---|"]
    lines += [f"| {key} | {_format(value)} |" for key, value in entry.items() if key not in ("protocol", "note")]
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
    write_json_atomic(out_dir / RESULTS_JSON, results)
    write_text_atomic(
        out_dir / RESULTS_MD,
        "# Evaluation results\n\n" + "\n".join(metrics_markdown(n, e) for n, e in results.items()),
    )
    own_report = out_dir / name / RESULTS_MD
    if not own_report.exists():
        write_text_atomic(own_report, metrics_markdown(name, entry))
    return entry
