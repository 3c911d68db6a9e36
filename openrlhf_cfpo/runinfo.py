"""Atomic file writes and the provenance record every command writes next to its results.

A run record is ``{"config": <resolved configuration>, "versions": {package: version},
"git_sha": <this checkout's commit or null>, "command": argv, "started_utc": ISO time}``. Imports nothing of ours and
nothing heavy, so every layer (cli, lab, evaluation, reporting) may use it.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Iterable, Optional

RUN_RECORD_PACKAGES = (
    "openrlhf-cfpo", "openrlhf", "torch", "transformers", "deepspeed", "ray", "vllm", "lm-eval",
    "alpaca-eval", "math-verify", "openai", "nltk", "datasets", "tensorboard",
)


def atomic_write_text(path: os.PathLike | str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename, so a
    reader never sees a half-written file and a crash leaves the previous version intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: os.PathLike | str, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def package_versions(names: Iterable[str] = RUN_RECORD_PACKAGES) -> Dict[str, Optional[str]]:
    """Installed version of each package, None where it is not installed."""
    versions: Dict[str, Optional[str]] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_sha() -> Optional[str]:
    """The commit of the checkout this package runs from, None outside a git checkout."""
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def write_run_record(path: os.PathLike | str, config: Dict[str, Any]) -> Path:
    """Write the run record (config, package versions, git SHA, command line, start time) to ``path``."""
    atomic_write_json(path, {
        "config": dict(config),
        "versions": package_versions(),
        "git_sha": git_sha(),
        "command": sys.argv,
        "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })
    return Path(path)
