"""Paper Table 3 (RLVR) in TRL 1.16.0: GRPO or CFPO on the MATH train split with TRL's GRPOTrainer.

    accelerate launch examples/trl/train_grpo_cfpo.py --model Qwen/Qwen2.5-3B --iterations 8
    accelerate launch examples/trl/train_grpo_cfpo.py --model Qwen/Qwen2.5-3B --iterations 8 --loss_type grpo

``--loss_type cfpo`` (the default) is CFPO (``openrlhf_cfpo.patch_trl``); ``--loss_type grpo`` is the
paper's GRPO baseline: the same run with the PPO-clip surrogate. Both normalize as eq. (8) does (each
completion's token mean, then the mean over completions); ``dapo`` / ``cfpo_dapo`` are the same pair with
DAPO's token-mean normalization instead. ``--iterations`` is the sample reuse
of Tables 5–10 (TRL's ``num_iterations``: 2, 4, 8, 16 there). Every ``GRPOConfig`` field takes TRL's
own flag and overrides the recipe (``--use_vllm``, ``--report_to tensorboard``, ``--max_steps 10``).
Table 3's settings and what each maps to: docs/trl.md. Outputs go to ``--output_dir`` (default
``runs/trl/<run name>``): checkpoints (a rerun resumes from the last), the final model, and
``openrlhf_cfpo_run.json`` (resolved settings, package versions, git SHA). ``--check_layouts PROCESSES
FOLDER`` checks all the runs ``sweep_iterations.sh`` recorded in FOLDER before it starts any
(``examples/grid.sh``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from pathlib import Path
from typing import Dict, List, Optional

# The OpenRLHF recipe's MATH data step (examples/scripts/): the same chat records, here read in memory.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from prepare_math_prompts import chat_record, load_math_rows  # noqa: E402

from openrlhf_cfpo.learning_rate import rlvr_learning_rate  # noqa: E402
from openrlhf_cfpo.prompts import MODEL_SIZES, model_size_from_name, rlvr_system_prompt  # noqa: E402
from openrlhf_cfpo.rewards.math_reward import last_boxed_answer, score_response  # noqa: E402

logger = logging.getLogger("train_grpo_cfpo")

PROG = "train_grpo_cfpo.py"
RUN_RECORD = "openrlhf_cfpo_run.json"
GROUP_SIZE = 3  # Table 3 "Group Size": completions per problem
# The loss types the recipe trains: GRPO (PPO-clip) and CFPO with eq. (8)'s normalization, and the same
# pair with DAPO's (TRL's "dapo", openrlhf_cfpo's "cfpo_dapo").
LOSS_TYPES = ("grpo", "cfpo", "dapo", "cfpo_dapo")


@dataclasses.dataclass
class RecipeArguments:
    """The recipe's own settings; everything else is a ``GRPOConfig`` field."""

    model: str = dataclasses.field(
        default="Qwen/Qwen2.5-1.5B-Instruct",
        metadata={"help": "Hub id or path of the policy: Qwen/Qwen2.5-{1.5B,3B,7B}[-Instruct] in the paper"},
    )
    model_size: Optional[str] = dataclasses.field(
        default=None,
        metadata={"help": "the paper size whose lr and system prompt apply (default: from --model)",
                  "choices": MODEL_SIZES},
    )
    iterations: Optional[int] = dataclasses.field(
        default=None,
        metadata={"help": "sample reuse: optimizer steps per generated batch (GRPOConfig.num_iterations; "
                          "Tables 5-10: 2, 4, 8, 16) [1]"},
    )
    prompts_per_step: int = dataclasses.field(
        default=128, metadata={"help": "problems per optimizer step (Table 3 'Batch Size')"}
    )
    max_prompt_length: int = dataclasses.field(
        default=512, metadata={"help": "problems whose chat prompt has more tokens are left out (Table 3)"}
    )
    math_train: str = dataclasses.field(
        default="DigitalLearningGmbH/MATH-lighteval",
        metadata={"help": "Hugging Face dataset id or local .jsonl/.json/.parquet with MATH's problem/solution"},
    )
    system_prompt: Optional[str] = dataclasses.field(
        default=None, metadata={"help": "system message before every problem (default: the paper's B.1 one for the size)"}
    )


# Table 3 settings that do not depend on the model or the launch; the rest are set in table3_defaults().
TABLE3 = dict(
    num_generations=GROUP_SIZE,
    beta=0.0,
    max_completion_length=3072,
    temperature=0.9,
    epsilon=0.2,
    lr_scheduler_type="cosine",
    warmup_steps=0.1,  # transformers 5: a float below 1 is a ratio of the total steps
    adam_beta1=0.9,
    adam_beta2=0.999,
    adam_epsilon=1e-8,
    loss_type="cfpo",
)


class RecipeError(ValueError):
    """Settings the recipe cannot run with (the message names the flag and the fix)."""


