"""
A decoder-only transformer over the joint text + SNAC vocabulary (see tokenizer.py for the layout).

Notable choices:
- one embedding table over text ids, special ids and audio codes; the table is padded to a multiple of 64
  rows for fast matmuls, and the padded ids are never sampled
- pre-norm blocks with a parameter-free LayerNorm (no scale or bias, as OLMo: Groeneveld et al. 2024), rotary
  position embeddings, causal attention through
  scaled_dot_product_attention, a GELU MLP, no biases, optional weight tying (on by default)
- forward(idx, targets) returns (logits, loss); targets equal to IGNORE_INDEX (-1) carry no loss, which
  is how training puts the loss on the target span only (TTS: the audio, ASR: the transcript)
- a static KV cache the gpt-fast way: preallocated buffers, prefill then one-token decode; `forward_naive`
  recomputes everything and is kept as the reference the tests compare against
- generate() takes a logits hook, so sample.py can apply the audio frame grammar

Run it to print a model's parameter counts and FLOPs:  python model.py --n_layer=4 --n_embd=256
"""
import math
import sys
from dataclasses import dataclass, asdict

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

IGNORE_INDEX = -1
# attention kernels for a prompt: not cuDNN's, which is set up anew for every sequence length (in bf16 on an H100
# that took 40 ms a length, up to 750 ms; flash and memory-efficient attention took 0.05 ms)
PREFILL_ATTENTION = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


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
            q = q.to(k.dtype)  # the cache may be float32 under bf16 weights (see setup_cache)
        dropout = self.dropout if self.training else 0.0
        if T == 1 and mask is None and start is not None and x.device.type != 'cpu':
            # one new token over the cache on a GPU: two batched matrix-vector products and a softmax, written out.
            # In bf16, SDPA picked cuDNN's kernel there, set up anew for every cache length (see PREFILL_ATTENTION):
            # one-shot TTS decoded at 14 tokens/s on an H100 that way, 150 this way. (On CPU, inductor's attention
            # pattern turns this form back into the CPU flash kernel anyway: SDPA it is, eager or compiled.)
            y = attend_one_token(q, k, v)
        elif mask is not None:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
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
        self.decode_step = None  # compile_decoding() sets a compiled decode_one here
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

    # --- training / full-sequence forward
    def forward(self, idx, targets=None, start=None, mask=None, all_logits=True, head_rows=None):
        """idx (B, T) -> (logits, loss). With targets: logits for every position and the mean loss over
        targets != IGNORE_INDEX. Without: logits for the last position only (B, 1, V).
        all_logits=False (training): returns (None, loss) and, outside torch.compile, runs the output layer only
        at the positions that carry a loss. With a 12.5k-id vocabulary the output layer is most of a small model's
        work, and an ASR window's loss sits on its transcripts only: a tiny-demo step ran ~1.8x faster.
        start: write into the KV cache from this position (inference; see setup_cache).
        head_rows (lo, hi), without targets: logits for ids lo..hi-1 only (B, 1, hi - lo). Inside an audio span the
        frame grammar allows one code range, a third of the vocabulary (sample.FrameGrammar.head_rows)."""
        B, T = idx.size()
        pos0 = 0 if start is None else start
        assert pos0 + T <= self.config.block_size, f"sequence of {pos0 + T} tokens exceeds block_size {self.config.block_size}"
        cos, sin = self.cos[pos0:pos0 + T], self.sin[pos0:pos0 + T]
        x = self.drop(self.wte(idx))  # (B, T, C)
        for block in self.blocks:
            x = block(x, cos, sin, start, mask)
        x = norm(x)
        if targets is None:
            lo, hi = head_rows or (0, self.config.vocab_size)  # the padded ids are never computed
            return F.linear(x[:, -1:, :], self.lm_head.weight[lo:hi]), None  # (B, 1, hi - lo)
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
        x = self.wte(idx)
        cos, sin = self.cos[:idx.size(1)], self.sin[:idx.size(1)]
        for block in self.blocks:
            x = block(x, cos, sin)
        return self.lm_head(norm(x))[..., :self.config.vocab_size]

    # --- inference with a static KV cache
    def setup_cache(self, batch_size, max_len=None, dtype=None):
        """Preallocate every layer's keys and values. The cache takes the weights' dtype, except on CPU, where it
        stays float32: without native bf16 arithmetic (AVX2), bf16 attention over 1024 cached positions costs ~6x
        float32's and made bf16 weights slower than float32 at long context (bench_generate.py)."""
        max_len = max_len or self.config.block_size
        device = self.wte.weight.device
        dtype = dtype or (torch.float32 if device.type == 'cpu' else self.wte.weight.dtype)
        for block in self.blocks:
            a = block.attn
            if a.cache is None or a.cache.k.shape != (batch_size, a.n_head, max_len, a.head_dim) or \
                    a.cache.k.dtype != dtype or a.cache.k.device != device:  # else reuse it: stale rows are never read
                a.cache = KVCache(batch_size, max_len, a.n_head, a.head_dim, dtype).to(device)
        if device.type == 'cpu' and self.wte.weight.dtype == torch.float32:  # bf16 on AVX2 ran 3x slower this way
            self.store_weights_transposed()

    def store_weights_transposed(self):
        """Keep every linear weight (out, in) in column-major memory, so that F.linear reads W.T row-major. The
        values do not change. For one token at a time on CPU, the (12.8k, 256) output layer ran 4x faster that way
        (one-thread vs two-thread matrix-vector kernels) and a whole decode step ~1.2x (bench_generate.py)."""
        for module in self.modules():
            w = module.weight if isinstance(module, nn.Linear) else None
            if w is not None and w.is_contiguous() and w.size(0) > 1 and w.size(1) > 1:
                w.data = w.data.t().contiguous().t()

    def compile_decoding(self):
        """torch.compile the one-token step that generate_tokens() repeats (gpt-fast's trick; the prefill stays
        eager). On CPU with freezing, which folds the weights in as constants, so call it once the weights are
        final: a 6 M-parameter model then decodes 1.2-1.5x faster than eager, after ~12 s of compiling. Its own
        kernels (norms, rotary, GELU, residuals) run on one thread there: on vectors of a few hundred numbers,
        waking a second thread costs more than it saves (5-13 % more tokens/s in four paired runs at 1024; the
        matrix products keep torch's threads)."""
        options = {'freezing': True, 'cpp.threads': 1} if self.wte.weight.device.type == 'cpu' else None
        self.decode_step = torch.compile(self.decode_one, dynamic=True, options=options)

    def prefill(self, idx, valid=None):
        """Run the prompt (B, T) through the model, filling the cache from position 0. valid (B, T) bool
        marks real tokens of left-padded prompts; padding is never attended to. Returns last logits (B, V)."""
        mask = None
        if valid is not None and not bool(valid.all()):
            T = idx.size(1)
            causal = torch.ones(T, T, dtype=torch.bool, device=idx.device).tril()
            mask = (causal[None] & valid[:, None, :])[:, None]  # (B, 1, T, T)
            mask = mask | torch.eye(T, dtype=torch.bool, device=idx.device)  # a pad query sees itself: no NaN
        with sdpa_kernel(PREFILL_ATTENTION):
            logits, _ = self(idx, start=0, mask=mask)
        return logits[:, -1, :]

    def decode_one(self, token, pos, valid=None, head_rows=None):
        """One new token per row (B, 1) at position pos, attending to the cache. Returns logits (B, V), or
        (B, hi - lo) for head_rows (lo, hi)."""
        mask = None if valid is None else valid[:, None, None, :pos + 1]  # (B, 1, 1, pos+1)
        logits, _ = self(token, start=pos, mask=mask, head_rows=head_rows)
        return logits[:, -1, :]

    @torch.inference_mode()
    def generate_tokens(self, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, seed=None,
                        logits_hook=None, stop_token=None, valid=None):
        """Yield (B,) new tokens one step at a time (a generator, so streaming needs no threads).
        logits_hook(logits (B, V), seq (B, t)) -> logits lets the caller mask what may come next. A hook with a
        head_rows(seq) -> (lo, hi) method also says which ids can be legal next: the output layer then computes only
        those rows, and the others read -inf (bench_generate.py's TTS columns).
        Rows that emitted stop_token keep emitting it; the generator ends when all rows have."""
        B, T = idx.size()
        assert T + max_new_tokens <= self.config.block_size, \
            f"prompt {T} + {max_new_tokens} new tokens exceeds block_size {self.config.block_size}"
        gen = torch.Generator(device=idx.device)
        gen.manual_seed(seed if seed is not None else torch.seed())
        # a compiled step gets a cache as long as the whole context, so that it meets one cache shape whatever the
        # request (else it compiles again); eager decoding takes only what this request needs
        self.setup_cache(B, None if self.decode_step is not None else T + max_new_tokens)
        if valid is not None:
            valid = torch.cat([valid, torch.ones(B, max_new_tokens, dtype=torch.bool, device=idx.device)], 1)
        seq = idx
        head_rows = getattr(logits_hook, 'head_rows', None)
        done = torch.zeros(B, dtype=torch.bool, device=idx.device)
        logits = self.prefill(idx, None if valid is None else valid[:, :T])
        for step in range(max_new_tokens):
            if logits_hook is not None:
                logits = logits_hook(logits, seq)
            nxt = sample_logits(logits, temperature, top_k, top_p, gen)  # (B,)
            if stop_token is not None:
                nxt = torch.where(done, torch.full_like(nxt, stop_token), nxt)
                done = done | (nxt == stop_token)
            seq = torch.cat([seq, nxt[:, None]], dim=1)
            yield nxt
            if stop_token is not None and bool(done.all()):
                return
            if step + 1 < max_new_tokens:
                rows = head_rows(seq) if head_rows is not None else None
                logits = (self.decode_step or self.decode_one)(nxt[:, None], T + step, valid, rows)
                if rows is not None:
                    logits = F.pad(logits, (rows[0], self.config.vocab_size - rows[1]), value=float('-inf'))

    def generate(self, idx, max_new_tokens, **kwargs):
        """(B, T) prompt -> (B, T + n) with the generated tokens appended."""
        new = list(self.generate_tokens(idx, max_new_tokens, **kwargs))
        return torch.cat([idx] + [t[:, None] for t in new], dim=1)

    # --- optimizer
    def configure_optimizers(self, weight_decay, learning_rate, betas, device_type):
        """AdamW with decay on matrices only (not on norms, which have no weights here, or on 1-D params)."""
        params = [p for p in self.parameters() if p.requires_grad]
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        groups = [{'params': decay, 'weight_decay': weight_decay}, {'params': no_decay, 'weight_decay': 0.0}]
        fused = device_type == 'cuda'
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, fused=fused)


