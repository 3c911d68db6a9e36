"""Write MATH problems as OpenRLHF chat prompts carrying the RLVR system prompt.

    python examples/scripts/prepare_math_prompts.py --source DigitalLearningGmbH/MATH-lighteval \
        --system-prompt "$SYSTEM_PROMPT" --output data/math_train.jsonl
    python examples/scripts/prepare_math_prompts.py --source HuggingFaceH4/MATH-500 --split test \
        --system-prompt "$SYSTEM_PROMPT" --output data/math500.jsonl

--source is a Hugging Face dataset id (its --split, default "train") or a local .jsonl/.json/.parquet
file with the MATH fields "problem" and "solution" (e.g. math_train/train.jsonl of
`openrlhf-cfpo data fetch --benchmarks math_train`).
Each output line is {"prompt": [system message, user message = problem], "solution": solution}:
train with ``--data.input_key prompt --data.apply_chat_template --data.label_key solution`` (and
validate with ``--eval.dataset`` on such a file). OpenRLHF's prompt data has no system-prompt
option, hence this file. Written atomically.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterable, List

from openrlhf_cfpo.runinfo import atomic_output

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


def load_math_rows(source: str, split: str) -> "datasets.Dataset":
    """MATH rows (need "problem" and "solution") from a local file or a Hugging Face dataset's ``split``."""
    from datasets import load_dataset

    suffix = Path(source).suffix.lower()
    if suffix in LOCAL_FORMATS:
        return load_dataset(LOCAL_FORMATS[suffix], data_files=source, split="train")  # a file is one split
    return load_dataset(source, split=split)


def write_jsonl_atomic(records: Iterable[Dict[str, object]], output: Path) -> int:
    """Write one JSON object per line; readers never see a partial file. Returns the line count."""
    count = 0
    with atomic_output(output) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count


def parse_math_source(argv: List[str] | None, description: str, output_help: str):
    """The prepare scripts' command line (--source, --split, --system-prompt, --output) and the MATH
    rows of --source; exits with a message naming --source when it lacks the MATH columns."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--source", required=True, help="Hugging Face dataset id or local .jsonl/.json/.parquet")
    parser.add_argument("--split", default="train", help="split of a Hugging Face --source (default: train)")
    parser.add_argument("--system-prompt", required=True, help="system message put before every problem")
    parser.add_argument("--output", required=True, type=Path, help=output_help)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    rows = load_math_rows(args.source, args.split)
    missing = {"problem", "solution"} - set(rows.column_names)
    if missing:
        parser.error(f"--source {args.source} lacks the MATH column(s) {sorted(missing)}; pass MATH problems")
    return args, rows


def main(argv: List[str] | None = None) -> int:
    args, rows = parse_math_source(argv, __doc__.splitlines()[0], "output .jsonl")
    records = (chat_record(row["problem"], row["solution"], args.system_prompt) for row in rows)
    count = write_jsonl_atomic(records, args.output)
    logger.info("wrote %d MATH prompts to %s", count, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