def gradient_accumulation_steps(prompts_per_step: int, per_device_batch: int, processes: int) -> int:
    """Accumulation steps that make one optimizer step see ``prompts_per_step`` × GROUP_SIZE completions.

    TRL 1.16.0 counts ``per_device_train_batch_size`` in completions; an optimizer step consumes
    per_device × accumulation × processes of them, and (steps_per_generation defaulting to the
    accumulation) one generation batch of that size = that many problems × num_generations.
    """
    completions = prompts_per_step * GROUP_SIZE
    if completions % (per_device_batch * processes):
        raise RecipeError(
            f"{prompts_per_step} problems x {GROUP_SIZE} completions = {completions} per optimizer step is not a "
            f"multiple of --per_device_train_batch_size {per_device_batch} x {processes} process(es); "
            "pick a per-device batch that divides it"
        )
    return completions // (per_device_batch * processes)


def model_size(recipe: RecipeArguments) -> str:
    size = recipe.model_size or model_size_from_name(recipe.model)
    if size is None:
        raise RecipeError(f"cannot tell the model size from --model {recipe.model}; pass --model_size "
                          f"({' | '.join(MODEL_SIZES)})")
    return size


def system_prompt(recipe: RecipeArguments) -> str:
    """--system_prompt, else the paper's appendix B.1 prompt for the model's size."""
    return recipe.system_prompt or rlvr_system_prompt(model_size(recipe))


def table3_defaults(namespace, processes: int) -> Dict[str, object]:
    """GRPOConfig defaults for this launch: Table 3's, the learning rate of the model's size, the
    accumulation that gives 128 problems per step, the sample reuse, and the output folder."""
    recipe = RecipeArguments(**{f.name: getattr(namespace, f.name) for f in dataclasses.fields(RecipeArguments)})
    if namespace.loss_type not in LOSS_TYPES:
        raise RecipeError(f"--loss_type {namespace.loss_type} is not one the recipe trains; use {' | '.join(LOSS_TYPES)}")
    if recipe.iterations is not None and recipe.iterations < 1:
        raise RecipeError(f"--iterations {recipe.iterations}: the sample reuse is at least 1")
    defaults: Dict[str, object] = dict(TABLE3, learning_rate=rlvr_learning_rate(model_size(recipe)))
    defaults["gradient_accumulation_steps"] = gradient_accumulation_steps(
        recipe.prompts_per_step, namespace.per_device_train_batch_size, processes
    )
    iterations = namespace.num_iterations
    if recipe.iterations is not None:
        if namespace.num_iterations not in (1, recipe.iterations):  # 1: TRL's default
            raise RecipeError("--iterations and --num_iterations disagree; pass --iterations only")
        iterations = defaults["num_iterations"] = recipe.iterations
    run_name = f"math_{Path(recipe.model).name}_{namespace.loss_type}_it{iterations}"
    defaults.update(output_dir=str(Path("runs") / "trl" / run_name), run_name=run_name)
    return defaults


def parse_args(argv: Optional[List[str]] = None, processes: Optional[int] = None):
    """(RecipeArguments, GRPOConfig) for a command line: Table 3 as defaults, the command line on top.

    ``processes`` defaults to accelerate's WORLD_SIZE (1 without accelerate launch).
    """
    from transformers import HfArgumentParser
    from trl import GRPOConfig

    if processes is None:
        processes = int(os.environ.get("WORLD_SIZE", "1"))
    parser = HfArgumentParser((RecipeArguments, GRPOConfig), prog=PROG, description=__doc__.splitlines()[0])
    parser.set_defaults(**TABLE3)
    namespace = parser.parse_args(argv)  # first pass: the values the remaining defaults depend on
    parser.set_defaults(**table3_defaults(namespace, processes))
    recipe, config = parser.parse_args_into_dataclasses(argv)
    optimizer_batch = config.per_device_train_batch_size * config.gradient_accumulation_steps * processes
    if optimizer_batch != recipe.prompts_per_step * GROUP_SIZE or config.num_generations != GROUP_SIZE:
        raise RecipeError(
            f"an optimizer step would see {optimizer_batch} completions in groups of {config.num_generations}, not "
            f"{recipe.prompts_per_step} problems x {GROUP_SIZE}; leave --gradient_accumulation_steps and "
            "--num_generations to the recipe"
        )
    return recipe, config


def math_reward(completions, solution, log_metric=None, **kwargs) -> List[float]:
    """TRL reward function: 1.0 when a completion's last ``\\boxed{}`` answer equals the MATH solution's
    under math-verify (``openrlhf_cfpo.rewards.math_reward``, the OpenRLHF recipes' reward), else 0.0.
    Also logs the fraction of completions with a boxed answer (``has_boxed_answer``)."""
    texts = [completion[-1]["content"] if isinstance(completion, list) else completion for completion in completions]
    if log_metric is not None:
        log_metric("has_boxed_answer", sum(last_boxed_answer(text) is not None for text in texts) / len(texts))
    return [score_response(text, label) for text, label in zip(texts, solution)]


