"""Many tiny Llamas as one batched model: the lab's engine.

``StackedLlama`` holds M independent models of transformers' ``LlamaForCausalLM`` architecture
(RMSNorm, rotary position embeddings, SwiGLU MLP, causal multi-head attention, untied LM head), each
parameter stacked along a leading model dimension, so one forward and one backward serve all of
them: every matrix product is a ``torch.bmm`` whose batch dimension runs over the models (and rows),
every other operation is elementwise or reduces within one model. A model's numbers therefore do not
depend on how many models share the stack (tested bit for bit), and each model's gradient is that of
its own loss (the losses are summed, and no operation mixes models).

``StackedAdamW`` is ``torch.optim.AdamW`` for every model separately (its own step count, and
``active`` masks that leave an idle model's parameters and moments exactly as they were);
``clip_grad_norm`` is ``torch.nn.utils.clip_grad_norm_`` per model. ``from_llama``/``to_llama``
move one model between the stack and a ``LlamaForCausalLM`` (tested equal: logits and gradients).

With ``value_head=True`` the models are reward models in the shape of OpenRLHF's: a scalar linear
head on the last token's final hidden state instead of the LM head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch

# transformers' LlamaConfig defaults that the lab keeps.
RMS_EPS = 1e-6
ROPE_THETA = 10000.0
INIT_STD = 0.02

KV = List[Tuple[torch.Tensor, torch.Tensor]]  # per layer: keys and values (M, rows, heads, positions, head_dim)


@dataclass(frozen=True)
class Shape:
    """The architecture of every model in a stack."""

    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_positions: int

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


def _layer_names(i: int) -> Tuple[str, ...]:
    return tuple(f"layers.{i}.{n}" for n in ("input_norm", "q", "k", "v", "o", "post_norm", "gate", "up", "down"))


def parameter_shapes(shape: Shape, value_head: bool) -> Dict[str, Tuple[int, ...]]:
    """Each parameter's shape for one model; matrices are stored (in, out), so ``x @ W`` applies them."""
    h, i = shape.hidden_size, shape.intermediate_size
    shapes = {"embed": (shape.vocab_size, h)}
    for layer in range(shape.num_layers):
        names = _layer_names(layer)
        shapes.update({names[0]: (h,), names[1]: (h, h), names[2]: (h, h), names[3]: (h, h), names[4]: (h, h),
                       names[5]: (h,), names[6]: (h, i), names[7]: (h, i), names[8]: (i, h)})
    shapes["norm"] = (h,)
    shapes["head"] = (h, 1) if value_head else (h, shape.vocab_size)
    return shapes


def init_parameters(shape: Shape, value_head: bool, generator: torch.Generator) -> Dict[str, torch.Tensor]:
    """One model's parameters as transformers initialises a Llama: N(0, 0.02) matrices and embedding,
    norms at 1 (drawn from ``generator`` in a fixed order, so they depend on its seed alone)."""
    params = {}
    for name, dims in parameter_shapes(shape, value_head).items():
        if len(dims) == 1:
            params[name] = torch.ones(dims)
        else:
            params[name] = torch.empty(dims).normal_(0.0, INIT_STD, generator=generator)
    return params


