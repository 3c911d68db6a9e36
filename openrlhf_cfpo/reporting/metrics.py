"""Run files: metrics as JSON Lines (one object per line, appended and flushed) and atomic writes.

A run that is killed mid-write leaves at most a truncated last line; ``read_metrics_jsonl`` skips
it with a warning, so a crashed run's metrics stay readable. Whole files (summaries, reports) are
written atomically with ``write_text_atomic`` / ``write_json_atomic``.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Union

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]


def _json_value(value: Any) -> Any:
    """Plain JSON for one metric value: tensors/numpy scalars via ``.item()``, non-finite floats as null."""
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsWriter:
    """Append metric records to a JSONL file, one object per line, flushed after each write.

    Use as a context manager or call ``close()``. Non-finite floats are written as ``null`` (JSON
    has no NaN); tensor and numpy scalars are converted with ``.item()``.
    """

    def __init__(self, path: PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")

    def write(self, record: Mapping[str, Any]) -> None:
        line = json.dumps({key: _json_value(value) for key, value in record.items()}, allow_nan=False)
        self._file.write(line + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "MetricsWriter":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def read_metrics_jsonl(path: PathLike) -> List[Dict[str, Any]]:
    """All records of a metrics JSONL file, in order.

    A last line that is not valid JSON (a run killed mid-write) is skipped with a logged warning;
    an invalid line anywhere else raises ValueError naming the line, since that is corruption.
    """
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            if number == len(lines):
                logger.warning("%s: skipping truncated last line %d (%s)", path, number, err)
                break
            raise ValueError(f"{path}:{number}: not a JSON object ({err}); the metrics file is corrupt") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{number}: expected a JSON object per line, got {type(record).__name__}")
        records.append(record)
    return records


def write_text_atomic(path: PathLike, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json_atomic(path: PathLike, data: Any) -> None:
    """``data`` as indented JSON (non-finite floats as null), written atomically."""
    write_text_atomic(path, json.dumps(_json_tree(data), indent=2, allow_nan=False) + "\n")


def _json_tree(data: Any) -> Any:
    if isinstance(data, dict):
        return {key: _json_tree(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [_json_tree(value) for value in data]
    return _json_value(data)
