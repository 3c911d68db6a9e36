"""openrlhf_cfpo.lab.engine: a model in a stack is transformers' Llama (logits and gradients within
1e-5, float32), the value head is LlamaForSequenceClassification's, a model's numbers do not depend on
the stack around it (bit for bit), and the per-model AdamW and clipping are torch's."""

import pytest
import torch
from transformers import LlamaForCausalLM, LlamaForSequenceClassification

from openrlhf_cfpo.lab.engine import (
    Shape, StackedAdamW, StackedLlama, clip_grad_norm, from_hf_state_dict, hf_names, init_parameters, llama_config,
    parameter_shapes, repeat_rows, to_hf_state_dict,
)

SHAPE = Shape(vocab_size=14, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, max_positions=11)
TOL = dict(rtol=0, atol=1e-5)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _others(n, value_head=False):
    return [init_parameters(SHAPE, value_head, torch.Generator().manual_seed(100 + i)) for i in range(n)]


def _hf(cls, **kwargs):
    torch.manual_seed(0)
    model = cls(llama_config(SHAPE, bos_token_id=13, eos_token_id=12, **kwargs)).float()
    with torch.no_grad():  # norms away from 1, so that a misplaced norm weight shows
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


def _grads_by_our_name(model, value_head=False):
    grads = {theirs: p.grad for theirs, p in model.named_parameters()}
    return from_hf_state_dict(SHAPE, grads, value_head)


def test_a_model_in_the_stack_is_llama_for_causal_lm_logits_and_gradients():
    hf = _hf(LlamaForCausalLM)
    ids = torch.randint(0, SHAPE.vocab_size, (5, 11), generator=torch.Generator().manual_seed(1))
    others = _others(2)
    stack = StackedLlama.from_models(SHAPE, [others[0], from_hf_state_dict(SHAPE, hf.state_dict()), others[1]])
    stack.requires_grad_()
    logits, _ = stack.logits(ids.expand(3, -1, -1))
    reference = hf(input_ids=ids).logits
    torch.testing.assert_close(logits[1], reference, **TOL)
    weights = torch.randn(reference.shape, generator=torch.Generator().manual_seed(2))
    (reference * weights).sum().backward()
    (logits * weights).sum().backward()  # the other models' terms cannot reach model 1
    expected = _grads_by_our_name(hf)
    assert set(expected) == set(stack.params)
    for name, p in stack.params.items():
        torch.testing.assert_close(p.grad[1], expected[name], **TOL, msg=name)
    # and back: the slice is a LlamaForCausalLM state dict again (what a checkpoint holds)
    state = to_hf_state_dict(SHAPE, stack.model(1))
    assert all(torch.equal(state[k], v) for k, v in hf.state_dict().items())


def test_keys_and_values_of_a_prefix_continue_the_sequence():
    stack = StackedLlama.from_models(SHAPE, _others(2))
    ids = torch.randint(0, SHAPE.vocab_size, (2, 6, 11), generator=torch.Generator().manual_seed(3))
    full, _ = stack.logits(ids)
    head, cache = stack.logits(ids[:, :, :7])
    rest = []
    for position in range(7, 11):  # one token at a time, as sampling does
        step, cache = stack.logits(ids[:, :, position:position + 1], cache)
        rest.append(step)
    torch.testing.assert_close(torch.cat([head, *rest], dim=2), full, **TOL)
    # a prompt encoded once and its keys/values gathered for several rows
    prompts = ids[:, :2, :7]
    rows = torch.tensor([[0, 0, 1, 1, 1, 0]] * 2)
    _, cache = stack.logits(prompts)
    gathered, _ = stack.logits(torch.gather(ids[:, :2, 7:], 1, rows[..., None].expand(-1, -1, 4)),
                               repeat_rows(cache, rows))
    alone, _ = stack.logits(torch.gather(ids[:, :2], 1, rows[..., None].expand(-1, -1, 11)))
    torch.testing.assert_close(gathered, alone[:, :, 7:], **TOL)


def test_value_head_is_llama_for_sequence_classification_on_the_last_token():
    hf = _hf(LlamaForSequenceClassification, num_labels=1, pad_token_id=12)
    ids = torch.randint(0, 12, (4, 9), generator=torch.Generator().manual_seed(4))  # no pad token inside
    stack = StackedLlama.from_models(SHAPE, [_others(1, True)[0], from_hf_state_dict(SHAPE, hf.state_dict(), True)],
                                     value_head=True).requires_grad_()
    assert hf_names(SHAPE, True)["head"] == "score.weight"
    scores = stack.scores(ids.expand(2, -1, -1), torch.full((2, 4), 8))
    reference = hf(input_ids=ids).logits.squeeze(-1)  # the last non-pad token of each row: position 8
    torch.testing.assert_close(scores[1], reference, **TOL)
    reference.square().sum().backward()
    scores.square().sum().backward()
    expected = _grads_by_our_name(hf, True)
    for name, p in stack.params.items():
        torch.testing.assert_close(p.grad[1], expected[name], **TOL, msg=name)