def _rms_norm(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """LlamaRMSNorm: x / sqrt(mean(x²) + eps) · weight, with weight (M, h) broadcast over rows."""
    variance = x.pow(2).mean(-1, keepdim=True)
    shape = (weight.shape[0],) + (1,) * (x.dim() - 2) + (weight.shape[1],)
    return weight.view(shape) * (x * torch.rsqrt(variance + RMS_EPS))


def _linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x (M, ..., in) @ weight (M, in, out): one bmm over the models."""
    m, inner = x.shape[0], x.shape[-1]
    out = torch.bmm(x.reshape(m, -1, inner), weight)
    return out.view(*x.shape[:-1], weight.shape[-1])


def _softmax(scores: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dimension, as elementwise ops over the whole tensor: several times faster
    than ``Tensor.softmax`` on the many 11-long rows of the lab's attention (same formula: the row
    maximum is subtracted before exp)."""
    exp = (scores - scores.amax(dim=-1, keepdim=True)).exp()
    return exp / exp.sum(dim=-1, keepdim=True)


class StackedLlama:
    """M Llama models (or reward models with ``value_head``) whose parameters are stacked tensors
    (M, ...) in ``params``; every method takes and returns tensors with the model dimension first."""

    def __init__(self, shape: Shape, params: Dict[str, torch.Tensor], value_head: bool = False):
        self.shape, self.params, self.value_head = shape, params, value_head
        head_dim = shape.head_dim
        inv_freq = 1.0 / (ROPE_THETA ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
        angles = torch.arange(shape.max_positions).float()[:, None] * inv_freq[None, :]
        angles = torch.cat((angles, angles), dim=-1)
        self.cos, self.sin = angles.cos(), angles.sin()

    @classmethod
    def from_models(cls, shape: Shape, models: Sequence[Dict[str, torch.Tensor]], value_head: bool = False):
        """A stack of the given models' parameters (copied), in that order; the parameters in
        ``parameter_shapes``' order whatever the order of the dicts given (the per-model gradient norm
        sums over them in order, so the order is part of the numbers)."""
        params = {name: torch.stack([m[name] for m in models]).contiguous()
                  for name in parameter_shapes(shape, value_head)}
        return cls(shape, params, value_head)

    @property
    def size(self) -> int:
        return self.params["embed"].shape[0]

    def model(self, index: int) -> Dict[str, torch.Tensor]:
        """A copy of model ``index``'s parameters."""
        return {name: p[index].detach().clone() for name, p in self.params.items()}

    def requires_grad_(self, flag: bool = True) -> "StackedLlama":
        for p in self.params.values():
            p.requires_grad_(flag)
        return self

    # --- forward ------------------------------------------------------------------------------

    def _attention(self, x: torch.Tensor, layer: int, start: int, prefix: Optional[Tuple[torch.Tensor, torch.Tensor]]):
        """Causal self-attention of new positions ``start..start+t`` (x: M, rows, t, h) over ``prefix``
        keys/values (positions 0..start) and themselves; returns the output and this call's keys/values
        including the prefix.

        One bmm gives q, k, v and the rotated halves that rotary embeddings need: rotate_half(x W) =
        x (W R) for a fixed signed permutation R, so the weights [W_q, W_q R, W_k, W_k R, W_v] are
        applied at once."""
        p, s = self.params, self.shape
        names = _layer_names(layer)
        m, rows, t, _ = x.shape
        heads, head_dim = s.num_heads, s.head_dim
        wq, wk = p[names[1]], p[names[2]]
        weight = torch.cat((wq, self._rotate(wq), wk, self._rotate(wk), p[names[3]]), dim=2)
        qkv = _linear(x, weight).view(m, rows, t, 5, heads, head_dim).permute(3, 0, 1, 4, 2, 5)
        cos, sin = self.cos[start:start + t], self.sin[start:start + t]
        q = qkv[0] * cos + qkv[1] * sin
        k = qkv[2] * cos + qkv[3] * sin
        v = qkv[4]
        if prefix is not None:
            k, v = torch.cat((prefix[0], k), dim=3), torch.cat((prefix[1], v), dim=3)
        total = k.shape[3]
        flat = m * rows * heads
        scores = torch.bmm(q.reshape(flat, t, head_dim), k.reshape(flat, total, head_dim).transpose(1, 2))
        scores = scores * (1.0 / math.sqrt(head_dim))
        if t > 1:
            future = torch.ones(t, total, dtype=torch.bool).triu(total - t + 1)
            scores = scores.masked_fill(future, float("-inf"))
        weights = _softmax(scores)
        out = torch.bmm(weights, v.reshape(flat, total, head_dim)).view(m, rows, heads, t, head_dim)
        out = out.transpose(2, 3).reshape(m, rows, t, heads * head_dim)
        return _linear(out, p[names[4]]), (k, v)

    def _rotate(self, weight: torch.Tensor) -> torch.Tensor:
        """weight (M, h, heads*head_dim) with each head's output columns rotated: rotate_half per head."""
        m, h, out = weight.shape
        half = self.shape.head_dim // 2
        per_head = weight.view(m, h, self.shape.num_heads, 2, half)
        return torch.stack((-per_head[..., 1, :], per_head[..., 0, :]), dim=3).view(m, h, out)

    def hidden_states(self, input_ids: torch.Tensor, prefix: Optional[KV] = None) -> Tuple[torch.Tensor, KV]:
        """Final (normed) hidden states (M, rows, t, h) of ``input_ids`` (M, rows, t), which continue
        ``prefix`` (keys/values of the positions before them, or None), and the keys/values of all
        positions so far."""
        p = self.params
        start = 0 if prefix is None else prefix[0][0].shape[3]
        one_hot = torch.nn.functional.one_hot(input_ids, self.shape.vocab_size).to(p["embed"].dtype)
        x = _linear(one_hot, p["embed"])  # the embedding lookup as a product: a plain bmm backward
        cache = []
        for layer in range(self.shape.num_layers):
            names = _layer_names(layer)
            attended, kv = self._attention(_rms_norm(x, p[names[0]]), layer, start,
                                           None if prefix is None else prefix[layer])
            cache.append(kv)
            x = x + attended
            gate, up = _linear(_rms_norm(x, p[names[5]]), torch.cat((p[names[6]], p[names[7]]), dim=2)).chunk(2, -1)
            x = x + _linear(torch.nn.functional.silu(gate) * up, p[names[8]])
        return _rms_norm(x, p["norm"]), cache

    def logits(self, input_ids: torch.Tensor, prefix: Optional[KV] = None) -> Tuple[torch.Tensor, KV]:
        """LM logits (M, rows, t, vocab) and keys/values, as ``LlamaForCausalLM`` computes them."""
        hidden, cache = self.hidden_states(input_ids, prefix)
        return _linear(hidden, self.params["head"]), cache

    def scores(self, input_ids: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """Reward-model scores (M, rows): the value head on the hidden state at position ``last``
        (M, rows) of each row, the last token of the response (OpenRLHF's reward model reads the
        final hidden state at the last non-padding token)."""
        hidden, _ = self.hidden_states(input_ids)
        index = last[..., None, None].expand(*last.shape, 1, hidden.shape[-1])
        final = hidden.gather(2, index).squeeze(2)
        return _linear(final, self.params["head"]).squeeze(-1)


def repeat_rows(cache: KV, index: torch.Tensor) -> KV:
    """Keys/values with their rows gathered by ``index`` (M, new_rows) per model: a prompt's
    positions encoded once, shared by its responses (differentiable: a prompt's gradient sums over
    the rows that use it)."""
    out = []
    for k, v in cache:
        m, _, heads, t, d = k.shape
        expand = index[:, :, None, None, None].expand(m, index.shape[1], heads, t, d)
        out.append((k.gather(1, expand), v.gather(1, expand)))
    return out


# --- optimisation, per model ----------------------------------------------------------------------


def clip_grad_norm(params: Dict[str, torch.Tensor], max_norm: float):
    """``torch.nn.utils.clip_grad_norm_`` for each model of a stack: the global L2 norm of model m's
    gradients, and its gradients scaled by min(1, max_norm / (norm + 1e-6)). Returns the norms (M,)."""
    grads = [p.grad for p in params.values()]
    m = grads[0].shape[0]
    # One reduction per model slice: a reduction over a (M, n) tensor's rows may sum in another order
    # than the same row alone, which would make a model's update depend on the stack's size.
    total = torch.stack([torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g[i]) for g in grads]))
                         for i in range(m)])
    coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(coef.view(m, *(1,) * (g.dim() - 1)))
    return total


