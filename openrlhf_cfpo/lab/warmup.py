"""Supervised warm-up before RL, cached on disk so a sweep (and the next one) pays for it once.

Cold-starting RL from a random policy gives all-zero rewards; a brief supervised phase on the
task's own answers gives a policy that is right sometimes. The checkpoint is keyed by a hash of
the fields in ``WARMUP_FIELDS`` (and this module's format version), so a change to any of them
trains a new one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Dict, Tuple

import torch
from safetensors.torch import load_file, save_file
from transformers import LlamaConfig, LlamaForCausalLM

from openrlhf_cfpo.lab.config import WARMUP_FIELDS, LabConfig
from openrlhf_cfpo.lab.model import build_policy, greedy_accuracy
from openrlhf_cfpo.lab.task import EOS_ID, VOCAB, AdditionTask

logger = logging.getLogger(__name__)

# Bump when the warm-up procedure changes, so stale checkpoints are not reused.
WARMUP_FORMAT = 1
INFO_FILE = "warmup.json"
# Steps between checks of the probe accuracy against warmup_target_accuracy.
CHECK_EVERY = 25


def _save_checkpoint(model: LlamaForCausalLM, folder: Path) -> None:
    """config.json + model.safetensors (the Hugging Face layout, without its save machinery)."""
    folder.mkdir(parents=True)
    model.config.to_json_file(folder / "config.json")
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, folder / "model.safetensors")


def _load_checkpoint(folder: Path, device: str) -> LlamaForCausalLM:
    model = LlamaForCausalLM(LlamaConfig.from_json_file(folder / "config.json"))
    model.load_state_dict(load_file(folder / "model.safetensors"))
    return model.to(device).eval()


def warmup_key(config: LabConfig) -> str:
    settings = {name: getattr(config, name) for name in WARMUP_FIELDS}
    blob = json.dumps({"format": WARMUP_FORMAT, "vocab": VOCAB, **settings}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _supervised_batch(task: AdditionTask, n: int, generator: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
    """Input ids (prompt + answer + <eos> padding) and labels (-100 except on answer tokens)."""
    problems = task.sample(n, generator)
    length = task.prompt_length + task.max_new_tokens
    input_ids = torch.full((n, length), EOS_ID, dtype=torch.long)
    labels = torch.full((n, length), -100, dtype=torch.long)
    input_ids[:, : task.prompt_length] = problems.prompts
    for i, (a, b) in enumerate(zip(problems.a.tolist(), problems.b.tolist())):
        answer = torch.tensor(task.encode_answer(a, b))
        end = task.prompt_length + len(answer)
        input_ids[i, task.prompt_length : end] = answer
        labels[i, task.prompt_length : end] = answer
    return input_ids, labels


def train_warmup(config: LabConfig, task: AdditionTask) -> Tuple[LlamaForCausalLM, Dict[str, Any]]:
    """A freshly initialised policy after supervised training (AdamW, constant lr).

    Stops at the first check (every ``CHECK_EVERY`` steps) where greedy accuracy on the task's
    probe problems reaches ``warmup_target_accuracy``, or after ``warmup_steps``.
    """
    device = torch.device(config.device)
    torch.manual_seed(config.seed)
    model = build_policy(
        config.hidden_size, config.num_layers, config.num_heads, task.prompt_length + task.max_new_tokens
    ).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.warmup_lr, weight_decay=0.0)
    data = torch.Generator().manual_seed(config.seed)
    loss = torch.tensor(float("nan"))
    probe_accuracy = 0.0
    step = 0
    while step < config.warmup_steps and probe_accuracy < config.warmup_target_accuracy:
        model.train()
        input_ids, labels = _supervised_batch(task, config.warmup_batch_size, data)
        loss = model(input_ids=input_ids.to(device), labels=labels.to(device)).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        if step % CHECK_EVERY == 0:
            model.eval()
            probe_accuracy = greedy_accuracy(model, task, task.probe, device)
    model.eval()
    info = {
        "key": warmup_key(config),
        "settings": {name: getattr(config, name) for name in WARMUP_FIELDS},
        "steps": step,
        "final_loss": loss.item(),
        "probe_accuracy": greedy_accuracy(model, task, task.probe, device),
        "heldout_accuracy": greedy_accuracy(model, task, task.heldout, device),
    }
    return model, info


def warm_start(config: LabConfig, task: AdditionTask, cache_dir: Path) -> Tuple[LlamaForCausalLM, Dict[str, Any]]:
    """The warm-up policy for ``config``: loaded from ``cache_dir`` if present, else trained and cached."""
    path = Path(cache_dir) / f"warmup-{warmup_key(config)}"
    if (path / INFO_FILE).is_file():
        logger.info("warm-up checkpoint from cache: %s", path)
        return _load_checkpoint(path, config.device), json.loads((path / INFO_FILE).read_text())
    logger.info(
        "training the warm-up policy (until %.0f%% probe accuracy, at most %d steps); cached at %s",
        100 * config.warmup_target_accuracy, config.warmup_steps, path,
    )
    model, info = train_warmup(config, task)
    logger.info("warm-up: %d steps, held-out accuracy %.3f", info["steps"], info["heldout_accuracy"])
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    _save_checkpoint(model, tmp)
    (tmp / INFO_FILE).write_text(json.dumps(info, indent=2))
    try:
        os.replace(tmp, path)
    except OSError:  # another process cached the same key first; theirs is identical
        shutil.rmtree(tmp, ignore_errors=True)
    return model, info