def sample_logits(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    """(B, V) logits -> (B,) ids. temperature 0 means greedy."""
    logits = logits.float()
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float('-inf'))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        drop = cum - sorted_logits.softmax(dim=-1) > top_p  # keep the smallest set whose mass reaches top_p
        sorted_logits = sorted_logits.masked_fill(drop, float('-inf'))
        logits = torch.full_like(logits, float('-inf')).scatter(-1, order, sorted_logits)
    probs = logits.softmax(dim=-1)
    # inverse-CDF draw: one uniform per row and a binary search. torch.multinomial over a 12.8k vocabulary
    # costs ~0.5 ms on CPU, a sixth of a whole decode step of a 6 M-parameter model (bench_generate.py).
    # A zero-probability id spans an empty interval of the CDF, so it is never drawn; u is kept strictly
    # below the total so that float rounding cannot run past the last id.
    cdf = probs.cumsum(dim=-1)  # (B, V)
    total = cdf[:, -1:]  # (B, 1), 1 up to rounding
    u = torch.rand(total.shape, generator=generator, device=probs.device) * total
    u = torch.minimum(u, torch.nextafter(total, torch.zeros_like(total)))
    return torch.searchsorted(cdf, u, right=True)[:, 0]


def model_from_checkpoint(ckpt, device='cpu'):
    """Rebuild a GPT from a checkpoint dict (train.py writes 'model_args' and 'model')."""
    model = GPT(GPTConfig(**ckpt['model_args']))
    model.load_state_dict(ckpt['model'])
    return model.to(device).eval()


if __name__ == '__main__':
    from configurator import apply_overrides
    cfg = apply_overrides(asdict(GPTConfig()), sys.argv[1:])
    model = GPT(GPTConfig(**cfg))
    print(model.config)
    print(f"parameters: {model.num_params(False) / 1e6:.2f} M total, {model.num_params() / 1e6:.2f} M non-embedding")
    print(f"training FLOPs per token at block_size: {model.flops_per_token() / 1e6:.1f} M")
