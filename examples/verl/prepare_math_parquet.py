"""Write MATH problems as verl RL parquet, carrying the RLVR system prompt.

    python examples/verl/prepare_math_parquet.py --source DigitalLearningGmbH/MATH-lighteval \
        --system-prompt "$SYSTEM_PROMPT" --output data/verl/math_train.parquet
    python examples/verl/prepare_math_parquet.py --source HuggingFaceH4/MATH-500 --split test \
        --system-prompt "$SYSTEM_PROMPT" --output data/verl/math500.parquet

--source and --split as in examples/scripts/prepare_math_prompts.py (a Hugging Face dataset id or a
local .jsonl/.json/.parquet file with "problem" and "solution"). Each row is what verl's RLHFDataset
and reward manager read: ``prompt`` (chat messages: the system prompt, the problem as the user turn;
verl applies the model's chat template), ``data_source`` ("math"), ``reward_model.ground_truth`` (the
MATH solution, scored by ``openrlhf_cfpo.rewards.math_reward.compute_score``) and
``extra_info.index``. Written atomically.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import List

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from prepare_math_prompts import chat_record, parse_math_source  # noqa: E402  (the OpenRLHF recipe's loader)

from openrlhf_cfpo.runinfo import atomic_output  # noqa: E402

logger = logging.getLogger(__name__)
DATA_SOURCE = "math"


def verl_record(index: int, problem: str, solution: str, system_prompt: str) -> dict:
    """One verl RL row for a MATH problem."""
    return {
        "data_source": DATA_SOURCE,
        "prompt": chat_record(problem, solution, system_prompt)["prompt"],
        "ability": "math",
        "reward_model": {"style": "rule", "ground_truth": solution},
        "extra_info": {"index": index},
    }


def main(argv: List[str] | None = None) -> int:
    import pandas as pd

    args, rows = parse_math_source(argv, __doc__.splitlines()[0], "output .parquet")
    records = [verl_record(i, row["problem"], row["solution"], args.system_prompt) for i, row in enumerate(rows)]
    with atomic_output(args.output) as tmp:
        pd.DataFrame.from_records(records).to_parquet(tmp, index=False)
    logger.info("wrote %d MATH prompts to %s", len(records), args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
