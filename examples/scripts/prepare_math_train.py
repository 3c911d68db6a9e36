"""Write the MATH train split as OpenRLHF chat prompts carrying the RLVR system prompt.

    python examples/scripts/prepare_math_train.py --source DigitalLearningGmbH/MATH-lighteval \
        --system-prompt "$SYSTEM_PROMPT" --output data/math_train.jsonl

--source is a Hugging Face dataset id (its "train" split) or a local .jsonl/.json/.parquet file with
the MATH fields "problem" and "solution" (e.g. ../shared/benchmarks/math_train/train.jsonl).
Each output line is {"prompt": [system message, user message = problem], "solution": solution}:
train with ``--data.input_key prompt --data.apply_chat_template --data.label_key solution``.
OpenRLHF's prompt data has no system-prompt option, hence this file. Written atomically.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterable, List

if TYPE_CHECKING:
    import datasets

logger = logging.getLogger(__name__)
LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}


def chat_record(problem: str, solution: str, system_prompt: str) -> Dict[str, object]:
    """One training prompt: the system prompt, the problem as the user turn, the solution as label."""
    messages: List[Dict[str, str]] = [
        {"role": "system", "content": system_prompt},
        {"role": "user", "content": problem},
    ]
    return {"prompt": messages, "solution": solution}


def load_math_train(source: str) -> "datasets.Dataset":
    """MATH train rows (need "problem" and "solution") from a local file or a Hugging Face dataset id."""
    from datasets import load_dataset

    suffix = Path(source).suffix.lower()
    if suffix in LOCAL_FORMATS:
        return load_dataset(LOCAL_FORMATS[suffix], data_files=source, split="train")
    return load_dataset(source, split="train")


def write_jsonl_atomic(records: Iterable[Dict[str, object]], output: Path) -> int:
    output.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with tempfile.NamedTemporaryFile("w", dir=output.parent, suffix=".tmp", delete=False, encoding="utf-8") as tmp:
        for record in records:
            tmp.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    os.replace(tmp.name, output)
    return count


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="Hugging Face dataset id or local .jsonl/.json/.parquet")
    parser.add_argument("--system-prompt", required=True, help="system message put before every problem")
    parser.add_argument("--output", required=True, type=Path, help="output .jsonl")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    rows = load_math_train(args.source)
    missing = {"problem", "solution"} - set(rows.column_names)
    if missing:
        parser.error(f"--source {args.source} lacks the MATH column(s) {sorted(missing)}; pass the MATH train split")
    records = (chat_record(row["problem"], row["solution"], args.system_prompt) for row in rows)
    count = write_jsonl_atomic(records, args.output)
    logger.info("wrote %d MATH train prompts to %s", count, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
