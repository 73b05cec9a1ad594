"""
A decoder-only transformer over the joint text + SNAC vocabulary (see tokenizer.py for the layout).

Notable choices:
- one embedding table over text ids, special ids and audio codes; the table is padded to a multiple of 64
  rows for fast matmuls, and the padded ids are never sampled
- pre-norm blocks with a parameter-free LayerNorm (no scale or bias, as OLMo: Groeneveld et al. 2024), rotary
  position embeddings, causal attention through
  scaled_dot_product_attention (written out in bf16 on CPU, and in float32 on CPU given a slice of the queries at
  a time, where each is faster), a GELU MLP, no biases, optional weight tying (on by default)
- forward(idx, targets) returns (logits, loss); targets equal to IGNORE_INDEX (-1) carry no loss, which
  is how training puts the loss on the target span only (TTS: the audio, ASR: the transcript)
- `hidden(idx, start)` also writes into a static KV cache the gpt-fast way (preallocated buffers, one per layer);
  generate.py sets the cache up and runs prefill, one-token decoding and sampling. `forward_naive` recomputes
  everything and is kept as the reference the tests compare against
- configure_optimizers: AdamW, or Muon for the matrices inside the blocks and AdamW for the rest (Optimizers steps
  the two as one)

Run it to print a model's parameter counts and FLOPs:  python model.py --n_layer=4 --n_embd=256
"""
import math
from dataclasses import dataclass, asdict

import torch
import torch.nn as nn
import torch.nn.functional as F

from configurator import apply_overrides, run

IGNORE_INDEX = -1


@dataclass
class GPTConfig:
    vocab_size: int = 12554      # the real vocabulary size (Tokenizer.vocab_size); the table is padded
    block_size: int = 1024       # longest sequence the model is trained on
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 256
    rope_theta: float = 10000.0
    tie_weights: bool = True     # share the embedding with the output layer
    dropout: float = 0.0

    @property
    def padded_vocab_size(self):
        return (self.vocab_size + 63) // 64 * 64


def norm(x):
    # LayerNorm rather than RMSNorm: on CPU layer_norm is one fused kernel and rms_norm a chain of elementwise ops,
    # 2.5 vs 9.5 ms forward + backward on (4096, 256), ~3 % of an eager training step of the reference model
    return F.layer_norm(x, (x.size(-1),))


def rotary_tables(head_dim, max_len, theta):
    """cos (T, 1, hd) over both halves of a head, and sin (T, 1, hd) with its first half negated, for apply_rotary."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    freqs = torch.outer(torch.arange(max_len, dtype=torch.float32), inv_freq)[:, None, :]  # (T, 1, hd/2)
    return torch.cat([freqs.cos(), freqs.cos()], -1), torch.cat([-freqs.sin(), freqs.sin()], -1)


def apply_rotary(x, cos, sin):
    # x: (B, T, heads, hd). Rotate pairs (first half, second half) of each head: x * cos + (halves swapped) * sin,
    # three ops; written as two halves and a cat it took 4x longer forward + backward on CPU (eager)
    xf = x.float()
    return torch.addcmul(xf * cos, xf.roll(x.size(-1) // 2, dims=-1), sin).type_as(x)


class KVCache(nn.Module):
    """Preallocated keys and values for one layer; positions [0, length) are valid."""

    def __init__(self, batch_size, max_len, n_head, head_dim, dtype):
        super().__init__()
        shape = (batch_size, n_head, max_len, head_dim)
        self.register_buffer('k', torch.zeros(shape, dtype=dtype), persistent=False)
        self.register_buffer('v', torch.zeros(shape, dtype=dtype), persistent=False)

    def update(self, start, k, v):
        end = start + k.size(2)
        self.k[:, :, start:end] = k
        self.v[:, :, start:end] = v
        return self.k[:, :, :end], self.v[:, :, :end]


def attend_one_token(q, k, v):
    """q (B, nh, 1, hd) over k, v (B, nh, L, hd): softmax attention written out, no kernel choice involved."""
    return torch.softmax((q @ k.transpose(-2, -1)).float() * q.size(-1) ** -0.5, dim=-1).to(v.dtype) @ v


def causal_attention(q, k, v):
    """q, k, v (B, nh, T, hd): causal softmax attention written out over a whole sequence. Unlike attend_one_token
    the softmax stays in the inputs' dtype: a float32 (B, nh, T, T) made a bf16 step slower than the flash kernel."""
    T = q.size(-2)
    future = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)
    scores = (q * q.size(-1) ** -0.5) @ k.transpose(-2, -1)
    return scores.masked_fill(future, float('-inf')).softmax(dim=-1).to(v.dtype) @ v