def end_of_turn_token(tokenizer) -> str:
    """The special token the chat template closes an assistant turn with (``<|im_end|>``, ``<|eot_id|>``)."""
    marker = "END-OF-TURN-PROBE"
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "?"}, {"role": "assistant", "content": marker}], tokenize=False
    )
    tail = text[text.rindex(marker) + len(marker) :]
    specials = sorted((t.content for t in tokenizer.added_tokens_decoder.values() if t.special), key=len, reverse=True)
    for token in specials:
        if tail.startswith(token):
            return token
    raise RecipeError(f"the chat template of {tokenizer.name_or_path} ends an assistant turn with no special token")


def load_tokenizer(recipe: RecipeArguments, config):
    """The policy's tokenizer, left-padded, with generation stopping at the chat template's end of turn.

    Base Qwen2.5 models declare ``<|endoftext|>`` as eos while the chat template ends a turn with
    ``<|im_end|>``: the end-of-turn token becomes the tokenizer's eos (TRL stops HF generation and masks
    completions at it) and a vLLM stop token.
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(recipe.model, padding_side="left", truncation_side="left")
    if not tokenizer.chat_template:
        raise RecipeError(f"the tokenizer of {recipe.model} has no chat template; the recipe prompts in chat format")
    end_of_turn = end_of_turn_token(tokenizer)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if end_of_turn != tokenizer.eos_token:
        logger.info("generation stops at %s (the chat template's end of turn), not only %s", end_of_turn,
                    tokenizer.eos_token)
        tokenizer.eos_token = end_of_turn
    if config.use_vllm:
        stop = [tokenizer.convert_tokens_to_ids(end_of_turn)]
        config.generation_kwargs = {**(config.generation_kwargs or {}), "stop_token_ids": stop}
    return tokenizer


def math_train_dataset(recipe: RecipeArguments, tokenizer, system_prompt: str):
    """MATH train as TRL conversational prompts (system + problem) with the ``solution`` column the
    reward reads; problems whose prompt exceeds ``max_prompt_length`` tokens are left out."""
    from datasets import Dataset

    rows = load_math_rows(recipe.math_train, "train")
    missing = {"problem", "solution"} - set(rows.column_names)
    if missing:
        raise RecipeError(f"--math_train {recipe.math_train} lacks the MATH column(s) {sorted(missing)}")
    records = [chat_record(row["problem"], row["solution"], system_prompt) for row in rows]
    prompt_ids = tokenizer.apply_chat_template([record["prompt"] for record in records], add_generation_prompt=True,
                                               tokenize=True, return_dict=True)["input_ids"]
    kept = [record for record, ids in zip(records, prompt_ids) if len(ids) <= recipe.max_prompt_length]
    logger.info("%d of %d MATH problems have prompts within %d tokens", len(kept), len(records),
                recipe.max_prompt_length)
    return Dataset.from_list(kept)


def check_layouts(processes: int, folder: str) -> int:
    """``--check_layouts PROCESSES FOLDER``: every run a sweep recorded in FOLDER (``examples/grid.sh``)
    through this recipe's own argument checks (``parse_args`` for PROCESSES processes), all in one process; prints
    one line per run that cannot start, in the grids' format (``openrlhf_cfpo.launch_layout``). Each run
    is parsed as if on a CPU (``--use_cpu``): the check judges the runs' settings, not the devices of
    the machine it runs on (transformers refuses bf16 where it finds no GPU)."""
    import contextlib
    import io

    from openrlhf_cfpo.launch_layout import report

    def check(argv: List[str]) -> None:
        usage_errors = io.StringIO()
        try:
            with contextlib.redirect_stderr(usage_errors):
                parse_args([*argv, "--use_cpu"], processes=processes)
        except SystemExit:  # the argument parser's own error: its last line names the flag
            raise RecipeError(usage_errors.getvalue().strip().splitlines()[-1]) from None

    return report(Path(folder), check)


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--check_layouts"] and len(argv) == 3:
        return check_layouts(int(argv[1]), argv[2])
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import openrlhf_cfpo

    openrlhf_cfpo.patch_trl()  # in every process accelerate starts
    from transformers.trainer_utils import get_last_checkpoint
    from trl import GRPOTrainer

    from openrlhf_cfpo.runinfo import write_run_record

    try:
        recipe, config = parse_args(argv)
        prompt = system_prompt(recipe)
        tokenizer = load_tokenizer(recipe, config)
        dataset = math_train_dataset(recipe, tokenizer, prompt)
    except (RecipeError, ValueError) as err:
        raise SystemExit(f"{PROG}: error: {err}") from None
    trainer = GRPOTrainer(model=recipe.model, reward_funcs=math_reward, args=config, train_dataset=dataset,
                          processing_class=tokenizer)
    if trainer.is_world_process_zero():
        write_run_record(Path(config.output_dir) / RUN_RECORD, {
            "recipe": dataclasses.asdict(recipe), "system_prompt": prompt, "grpo_config": config.to_dict(),
            "train_problems": len(dataset),
        })
    checkpoint = get_last_checkpoint(config.output_dir) if os.path.isdir(config.output_dir) else None
    if checkpoint:
        logger.info("resuming from %s", checkpoint)
    trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(config.output_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