def _loss_and_grads(models, index, ids):
    stack = StackedLlama.from_models(SHAPE, models).requires_grad_()
    logits, _ = stack.logits(ids.expand(len(models), -1, -1))
    logits.log_softmax(-1).mean(dim=(1, 2, 3)).sum().backward()
    return logits[index].detach(), {n: p.grad[index] for n, p in stack.params.items()}


@pytest.mark.parametrize("size", [2, 5])
def test_a_model_gets_the_same_bits_alone_or_in_a_stack(size):
    ids = torch.randint(0, SHAPE.vocab_size, (16, 11), generator=torch.Generator().manual_seed(5))
    models = _others(size)
    alone_logits, alone_grads = _loss_and_grads(models[1:2], 0, ids)
    logits, grads = _loss_and_grads(models, 1, ids)
    assert torch.equal(logits, alone_logits)
    assert all(torch.equal(grads[n], alone_grads[n]) for n in grads)


def test_per_model_adamw_and_clipping_are_torchs_and_an_idle_model_stays_put():
    models = _others(3)
    ids = torch.randint(0, SHAPE.vocab_size, (3, 4, 11), generator=torch.Generator().manual_seed(6))
    stack = StackedLlama.from_models(SHAPE, models).requires_grad_()
    optimizer = StackedAdamW(stack.params, lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1)
    singles = []
    for m in models:
        params = {n: p.clone().requires_grad_() for n, p in m.items()}
        singles.append((params, torch.optim.AdamW(list(params.values()), lr=1e-2, betas=(0.9, 0.95),
                                                  weight_decay=0.1)))
    active_by_step = [[True, True, True], [True, False, True], [True, True, True]]
    for step, active in enumerate(active_by_step):
        scale = 10.0 ** step  # step 2's gradients are large enough to be clipped
        logits, _ = stack.logits(ids)
        optimizer.zero_grad()
        (scale * logits.square().mean(dim=(1, 2, 3))).sum().backward()
        before = {n: p.detach().clone() for n, p in stack.params.items()}
        state_before = optimizer.state(1)
        norms = clip_grad_norm(stack.params, max_norm=1.0)
        optimizer.step(torch.tensor(active))
        for i, (params, single) in enumerate(singles):
            if not active[i]:
                assert all(torch.equal(stack.params[n][i], before[n][i]) for n in params)
                after = optimizer.state(i)
                assert all(torch.equal(after[k], state_before[k]) for k in after)
                continue
            single.zero_grad()
            one = StackedLlama(SHAPE, {n: p.unsqueeze(0) for n, p in params.items()})  # views: grads reach params
            (scale * one.logits(ids[i:i + 1])[0].square().mean()).backward()
            norm = torch.nn.utils.clip_grad_norm_(list(params.values()), 1.0)
            torch.testing.assert_close(norms[i], norm, rtol=1e-5, atol=0)
            single.step()
            for n, p in params.items():
                torch.testing.assert_close(stack.params[n][i], p.detach(), rtol=0, atol=1e-6, msg=n)
    assert optimizer.steps.tolist() == [3, 2, 3]
    assert norms[0] > 1.0  # the last step was clipped


def test_init_depends_on_the_generator_seed_only():
    a = init_parameters(SHAPE, False, torch.Generator().manual_seed(7))
    b = init_parameters(SHAPE, False, torch.Generator().manual_seed(7))
    c = init_parameters(SHAPE, False, torch.Generator().manual_seed(8))
    assert all(torch.equal(a[n], b[n]) for n in a) and not torch.equal(a["embed"], c["embed"])
    assert a["norm"].eq(1).all() and abs(a["layers.0.q"].std().item() - 0.02) < 0.005


def test_a_stack_orders_parameters_canonically_so_a_checkpoint_trains_like_the_model_it_saved():
    """Regression: a model loaded from a checkpoint (transformers' parameter order) trained to other
    bits than the model it saved, because the per-model gradient norm sums parameters in dict order."""
    params = init_parameters(SHAPE, False, torch.Generator().manual_seed(9))
    reloaded = from_hf_state_dict(SHAPE, to_hf_state_dict(SHAPE, params))
    a, b = StackedLlama.from_models(SHAPE, [params]), StackedLlama.from_models(SHAPE, [reloaded])
    assert list(a.params) == list(b.params) == list(parameter_shapes(SHAPE, False))
    ids = torch.randint(0, SHAPE.vocab_size, (1, 8, 11), generator=torch.Generator().manual_seed(10))
    norms = []
    for stack in (a, b):
        stack.requires_grad_()
        stack.logits(ids)[0].square().mean().backward()
        norms.append(clip_grad_norm(stack.params, 1.0))
    assert torch.equal(*norms)


def test_gradient_norms_do_not_depend_on_the_stack_size():
    models = _others(3)
    ids = torch.randint(0, SHAPE.vocab_size, (3, 8, 11), generator=torch.Generator().manual_seed(11))
    norms = []
    for chosen in ([0, 1, 2], [1]):
        stack = StackedLlama.from_models(SHAPE, [models[i] for i in chosen]).requires_grad_()
        stack.logits(ids[chosen])[0].square().mean(dim=(1, 2, 3)).sum().backward()
        norms.append(clip_grad_norm(stack.params, 1.0))
    assert torch.equal(norms[0][1], norms[1][0])