def causal_attention_in_chunks(q, k, v, chunks=4):
    """q, k, v (B, nh, T, hd): causal attention as `chunks` calls of the flash kernel, each a slice of the queries
    over the keys up to its end (a mask inside the last block). On CPU in float32 this measured 1.3-1.6x faster,
    forward and backward, than one is_causal call at the demo's shapes, and a demo step 5-7 % faster
    (docs/results.md, Training throughput)."""
    T = q.size(-2)
    size = -(-T // chunks)
    out = []
    for s in range(0, T, size):
        e = min(s + size, T)
        sees = torch.ones(e - s, e, dtype=torch.bool, device=q.device).tril(s)  # query s + i sees keys 0 .. s + i
        out.append(F.scaled_dot_product_attention(q[:, :, s:e], k[:, :, :e], v[:, :, :e], attn_mask=sees))
    return torch.cat(out, dim=2)


class CausalSelfAttention(nn.Module):

    def __init__(self, config):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        self.n_head, self.head_dim = config.n_head, config.n_embd // config.n_head
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=False)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=False)
        self.dropout = config.dropout
        self.cache = None

    def forward(self, x, cos, sin, start=None, mask=None):
        B, T, C = x.size()
        qkv = self.qkv(x).view(B, T, 3 * self.n_head, self.head_dim)
        # rotate queries and keys in one pass: half the elementwise ops, which are most of RoPE's cost on CPU
        qk = apply_rotary(qkv[:, :, :2 * self.n_head], cos, sin).transpose(1, 2)  # (B, 2 nh, T, hd)
        q, k = qk.split(self.n_head, dim=1)
        v = qkv[:, :, 2 * self.n_head:].transpose(1, 2)  # (B, nh, T, hd)
        if start is not None:  # inference with the cache: attend to everything written so far
            k, v = self.cache.update(start, k, v)
            q = q.to(k.dtype)  # the cache may be float32 under bf16 weights (generate.setup_cache)
        dropout = self.dropout if self.training else 0.0
        if T == 1 and mask is None and start is not None and x.device.type != 'cpu':
            # one new token over the cache on a GPU: two batched matrix-vector products and a softmax, written out.
            # In bf16, SDPA picked cuDNN's kernel there, set up anew for every cache length (see generate.PREFILL_ATTENTION):
            # one-shot TTS decoded at 14 tokens/s on an H100 that way, 150 this way. (On CPU, inductor's attention
            # pattern turns this form back into the CPU flash kernel anyway: SDPA it is, eager or compiled.)
            y = attend_one_token(q, k, v)
        elif mask is not None:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        elif start is None and T > 1 and x.device.type == 'cpu' and q.dtype == torch.bfloat16 and not dropout:
            # a whole sequence in bf16 on CPU (training, evaluation): the CPU flash kernel was 60 % of a demo step
            # (torch.profiler); written out, a demo step took a fifth less time (docs/results.md, Training throughput).
            # In float32 the kernel is the faster one, given a slice of the queries at a time
            y = causal_attention(q, k, v)
        elif start is None and T >= 256 and x.device.type == 'cpu' and not dropout:
            # measured at the training length, 512; shorter sequences keep the one call
            y = causal_attention_in_chunks(q, k, v)
        else:  # a single new token attends to all the cache; a fresh sequence is causal
            y = F.scaled_dot_product_attention(q, k, v, is_causal=T > 1, dropout_p=dropout)
        if start is not None:
            y = y.to(x.dtype)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.proj(y)


class MLP(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=False)
        self.proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=False)

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x)))  # exact GELU: on CPU the tanh form ran 2x slower (torch.profiler)


