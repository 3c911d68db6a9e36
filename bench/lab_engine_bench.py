"""The lab's per-model cost: today's path (one transformers LlamaForCausalLM per cell) against the
stacked engine (``openrlhf_cfpo.lab.engine``, M models in one batched model), and the arithmetic floor.

    python bench/lab_engine_bench.py [--stacks 1,8,20] [--repeats 5]

At the default lab settings (width 64, 2 layers, 4 heads, a 14-token vocabulary, 16 prompts x 8
responses of 4 tokens after a 7-token prompt; 256 held-out problems of 11 tokens), one torch thread,
CPU time (``time.process_time``) per model, median over ``--repeats`` after a warm-up:

- update: log-probs of the rollout batch (each prompt encoded once), backward, grad-norm clipping and
  AdamW, what one policy update of a cell costs;
- evaluation: one teacher-forced pass over the held-out problems (greedy accuracy).

Prints a table, ``update ratio today/stacked (best stack): X`` and the same for evaluation, then the
floating-point work of the default RLVR sweep (10 seeds x 2 objectives x iterations 1,2,4,8,16 x 100
steps) divided by the best measured matmul throughput: a lower bound on its CPU time for any engine
that does the same arithmetic in float32.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

HIDDEN, LAYERS, HEADS, VOCAB, PROMPT, RESPONSE, PROMPTS, GROUP, HELDOUT = 64, 2, 4, 14, 7, 4, 16, 8, 256
SWEEP_UPDATES = 10 * 2 * 100 * (1 + 2 + 4 + 8 + 16)  # seeds x objectives x steps x updates per step
SWEEP_EVALS = 10 * 2 * 100 * 5  # one held-out pass per step per cell


def _median_cpu_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def _today(repeats: int):
    from openrlhf_cfpo.lab.model import build_policy, greedy_accuracy, response_log_probs

    torch.manual_seed(0)
    model = build_policy(HIDDEN, LAYERS, HEADS, PROMPT + RESPONSE)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.0)
    prompts = torch.randint(0, VOCAB, (PROMPTS, PROMPT)).repeat_interleave(GROUP, 0)
    responses = torch.randint(0, VOCAB, (PROMPTS * GROUP, RESPONSE))
    heldout = torch.randint(0, VOCAB, (HELDOUT, PROMPT + RESPONSE))

    def update():
        log_probs, _ = response_log_probs(model, prompts, responses)
        optimizer.zero_grad()
        log_probs.mean().backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    return (_median_cpu_time(update, repeats),
            _median_cpu_time(lambda: greedy_accuracy(model, (heldout, heldout), torch.device("cpu")), repeats))


def _stacked(m: int, repeats: int):
    from openrlhf_cfpo.lab.engine import Shape, StackedAdamW, StackedLlama, clip_grad_norm, init_parameters, repeat_rows

    shape = Shape(VOCAB, HIDDEN, LAYERS, HEADS, 2 * HIDDEN, PROMPT + RESPONSE)
    stack = StackedLlama.from_models(
        shape, [init_parameters(shape, False, torch.Generator().manual_seed(i)) for i in range(m)]).requires_grad_()
    optimizer = StackedAdamW(stack.params, lr=3e-4, betas=(0.9, 0.95), weight_decay=0.0)
    prompts = torch.randint(0, VOCAB, (m, PROMPTS, PROMPT))
    responses = torch.randint(0, VOCAB, (m, PROMPTS * GROUP, RESPONSE))
    rows = torch.arange(PROMPTS).repeat_interleave(GROUP).expand(m, -1)
    heldout = torch.randint(0, VOCAB, (m, HELDOUT, PROMPT + RESPONSE))

    def update():
        encoded, cache = stack.logits(prompts)
        first = encoded[:, :, -1:].gather(1, rows[:, :, None, None].expand(-1, -1, 1, VOCAB))
        rest, _ = stack.logits(responses[:, :, :-1], repeat_rows(cache, rows))
        log_probs = torch.cat([first, rest], dim=2).log_softmax(-1).gather(-1, responses[..., None])
        optimizer.zero_grad()
        log_probs.mean(dim=(1, 2, 3)).sum().backward()
        clip_grad_norm(stack.params, 1.0)
        optimizer.step()

    def evaluate():
        with torch.no_grad():
            stack.logits(heldout)

    return _median_cpu_time(update, repeats) / m, _median_cpu_time(evaluate, repeats) / m


def _matmul_gflops(repeats: int) -> float:
    """The best float32 throughput of the engine's largest product: (stack, 2816, 64) @ (stack, 64, 64)."""
    x, w = torch.randn(20, HELDOUT * (PROMPT + RESPONSE), HIDDEN), torch.randn(20, HIDDEN, HIDDEN)
    seconds = min(_median_cpu_time(lambda: torch.bmm(x, w), 1) for _ in range(repeats))
    return 2 * x.numel() * HIDDEN / seconds / 1e9


def _sweep_flops() -> float:
    """Multiply-adds x 2 of the default sweep: per token, every weight matrix once (attention scores and
    the tiny LM head aside); backward is twice the forward."""
    per_token = 2 * LAYERS * (4 * HIDDEN * HIDDEN + 3 * HIDDEN * 2 * HIDDEN)
    update_tokens = PROMPTS * PROMPT + PROMPTS * GROUP * (RESPONSE - 1)
    return per_token * (3 * update_tokens * SWEEP_UPDATES + HELDOUT * (PROMPT + RESPONSE) * SWEEP_EVALS)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stacks", default="1,8,20", help="stack sizes M to time [1,8,20]")
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions per figure [5]")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    today = _today(args.repeats)
    rows = [("today (LlamaForCausalLM, one per cell)", *today)]
    for m in (int(s) for s in args.stacks.split(",")):
        rows.append((f"stacked engine, M = {m}", *_stacked(m, args.repeats)))
    print("| path | update ms per model | evaluation ms per model |\n|---|---:|---:|")
    for name, update, evaluate in rows:
        print(f"| {name} | {1e3 * update:.2f} | {1e3 * evaluate:.2f} |")
    print(f"update ratio today/stacked (best stack): {today[0] / min(r[1] for r in rows[1:]):.2f}")
    print(f"evaluation ratio today/stacked (best stack): {today[1] / min(r[2] for r in rows[1:]):.2f}")
    gflops = _matmul_gflops(args.repeats)
    flops = _sweep_flops()
    print(f"default RLVR sweep: {flops / 1e12:.1f} TFLOP in matrix products; at the best measured "
          f"{gflops:.0f} GFLOP/s per core that is at least {flops / gflops / 1e9:.0f} s of CPU time")


if __name__ == "__main__":
    main()