class StackedAdamW:
    """``torch.optim.AdamW`` (decoupled weight decay, bias-corrected moments) for every model of a
    stack on its own: each model has its own step count, and ``step(active)`` updates only the
    models where ``active`` is True, leaving the others' parameters and moments bit for bit."""

    def __init__(self, params: Dict[str, torch.Tensor], lr: float, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01):
        self.params, self.lr, self.betas, self.eps, self.weight_decay = params, lr, betas, eps, weight_decay
        m = next(iter(params.values())).shape[0]
        self.steps = torch.zeros(m, dtype=torch.float64)
        self.exp_avg = {n: torch.zeros_like(p) for n, p in params.items()}
        self.exp_avg_sq = {n: torch.zeros_like(p) for n, p in params.items()}

    def zero_grad(self) -> None:
        for p in self.params.values():
            p.grad = None

    @torch.no_grad()
    def step(self, active: Optional[torch.Tensor] = None) -> None:
        m = self.steps.shape[0]
        active = torch.ones(m, dtype=torch.bool) if active is None else active
        self.steps += active.double()
        beta1, beta2 = self.betas
        # The bias corrections as torch computes them for a float step (Python floats, per model).
        step_size = torch.tensor([self.lr / (1 - beta1 ** s) if s > 0 else 0.0 for s in self.steps.tolist()])
        correction2_sqrt = torch.tensor([math.sqrt(1 - beta2 ** s) if s > 0 else 1.0 for s in self.steps.tolist()])
        for name, p in self.params.items():
            view = (m,) + (1,) * (p.dim() - 1)
            keep = active.view(view)
            grad = p.grad
            exp_avg, exp_avg_sq = self.exp_avg[name], self.exp_avg_sq[name]
            new_avg = exp_avg.lerp(grad, 1 - beta1)
            new_avg_sq = exp_avg_sq * beta2 + grad * grad * (1 - beta2)
            denom = new_avg_sq.sqrt() / correction2_sqrt.view(view) + self.eps
            decayed = p * (1 - self.lr * self.weight_decay) if self.weight_decay else p
            updated = decayed - step_size.view(view) * (new_avg / denom)
            p.copy_(torch.where(keep, updated, p))
            exp_avg.copy_(torch.where(keep, new_avg, exp_avg))
            exp_avg_sq.copy_(torch.where(keep, new_avg_sq, exp_avg_sq))

    def state(self, index: int) -> Dict[str, torch.Tensor]:
        """Model ``index``'s optimizer state (copies): its step count and moments."""
        return {"steps": self.steps[index].clone(),
                **{f"avg/{n}": t[index].clone() for n, t in self.exp_avg.items()},
                **{f"avg_sq/{n}": t[index].clone() for n, t in self.exp_avg_sq.items()}}


