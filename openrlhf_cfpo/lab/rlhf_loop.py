"""The RLHF setting's training: one world per seed (an SFT policy, a length-biased reward model), then
RLOO with PPO-clip or CFPO against it, every cell of a seed with the same schedule in one stacked
model (``lab.engine``), and the end-of-run evaluation (the Table 1 and Table 2 analogues).

World (``rlhf_world`` says what the prompts, the gold preference and the annotator are):

- SFT policy: a tiny Llama trained on gold responses to instruction prompts, with
  ``sft_skill_fraction`` of every batch from a second skill, 1-digit addition (all 100 problems): the
  capability whose loss is the alignment tax (Table 2).
- Reward model: the same architecture with a scalar head on the last token's final hidden state
  (OpenRLHF's reward model), trained on annotator-labelled pairs with the Bradley–Terry loss
  (``rlhf_formulas.pairwise_loss`` = OpenRLHF's ``PairWiseLoss``); its scores are normalized as
  ``--reward.normalize_enable`` does, with the mean and std of its held-out pairs' scores.

RL (Table 4 at toy scale): each step samples ``samples_per_prompt`` responses to each of
``prompts_per_step`` prompts at temperature 1, scores them with the normalized reward model, takes
k1 = log π_old − log π_SFT per token, and forms RLOO advantages with −β·k1 in the token rewards
(``rlhf_formulas.rloo_advantages``, OpenRLHF 0.11.2's formulas); then ``iterations`` passes in
``batch_ratio`` shuffled mini-batches, one AdamW update each, loss = the objective's per-token loss
(``openrlhf_cfpo.objectives``) reduced by a token mean per mini-batch. The cells of one stack share
the seed's prompts, draws and mini-batch order, so they differ only in objective and β.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from openrlhf_cfpo.lab import rlhf_world as world
from openrlhf_cfpo.lab.config import stream_seed
from openrlhf_cfpo.lab.engine import Shape, StackedAdamW, StackedLlama, clip_grad_norm, init_parameters
from openrlhf_cfpo.lab.loop import TokenWeightedMeans
from openrlhf_cfpo.lab.rlhf_config import RLHFCell, RLHFConfig
from openrlhf_cfpo.lab.rlhf_formulas import RewardNormalizer, k1_kl, pairwise_loss, rloo_advantages
from openrlhf_cfpo.lab.task import AdditionTask, Problems, response_mask
from openrlhf_cfpo.objectives import bounded_ratio, get_objective, trust_region_stats
from openrlhf_cfpo.reporting.length_control import length_controlled_win_rate

SEQUENCE = world.PROMPT_LENGTH + world.MAX_NEW_TOKENS
SKILL_DIGITS = 1
# Metric keys of every metrics.jsonl line of the rlhf setting, in order (docs/lab.md).
METRIC_KEYS = (
    "objective", "iterations", "batch_ratio", "kl_coef", "seed", "step", "reward_mean", "gold_reward_mean",
    "response_length_mean", "instruction_following", "clip_ratio", "ratio_max", "policy_kl", "kl_to_ref",
    "entropy", "grad_norm", "loss",
)


def model_shape(config: RLHFConfig) -> Shape:
    return Shape(vocab_size=len(world.VOCAB), hidden_size=config.hidden_size, num_layers=config.num_layers,
                 num_heads=config.num_heads, intermediate_size=2 * config.hidden_size, max_positions=SEQUENCE)


# --- the second skill ---------------------------------------------------------------------------


def skill_batch() -> Tuple[torch.Tensor, torch.Tensor]:
    """Every 1-digit addition problem, teacher-forced (``AdditionTask``) and padded to the RLHF sequence."""
    task = AdditionTask(SKILL_DIGITS, 1)
    ids = torch.arange(10 ** (2 * SKILL_DIGITS))
    a, b = ids // 10 ** SKILL_DIGITS, ids % 10 ** SKILL_DIGITS
    prompts = torch.tensor([task.encode_prompt(x, y) for x, y in zip(a.tolist(), b.tolist())])
    input_ids, labels = task.teacher_forcing(Problems(a, b, prompts))
    pad = SEQUENCE - input_ids.shape[1]
    return (torch.nn.functional.pad(input_ids, (0, pad), value=world.EOS_ID),
            torch.nn.functional.pad(labels, (0, pad), value=-100))


def _lm_loss_and_exact(stack: StackedLlama, input_ids: torch.Tensor, labels: torch.Tensor):
    """Per model (M,): mean next-token cross-entropy over labelled positions, and the fraction of rows
    that greedy decoding answers exactly (argmax right at every labelled position: ``model.exact_match``)."""
    m = stack.size
    logits, _ = stack.logits(input_ids.expand(m, -1, -1))
    logits, targets = logits[:, :, :-1], labels[..., 1:].expand(m, -1, -1)
    labelled = targets != -100
    log_probs = logits.log_softmax(-1).gather(-1, targets.clamp(min=0)[..., None]).squeeze(-1)
    loss = -(log_probs * labelled).sum(dim=(1, 2)) / labelled.sum(dim=(1, 2))
    exact = ((logits.argmax(-1) == targets) | ~labelled).all(dim=2).float().mean(dim=1)
    return loss, exact


@torch.no_grad()
def skill_accuracy(stack: StackedLlama) -> torch.Tensor:
    """Greedy exact-match accuracy on every 1-digit addition problem, per model (M,)."""
    return _lm_loss_and_exact(stack, *skill_batch())[1]


# --- the world of a seed ------------------------------------------------------------------------


def train_sft(config: RLHFConfig, seed: int) -> Tuple[Dict[str, torch.Tensor], Dict]:
    """The SFT policy of ``seed``: gold instruction responses and the addition skill (AdamW, constant lr)."""
    shape = model_shape(config)
    stack = StackedLlama.from_models(
        shape, [init_parameters(shape, False, torch.Generator().manual_seed(stream_seed(seed, "sft_init")))])
    stack.requires_grad_()
    optimizer = StackedAdamW(stack.params, lr=config.sft_lr, betas=(0.9, 0.999), weight_decay=0.0)
    data = torch.Generator().manual_seed(stream_seed(seed, "sft_data"))
    skill_ids, skill_labels = skill_batch()
    n_skill = round(config.sft_batch_size * config.sft_skill_fraction)
    for _ in range(config.sft_steps):
        instruction_ids, instruction_labels = world.sft_batch(
            world.sample_prompts(config.sft_batch_size - n_skill, data), data)
        pick = torch.randint(len(skill_ids), (n_skill,), generator=data)
        ids = torch.cat([instruction_ids, skill_ids[pick]])[None]
        labels = torch.cat([instruction_labels, skill_labels[pick]])[None]
        loss, _ = _lm_loss_and_exact(stack, ids, labels)
        optimizer.zero_grad()
        loss.sum().backward()
        optimizer.step()
    stack.requires_grad_(False)
    return stack.model(0), {"sft_final_loss": loss.item(), "skill_accuracy": skill_accuracy(stack).item()}


def _sequences(prompt_tokens: torch.Tensor, responses: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Prompt + response ids (..., SEQUENCE) and the position of each response's last token (its <eos>)."""
    prompt_tokens = prompt_tokens.expand(*responses.shape[:-1], -1)
    flat = responses.reshape(-1, responses.shape[-1])
    last = world.PROMPT_LENGTH + world.response_chars(flat).view(responses.shape[:-1]) - 1
    return torch.cat([prompt_tokens, responses], dim=-1), last


