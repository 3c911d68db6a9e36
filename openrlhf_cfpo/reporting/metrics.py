"""Run metrics as JSON Lines: one object per line, appended and flushed.

A run that is killed mid-write leaves at most a truncated last line; ``read_metrics_jsonl`` skips
it with a warning, so a crashed run's metrics stay readable. Whole files (summaries, reports) are
written atomically with ``openrlhf_cfpo.runinfo``. ``write_tensorboard`` turns finished records into
TensorBoard event files, so `tensorboard --logdir` shows them as it shows OpenRLHF runs.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Union

from openrlhf_cfpo.runinfo import json_ready

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]


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
        line = json.dumps(json_ready(record), allow_nan=False)
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


# Tags of the lab's own event files start with this, so no reader takes them for OpenRLHF's metrics.
LAB_TAG_PREFIX = "lab/"


def write_tensorboard(folder: PathLike, records: Sequence[Mapping[str, Any]], identity: Sequence[str],
                      step_key: str = "step") -> None:
    """One event file in ``folder`` with every numeric field of ``records`` (bar ``identity`` and
    ``step_key``) as the scalar ``lab/<field>`` at ``record[step_key]``. Written from finished records
    only (once per run, so a resumed run repeats no step); the file holds wall times and the host name,
    so it is never part of a byte-identity comparison."""
    from torch.utils.tensorboard import SummaryWriter

    skip = set(identity) | {step_key}
    with SummaryWriter(log_dir=str(folder)) as writer:
        for record in records:
            for key, value in record.items():
                if key not in skip and isinstance(value, (int, float)) and not isinstance(value, bool):
                    writer.add_scalar(LAB_TAG_PREFIX + key, value, global_step=int(record[step_key]))
