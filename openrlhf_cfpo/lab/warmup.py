"""Supervised warm-up before RL, one policy per seed, cached on disk so a sweep (and the next one)
pays for it once.

Cold-starting RL from a random policy gives all-zero rewards; a brief supervised phase on the
task's own answers gives a policy that is right sometimes. The warm-up stops at the step where its
greedy accuracy on the task's probe problems (training problems, never held-out ones) crosses
``warmup_target_accuracy``, so every seed starts RL next to it: the loss drops abruptly at a seed-
and processor-dependent step, and checking only every so many steps could stop well past the
target. The checkpoint is keyed by a hash of the seed, the fields in ``WARMUP_FIELDS`` and this
module's format version, so a change to any of them trains a new one.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch
from safetensors.torch import load_file, save_file
from transformers import LlamaConfig, LlamaForCausalLM

from openrlhf_cfpo.lab.config import WARMUP_FIELDS, LabConfig, stream_seed
from openrlhf_cfpo.lab.model import build_policy, exact_match, greedy_accuracy
from openrlhf_cfpo.lab.task import VOCAB, AdditionTask
from openrlhf_cfpo.runinfo import atomic_folder

logger = logging.getLogger(__name__)

# Bump when the warm-up procedure changes, so stale checkpoints are not reused.
WARMUP_FORMAT = 2
INFO_FILE = "warmup.json"
# A warm-up whose probe accuracy ends farther than this from the target is reported as off target.
START_TOLERANCE = 0.05
# The probe is measured every PROBE_EVERY steps from the first training batch within PROBE_GATE of
# the target on, and after every step once the probe is within FINE_WINDOW of it.
PROBE_GATE = 0.15
PROBE_EVERY = 10
FINE_WINDOW = 0.10


@dataclass(frozen=True)
class _WarmupState:
    """Everything a warm-up step depends on, to rewind to it (and its probe accuracy and loss)."""

    step: int
    probe: Optional[float]
    loss: float
    weights: Dict[str, torch.Tensor]
    optimizer: Dict[str, Any]
    data: torch.Tensor


def _save_checkpoint(model: LlamaForCausalLM, folder: Path) -> None:
    """config.json + model.safetensors (the Hugging Face layout, without its save machinery)."""
    folder.mkdir(parents=True, exist_ok=True)
    model.config.to_json_file(folder / "config.json")
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, folder / "model.safetensors")


def _load_checkpoint(folder: Path, device: str) -> LlamaForCausalLM:
    model = LlamaForCausalLM(LlamaConfig.from_json_file(folder / "config.json"))
    model.load_state_dict(load_file(folder / "model.safetensors"))
    return model.to(device).eval()


def warmup_key(config: LabConfig, seed: int) -> str:
    settings = {name: getattr(config, name) for name in WARMUP_FIELDS}
    blob = json.dumps({"format": WARMUP_FORMAT, "vocab": VOCAB, "seed": seed, **settings}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def warmup_path(config: LabConfig, seed: int, cache_dir: Path) -> Path:
    return Path(cache_dir) / f"warmup-{warmup_key(config, seed)}"


def train_warmup(config: LabConfig, seed: int, task: AdditionTask) -> Tuple[LlamaForCausalLM, Dict[str, Any]]:
    """A policy freshly initialised from ``seed`` after supervised training (AdamW, constant lr),
    stopped where its probe accuracy crosses ``warmup_target_accuracy`` (at most ``warmup_steps``).

    Measuring the probe costs more than a step, so it is measured only as often as needed to stop
    at the first step past the target. Each step's training batch tells its own greedy accuracy for
    free (``exact_match`` on the step's logits); from the first batch within ``PROBE_GATE`` of the
    target the probe is measured every ``PROBE_EVERY`` steps, and after every step once it is within
    ``FINE_WINDOW``. A coarse measurement that already lies past the target rewinds to the previous
    measurement (weights, optimizer and data order) and replays those steps measuring after each;
    the replay is the same computation, so it reaches the same policies. Of the step that crosses
    the target and the one before it, the warm-up keeps whichever is closer to the target.
    """
    device = torch.device(config.device)
    target = config.warmup_target_accuracy
    torch.manual_seed(stream_seed(seed, "init"))
    model = build_policy(
        config.hidden_size, config.num_layers, config.num_heads, task.prompt_length + task.max_new_tokens
    ).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.warmup_lr, weight_decay=0.0)
    data = torch.Generator().manual_seed(stream_seed(seed, "warmup_data"))
    step, loss, probe, probed_at = 0, float("nan"), None, None
    gate_open = fine = False
    saved: Optional[_WarmupState] = None  # at the last probe measurement below the target

    def save() -> _WarmupState:
        return _WarmupState(step, probe, loss, copy.deepcopy(model.state_dict()),
                            copy.deepcopy(optimizer.state_dict()), data.get_state())

    while step < config.warmup_steps:
        model.train()
        input_ids, labels = task.teacher_forcing(task.sample(config.warmup_batch_size, data))
        output = model(input_ids=input_ids.to(device), labels=labels.to(device))
        batch_accuracy = exact_match(output.logits.detach(), labels).sum().item() / len(labels)
        optimizer.zero_grad(set_to_none=True)
        output.loss.backward()
        optimizer.step()
        step, loss = step + 1, output.loss.item()
        if not gate_open and batch_accuracy >= target - PROBE_GATE:
            gate_open, saved = True, save()
        if not (fine or (gate_open and step % PROBE_EVERY == 0)):
            continue
        model.eval()
        probe, probed_at = greedy_accuracy(model, task.probe_batch, device), step
        if probe >= target:
            if fine or saved is None:
                break
            fine = True  # crossed between two coarse measurements: replay that stretch step by step
            step, probe, probed_at, loss = saved.step, saved.probe, saved.step, saved.loss
            model.load_state_dict(saved.weights)
            optimizer.load_state_dict(saved.optimizer)
            data.set_state(saved.data)
            continue
        fine = fine or probe >= target - FINE_WINDOW
        saved = save()
    model.eval()
    if probe is None or probed_at != step:  # stopped by warmup_steps
        probe = greedy_accuracy(model, task.probe_batch, device)
    if (probe >= target and saved is not None and saved.step == step - 1 and saved.probe is not None
            and target - saved.probe < probe - target):
        step, probe, loss = saved.step, saved.probe, saved.loss
        model.load_state_dict(saved.weights)
    info = {
        "seed": seed,
        "key": warmup_key(config, seed),
        "settings": {name: getattr(config, name) for name in WARMUP_FIELDS},
        "steps": step,
        "final_loss": loss,
        "target_accuracy": target,
        "probe_accuracy": probe,
        "heldout_accuracy": greedy_accuracy(model, task.heldout_batch, device),
    }
    if abs(probe - target) > START_TOLERANCE:
        logger.warning(
            "seed %d: the warm-up ends at %.1f%% probe accuracy after %d steps, more than %.0f points from the "
            "target %.0f%%; raise warmup_steps or lower warmup_lr", seed, 100 * probe, step,
            100 * START_TOLERANCE, 100 * target,
        )
    return model, info


def warm_start(
    config: LabConfig, seed: int, task: AdditionTask, cache_dir: Path
) -> Tuple[LlamaForCausalLM, Dict[str, Any]]:
    """The warm-up policy of ``seed``: loaded from ``cache_dir`` if present, else trained and cached."""
    path = warmup_path(config, seed, cache_dir)
    if (path / INFO_FILE).is_file():
        logger.debug("seed %d: warm-up checkpoint from cache: %s", seed, path)
        return _load_checkpoint(path, config.device), json.loads((path / INFO_FILE).read_text())
    logger.info(
        "seed %d: training the warm-up policy (until %.0f%% probe accuracy, at most %d steps); cached at %s",
        seed, 100 * config.warmup_target_accuracy, config.warmup_steps, path,
    )
    model, info = train_warmup(config, seed, task)
    logger.info("seed %d: warm-up: %d steps, probe accuracy %.3f, held-out accuracy %.3f",
                seed, info["steps"], info["probe_accuracy"], info["heldout_accuracy"])
    with atomic_folder(path) as tmp:
        _save_checkpoint(model, tmp)
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=2))
    return model, info