# --- transformers interop ---------------------------------------------------------------------------

_HF_LAYER = {"input_norm": "input_layernorm.weight", "q": "self_attn.q_proj.weight", "k": "self_attn.k_proj.weight",
             "v": "self_attn.v_proj.weight", "o": "self_attn.o_proj.weight",
             "post_norm": "post_attention_layernorm.weight", "gate": "mlp.gate_proj.weight",
             "up": "mlp.up_proj.weight", "down": "mlp.down_proj.weight"}


def hf_names(shape: Shape, value_head: bool = False) -> Dict[str, str]:
    """Our parameter name -> its name in a ``LlamaForCausalLM`` state dict (the value head: ``score.weight``)."""
    names = {"embed": "model.embed_tokens.weight"}
    for layer in range(shape.num_layers):
        for ours, theirs in zip(_layer_names(layer), _HF_LAYER.values()):
            names[ours] = f"model.layers.{layer}.{theirs}"
    # in ``parameter_shapes``' order: a model's gradient norm sums its parameters in this order
    names.update(norm="model.norm.weight", head="score.weight" if value_head else "lm_head.weight")
    return names


def to_hf_state_dict(shape: Shape, params: Dict[str, torch.Tensor],
                     value_head: bool = False) -> Dict[str, torch.Tensor]:
    """One model's parameters as a ``LlamaForCausalLM`` state dict (matrices transposed to (out, in))."""
    names = hf_names(shape, value_head)
    return {names[n]: (p.t() if p.dim() == 2 and n != "embed" else p).detach().contiguous() for n, p in params.items()}


def from_hf_state_dict(shape: Shape, state: Dict[str, torch.Tensor],
                       value_head: bool = False) -> Dict[str, torch.Tensor]:
    """The inverse of ``to_hf_state_dict``."""
    names = hf_names(shape, value_head)
    return {n: (state[h].t() if state[h].dim() == 2 and n != "embed" else state[h]).detach().clone().contiguous()
            for n, h in names.items()}


def llama_config(shape: Shape, **special_tokens):
    """The ``LlamaConfig`` of this architecture (for checkpoints transformers can load)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=shape.vocab_size, hidden_size=shape.hidden_size, intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_layers, num_attention_heads=shape.num_heads, num_key_value_heads=shape.num_heads,
        max_position_embeddings=shape.max_positions, rms_norm_eps=RMS_EPS, rope_theta=ROPE_THETA,
        tie_word_embeddings=False, **special_tokens,
    )