def reward_scores(rm: StackedLlama, prompt_tokens: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
    """Raw reward-model scores (M, n) of responses (M, n, MAX_NEW_TOKENS) to prompts (n, PROMPT_LENGTH)."""
    ids, last = _sequences(prompt_tokens, responses)
    return rm.scores(ids, last)


def train_reward_model(config: RLHFConfig, seed: int) -> Tuple[Dict[str, torch.Tensor], RewardNormalizer, Dict]:
    """The reward model of ``seed``: Bradley–Terry on annotator-labelled pairs; its normalizer (mean and
    std of its held-out pairs' scores); held-out pair accuracy and length preference on equal-gold pairs."""
    shape = model_shape(config)
    stack = StackedLlama.from_models(
        shape, [init_parameters(shape, True, torch.Generator().manual_seed(stream_seed(seed, "rm_init")))],
        value_head=True).requires_grad_()
    optimizer = StackedAdamW(stack.params, lr=config.rm_lr, betas=(0.9, 0.999), weight_decay=0.0)
    data = torch.Generator().manual_seed(stream_seed(seed, "rm_data"))
    train = world.preference_pairs(config.rm_pairs, data)
    heldout = world.preference_pairs(config.rm_heldout_pairs, data)
    for _ in range(config.rm_steps):
        pick = torch.randint(config.rm_pairs, (config.rm_batch_size,), generator=data)
        prompts = train.prompts.tokens[pick].repeat(2, 1)
        scores = reward_scores(stack, prompts, torch.cat([train.chosen[pick], train.rejected[pick]])[None])[0]
        loss = pairwise_loss(*scores.chunk(2))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    stack.requires_grad_(False)
    with torch.no_grad():
        chosen = reward_scores(stack, heldout.prompts.tokens, heldout.chosen[None])[0]
        rejected = reward_scores(stack, heldout.prompts.tokens, heldout.rejected[None])[0]
        prompts, longer, shorter = world.equal_gold_pairs(config.rm_heldout_pairs, data)
        prefers_longer = (reward_scores(stack, prompts.tokens, longer[None])[0]
                          > reward_scores(stack, prompts.tokens, shorter[None])[0]).float().mean().item()
    normalizer = RewardNormalizer.fit(torch.cat([chosen, rejected]))
    info = {"rm_final_loss": loss.item(), "rm_pair_accuracy": (chosen > rejected).float().mean().item(),
            "rm_length_preference": prefers_longer, "rm_mean": normalizer.mean, "rm_std": normalizer.std}
    return stack.model(0), normalizer, info


# --- sampling and log-probs on a stack ----------------------------------------------------------


@torch.no_grad()
def sample(stack: StackedLlama, prompt_tokens: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Responses (M, n, MAX_NEW_TOKENS) at temperature 1 to prompts (n, PROMPT_LENGTH), KV-cached.

    Every model draws the same uniform numbers (one per row and position, from ``generator``) and
    turns them into a token through its own distribution (inverse CDF): the draws depend only on the
    seed, whatever the policy, as in the RLVR lab."""
    logits, cache = stack.logits(prompt_tokens.expand(stack.size, -1, -1))
    last = logits[:, :, -1]
    tokens = []
    for position in range(world.MAX_NEW_TOKENS):
        uniform = torch.rand(prompt_tokens.shape[0], generator=generator)
        cdf = last.float().softmax(dim=-1).cumsum(dim=-1)
        token = (cdf < uniform[None, :, None]).sum(dim=-1).clamp(max=stack.shape.vocab_size - 1)
        tokens.append(token)
        if position + 1 < world.MAX_NEW_TOKENS:
            step, cache = stack.logits(token[..., None], cache)
            last = step[:, :, -1]
    return torch.stack(tokens, dim=-1)


def response_log_probs(stack: StackedLlama, prompt_tokens: torch.Tensor, responses: torch.Tensor):
    """Per-token log π(response token) and entropy, both (M, n, MAX_NEW_TOKENS), with grad."""
    prompt_tokens = prompt_tokens.expand(*responses.shape[:-1], -1)
    logits, _ = stack.logits(torch.cat([prompt_tokens, responses[..., :-1]], dim=-1))
    log_softmax = logits[:, :, world.PROMPT_LENGTH - 1:].float().log_softmax(dim=-1)
    log_probs = log_softmax.gather(-1, responses[..., None]).squeeze(-1)
    entropy = -(log_softmax.exp() * log_softmax).sum(dim=-1)
    return log_probs, entropy


def copies(shape: Shape, params: Dict[str, torch.Tensor], m: int, value_head: bool = False) -> StackedLlama:
    """``m`` copies of one frozen model, so that each cell's rows meet only their own copy (a cell's
    numbers then do not depend on the other cells of its stack)."""
    return StackedLlama.from_models(shape, [params] * m, value_head)


# --- RL of one stack of cells --------------------------------------------------------------------


def train_cells(
    config: RLHFConfig, cells: Sequence[RLHFCell], sft: Dict[str, torch.Tensor], rm: Dict[str, torch.Tensor],
    normalizer: RewardNormalizer, on_step: Optional[Callable[[List[Dict]], None]] = None,
) -> Tuple[StackedLlama, List[List[Dict]]]:
    """RL of ``cells`` (one seed, one schedule) from the SFT policy, as one stacked model; returns the
    trained stack and one metrics list per cell. ``on_step`` gets each step's lines, one per cell."""
    seed, (iterations, batch_ratio) = cells[0].seed, cells[0].schedule
    if any(c.seed != seed or c.schedule != (iterations, batch_ratio) for c in cells):
        raise ValueError("a stack holds cells of one seed and one schedule")
    m, shape = len(cells), model_shape(config)
    policy = copies(shape, sft, m).requires_grad_()
    reference, reward_model = copies(shape, sft, m), copies(shape, rm, m, value_head=True)
    optimizer = StackedAdamW(policy.params, lr=config.lr, betas=(0.9, 0.95), weight_decay=0.0)
    objectives = {name: [i for i, c in enumerate(cells) if c.objective == name] for name in dict.fromkeys(
        c.objective for c in cells)}
    prompt_rng = torch.Generator().manual_seed(stream_seed(seed, "prompts"))
    sampling_rng = torch.Generator().manual_seed(stream_seed(seed, "sampling"))
    shuffle_rng = torch.Generator().manual_seed(stream_seed(seed, "shuffle"))
    histories: List[List[Dict]] = [[] for _ in cells]
    for step in range(1, config.steps + 1):
        # 1. Rollout: samples_per_prompt responses per prompt, scored by the normalized reward model.
        prompts = world.sample_prompts(config.prompts_per_step, prompt_rng).repeat_each(config.samples_per_prompt)
        responses = sample(policy, prompts.tokens, sampling_rng)
        mask = response_mask(responses.reshape(-1, world.MAX_NEW_TOKENS)).view(responses.shape)
        with torch.no_grad():
            old_log_probs, _ = response_log_probs(policy, prompts.tokens, responses)
            ref_log_probs, _ = response_log_probs(reference, prompts.tokens, responses)
            scores = normalizer(reward_scores(reward_model, prompts.tokens, responses))
        kl = k1_kl(old_log_probs, ref_log_probs)
        advantages = torch.stack([
            rloo_advantages(scores[i], kl[i], mask[i], cell.kl_coef, config.samples_per_prompt)
            for i, cell in enumerate(cells)])

        # 2. Optimisation: `iterations` passes of `batch_ratio` shuffled mini-batches, one update each.
        means = [TokenWeightedMeans() for _ in cells]
        for _ in range(iterations):
            for batch in torch.randperm(config.rollout_size, generator=shuffle_rng).chunk(batch_ratio):
                log_probs, entropy = response_log_probs(policy, prompts.tokens[batch], responses[:, batch])
                ratio = bounded_ratio(log_probs, old_log_probs[:, batch])
                batch_mask, batch_adv = mask[:, batch], advantages[:, batch]
                token_loss = torch.empty_like(ratio)
                for name, index in objectives.items():
                    token_loss[index] = get_objective(name)(ratio[index], batch_adv[index], config.eps_low,
                                                            config.eps_high)
                n_tokens = batch_mask.sum(dim=(1, 2))
                # token mean per model, one slice at a time (independent of the stack's size)
                losses = torch.stack([(token_loss[i] * batch_mask[i]).sum() / n_tokens[i] for i in range(m)])
                optimizer.zero_grad()
                losses.sum().backward()
                grad_norms = clip_grad_norm(policy.params, config.max_grad_norm)
                optimizer.step()
                with torch.no_grad():
                    for i in range(m):
                        stats = trust_region_stats(ratio[i].detach(), batch_adv[i], batch_mask[i],
                                                   config.eps_low, config.eps_high)
                        tokens = batch_mask[i]
                        means[i].add(n_tokens[i].item(), {
                            "loss": losses[i].item(), "clip_ratio": stats["clip_ratio"].item(),
                            "policy_kl": ((old_log_probs[i, batch] - log_probs[i]) * tokens).sum().item()
                            / tokens.sum().item(),
                            "entropy": (entropy[i] * tokens).sum().item() / tokens.sum().item(),
                            "grad_norm": grad_norms[i].item(),
                        }, ratio_max=stats["ratio_max"].item(), ratio_min=stats["ratio_min"].item())

        lines = []
        for i, cell in enumerate(cells):
            rollout = responses[i]
            averaged = means[i].result()
            line = {
                "objective": cell.objective, "iterations": cell.iterations, "batch_ratio": cell.batch_ratio,
                "kl_coef": cell.kl_coef, "seed": cell.seed, "step": step,
                "reward_mean": scores[i].mean().item(),
                "gold_reward_mean": world.gold_quality(prompts, rollout).mean().item(),
                "response_length_mean": world.response_chars(rollout).float().mean().item(),
                "instruction_following": world.instruction_followed(prompts, rollout).float().mean().item(),
                "kl_to_ref": ((kl[i] * mask[i]).sum() / mask[i].sum()).item(),
                **averaged,
            }
            line = {key: line[key] for key in METRIC_KEYS}
            histories[i].append(line)
            lines.append(line)
        if on_step is not None:
            on_step(lines)
    policy.requires_grad_(False)
    return policy, histories


# --- evaluation: the Table 1 and Table 2 analogues ------------------------------------------------


def evaluation_prompts(config: RLHFConfig) -> world.Prompts:
    """Every (topic, k) prompt, repeated to ``eval_samples`` rows (the AlpacaEval analogue's instructions)."""
    every = world.all_prompts()
    return every.repeat_each(max(1, config.eval_samples // len(every)))


@torch.no_grad()
def evaluate(config: RLHFConfig, seed: int, models: StackedLlama, sft: Dict[str, torch.Tensor],
             rm: Dict[str, torch.Tensor], normalizer: RewardNormalizer) -> List[Dict]:
    """Per model of ``models``: one sampled response per evaluation prompt (the seed's draws, the same
    for every model and the SFT policy), judged against the SFT policy's response to the same prompt
    by the length-biased simulated annotator and by the gold preference; the exact-instruction-following
    rate, gold quality, normalized reward-model score, length, and the addition skill.

    The annotator's preference is its probability P(policy ≻ SFT) = σ(``preference_logit``), not a
    draw: AlpacaEval 2.0's judge gives a continuous preference (GPT-4's probability of its verdict),
    and its raw and length-controlled win rates are computed from those (``length_control``)."""
    shape, prompts = model_shape(config), evaluation_prompts(config)
    def draws():  # the seed's evaluation draws, the same for the SFT policy and every model
        return torch.Generator().manual_seed(stream_seed(seed, "eval"))

    baseline = sample(copies(shape, sft, 1), prompts.tokens, draws())[0]
    responses = sample(models, prompts.tokens, draws())
    scores = normalizer(reward_scores(copies(shape, rm, models.size, value_head=True), prompts.tokens, responses))
    skills = skill_accuracy(models)
    results = []
    for i in range(models.size):
        wins = torch.sigmoid(world.preference_logit(prompts, responses[i], baseline))
        rates = length_controlled_win_rate(wins.tolist(), world.response_chars(responses[i]).tolist(),
                                           world.response_chars(baseline).tolist())
        results.append({
            "win_rate": rates["win_rate"], "lc_win_rate": rates["length_controlled_win_rate"],
            "gold_win_rate": world.gold_preference(prompts, responses[i], baseline).mean().item(),
            "instruction_following": world.instruction_followed(prompts, responses[i]).float().mean().item(),
            "gold_quality": world.gold_quality(prompts, responses[i]).mean().item(),
            "rm_score": scores[i].mean().item(),
            "length": world.response_chars(responses[i]).float().mean().item(),
            "skill_accuracy": skills[i].item(),
        })
    return results
