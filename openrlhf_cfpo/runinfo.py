"""Atomic file writes, the provenance record every command writes next to its results, and the
installed-version check of the frameworks we patch.

A run record is ``{"config": <resolved configuration>, "versions": {package: version},
"git_sha": <this checkout's commit or null>, "python", "platform", "command": argv,
"started_utc": ISO time}``. Imports nothing of ours and
nothing heavy, so every layer (cli, lab, evaluation, reporting) may use it.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, Optional

RUN_RECORD_PACKAGES = (
    "openrlhf-cfpo", "openrlhf", "torch", "transformers", "deepspeed", "ray", "vllm", "lm-eval",
    "alpaca-eval", "math-verify", "openai", "nltk", "datasets", "tensorboard", "trl", "verl",
)


@contextlib.contextmanager
def atomic_output(path: os.PathLike | str) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed onto ``path`` when the block succeeds,
    removed when it fails. Readers never see a half-written file; a crash keeps the previous one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_folder(path: os.PathLike | str) -> Iterator[Path]:
    """A fresh temporary folder beside ``path`` to fill; renamed onto ``path`` when the block succeeds
    (a cache entry appears whole or not at all), removed when it fails or when another process put a
    ``path`` there first (same key, so the same contents)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError:
        if not path.is_dir():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_text(path: os.PathLike | str, text: str) -> None:
    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def json_ready(data: Any) -> Any:
    """``data`` with tensor/numpy scalars as Python numbers and non-finite floats as None (JSON null)."""
    if isinstance(data, dict):
        return {key: json_ready(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [json_ready(value) for value in data]
    if getattr(data, "shape", None) == () and callable(getattr(data, "item", None)):
        data = data.item()
    if isinstance(data, float) and not math.isfinite(data):
        return None
    return data


def atomic_write_json(path: os.PathLike | str, obj: Any) -> None:
    """``obj`` as indented JSON (non-finite floats as null), written atomically."""
    text = json.dumps(json_ready(obj), indent=2, ensure_ascii=False, allow_nan=False, default=str)
    atomic_write_text(path, text + "\n")


def package_versions(names: Iterable[str] = RUN_RECORD_PACKAGES) -> Dict[str, Optional[str]]:
    """Installed version of each package, None where it is not installed."""
    versions: Dict[str, Optional[str]] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def require_version(distribution: str, name: str, supported: str, missing_hint: str) -> str:
    """Return the installed version of ``distribution``; raise RuntimeError unless it is ``supported``
    (the version a patch was written for). ``name`` is how messages call it, ``missing_hint`` what
    to do when it is not installed."""
    try:
        version = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise RuntimeError(f"{name} is not installed; {missing_hint}") from None
    if version != supported:
        raise RuntimeError(
            f"openrlhf-cfpo patches {name} {supported} only, found {distribution} {version}; "
            f"install {distribution}=={supported}"
        )
    return version


def git_sha() -> Optional[str]:
    """The commit of the checkout this package runs from, None outside a git checkout."""
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def write_run_record(path: os.PathLike | str, config: Dict[str, Any]) -> Path:
    """Write the run record (config, versions, git SHA, Python, platform, command, start time) to ``path``."""
    atomic_write_json(path, {
        "config": dict(config),
        "versions": package_versions(),
        "git_sha": git_sha(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "command": sys.argv,
        "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })
    return Path(path)