class Block(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.attn = CausalSelfAttention(config)
        self.mlp = MLP(config)

    def forward(self, x, cos, sin, start=None, mask=None):
        x = x + self.attn(norm(x), cos, sin, start, mask)
        return x + self.mlp(norm(x))


class GPT(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.padded_vocab_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.lm_head = nn.Linear(config.n_embd, config.padded_vocab_size, bias=False)
        if config.tie_weights:
            self.lm_head.weight = self.wte.weight
        cos, sin = rotary_tables(config.n_embd // config.n_head, config.block_size, config.rope_theta)
        self.register_buffer('cos', cos, persistent=False)
        self.register_buffer('sin', sin, persistent=False)
        self.apply(self._init_weights)
        # GPT-2: scale the residual projections by 1/sqrt(2 * n_layer) so the residual stream keeps its size
        for name, p in self.named_parameters():
            if name.endswith('proj.weight'):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    # --- sizes and costs
    def num_params(self, non_embedding=True):
        """Parameter count. Non-embedding (the scaling-law convention used here) leaves out the token
        embedding and the output layer: with a joint vocabulary of ~12k+ ids they dominate small models."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.wte.weight.numel()
            if not self.config.tie_weights:
                n -= self.lm_head.weight.numel()
        return n

    def flops_per_token(self, seq_len=None, logit_fraction=1.0):
        """Training FLOPs per token (forward + backward = 3x forward), output layer included:
        6 * (non-embedding params + output layer) + 12 * n_layer * n_embd * seq_len for attention
        (Kaplan et al. 2020, PaLM appendix B). logit_fraction: the share of positions that ran the output layer
        (forward(all_logits=False) runs it at loss positions only); scaling laws count it at every position."""
        c = self.config
        T = seq_len or c.block_size
        output_layer = c.n_embd * c.padded_vocab_size * logit_fraction
        return 6 * (self.num_params(non_embedding=True) + output_layer) + 12 * c.n_layer * c.n_embd * T

    def estimate_mfu(self, tokens_per_second, peak_flops, seq_len=None, logit_fraction=1.0):
        """Model FLOPs utilisation: achieved training FLOP/s over the device's peak."""
        return self.flops_per_token(seq_len, logit_fraction) * tokens_per_second / peak_flops

    # --- forward
    def hidden(self, idx, start=None, mask=None):
        """idx (B, T) -> the final normed hidden states (B, T, C). start: also write keys and values into the KV
        cache from this position, and attend to all of it (generate.py sets the cache up); mask (B, 1, T, L) bool
        keeps left padding out of attention."""
        B, T = idx.size()
        pos0 = 0 if start is None else start
        assert pos0 + T <= self.config.block_size, f"sequence of {pos0 + T} tokens exceeds block_size {self.config.block_size}"
        cos, sin = self.cos[pos0:pos0 + T], self.sin[pos0:pos0 + T]
        x = self.drop(self.wte(idx))  # (B, T, C)
        for block in self.blocks:
            x = block(x, cos, sin, start, mask)
        return norm(x)

    def forward(self, idx, targets=None, all_logits=True):
        """idx (B, T) -> (logits, loss). With targets: logits for every position and the mean loss over
        targets != IGNORE_INDEX. Without: logits for the last position only (B, 1, V).
        all_logits=False (training): returns (None, loss) and, outside torch.compile, runs the output layer only
        at the positions that carry a loss. With a 12.5k-id vocabulary the output layer is most of a small model's
        work, and an ASR window's loss sits on its transcripts only: a tiny-demo step ran ~1.8x faster."""
        x = self.hidden(idx)
        if targets is None:
            return F.linear(x[:, -1:, :], self.lm_head.weight[:self.config.vocab_size]), None  # (B, 1, V)
        if not all_logits and not torch.compiler.is_compiling():  # compiled graphs want static shapes: all positions
            counted = targets != IGNORE_INDEX
            x, targets = x[counted], targets[counted]  # (N, C), (N,)
        logits = self.lm_head(x)[..., :self.config.vocab_size]  # (B, T, V): padded ids take no probability mass
        # a sum over the counted targets, not a mean: a batch whose window holds no target gives 0, not NaN
        loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1),
                               ignore_index=IGNORE_INDEX, reduction='sum') / (targets != IGNORE_INDEX).sum().clamp(min=1)
        return (logits if all_logits else None), loss

    def forward_naive(self, idx):
        """All-position logits (B, T, V) without any cache: the reference for tests."""
        return self.lm_head(self.hidden(idx))[..., :self.config.vocab_size]

    # --- optimizer
    def configure_optimizers(self, weight_decay, learning_rate, betas, device_type, optimizer='adamw'):
        """AdamW with decay on matrices only (not on norms, which have no weights here, or on 1-D params).
        optimizer='muon': the blocks' matrices take Muon (Jordan et al. 2024: momentum orthogonalised by Newton-Schulz
        iterations), the embedding (and the output layer tied to it) stays on AdamW, as Muon's authors advise. The
        update is scaled to AdamW's size (Moonshot's rule, Liu et al. 2025), so one learning rate serves both."""
        params = [p for p in self.parameters() if p.requires_grad]
        if optimizer not in ('adamw', 'muon'):
            raise ValueError(f"--optimizer={optimizer}: choose adamw or muon")
        fused = device_type == 'cuda'
        hidden = [p for p in self.blocks.parameters() if p.requires_grad and p.dim() == 2] if optimizer == 'muon' else []
        ids = {id(p) for p in hidden}
        rest = [p for p in params if id(p) not in ids]
        decay = [p for p in rest if p.dim() >= 2]
        no_decay = [p for p in rest if p.dim() < 2]
        groups = [{'params': decay, 'weight_decay': weight_decay}, {'params': no_decay, 'weight_decay': 0.0}]
        adamw = torch.optim.AdamW(groups, lr=learning_rate, betas=betas, fused=fused)
        if not hidden:
            return adamw
        return Optimizers(adamw, Muon(hidden, lr=learning_rate, weight_decay=weight_decay))


def orthogonalize(g, steps=5):
    """The nearest semi-orthogonal matrix to g, roughly: U S' V^T for g = U S V^T, with S' near 1 (between ~0.5 and
    ~1.5, by design) rather than exactly 1: Muon's quintic Newton-Schulz iteration and coefficients (Jordan et al.
    2024). bf16 on GPUs as the authors run it; float32 on CPU, where bf16 matmuls are emulated on AVX2-only cores and
    ~15x slower."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.to(torch.bfloat16 if g.is_cuda else torch.float32)
    tall = x.size(0) > x.size(1)
    if tall:
        x = x.T
    x = x / (x.norm() + 1e-7)  # spectral norm <= Frobenius norm <= 1
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x.T if tall else x).to(g.dtype)


class Muon(torch.optim.Optimizer):
    """SGD with Nesterov momentum whose update, a matrix, is orthogonalized (Jordan et al. 2024, "Muon"), for the
    2-D weights inside the blocks. The update is scaled by 0.2 sqrt(max(rows, cols)) to the size of an AdamW update
    (Liu et al. 2025, "Muon is scalable for LLM training"), so AdamW's learning rate and weight decay carry over."""

    def __init__(self, params, lr, weight_decay=0.0, momentum=0.95, ns_steps=5):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum, ns_steps=ns_steps))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group['params']:
                if p.grad is None:
                    continue
                state = self.state[p]
                if 'momentum_buffer' not in state:
                    state['momentum_buffer'] = torch.zeros_like(p)
                buf = state['momentum_buffer']
                buf.lerp_(p.grad, 1 - group['momentum'])
                update = orthogonalize(p.grad.lerp(buf, group['momentum']), group['ns_steps'])  # Nesterov
                p.mul_(1 - group['lr'] * group['weight_decay'])
                p.add_(update, alpha=-group['lr'] * 0.2 * max(p.shape) ** 0.5)


class Optimizers:
    """Several optimizers stepped as one: train.py sets the learning rate on param_groups, steps, zeroes and saves."""

    def __init__(self, *optimizers):
        self.optimizers = optimizers

    @property
    def param_groups(self):
        return [g for o in self.optimizers for g in o.param_groups]

    def step(self):
        for o in self.optimizers:
            o.step()

    def zero_grad(self, set_to_none=True):
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)

    def state_dict(self):
        return {'optimizers': [o.state_dict() for o in self.optimizers]}

    def load_state_dict(self, state):
        if len(state.get('optimizers', ())) != len(self.optimizers):
            raise ValueError("the checkpoint's optimizer state is of another --optimizer")
        for o, s in zip(self.optimizers, state['optimizers']):
            o.load_state_dict(s)


def main(argv):
    model = GPT(GPTConfig(**apply_overrides(asdict(GPTConfig()), argv)))
    print(model.config)
    print(f"parameters: {model.num_params(False) / 1e6:.2f} M total, {model.num_params() / 1e6:.2f} M non-embedding")
    print(f"training FLOPs per token at block_size: {model.flops_per_token() / 1e6:.1f} M")


if __name__ == '__main__':
    run(main)
