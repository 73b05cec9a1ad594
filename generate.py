"""
Inference for model.GPT, the gpt-fast way: a static KV cache, the prompt in one pass (prefill), then one token
at a time (decode_one), each drawn by sample_logits; generate_tokens() is the loop, as a generator, so streaming
needs no threads. compile_decoding() compiles the one-token step.

    model = GPT(...); generate(model, idx, 20, temperature=0.8, top_k=50)       # (B, T) -> (B, T + 20)
    for nxt in generate_tokens(model, idx, 200, logits_hook=grammar): ...       # (B,) new ids per step

sample.py builds prompts and the audio frame grammar (a logits hook) on top of this file; stream.py decodes the
audio as it comes. Everything here is checked against GPT.forward_naive in tests/test_model.py.
"""
import functools

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from model import KVCache

# attention kernels for a prompt: not cuDNN's, which is set up anew for every sequence length (in bf16 on an H100
# that took 40 ms a length, up to 750 ms; flash and memory-efficient attention took 0.05 ms)
PREFILL_ATTENTION = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]

# -----------------------------------------------------------------------------
# the cache and the CPU weight layout


def setup_cache(model, batch_size, max_len=None, dtype=None):
    """Preallocate every layer's keys and values. The cache takes the weights' dtype, except on CPU, where it
    stays float32: without native bf16 arithmetic (AVX2), bf16 attention over 1024 cached positions costs ~6x
    float32's and made bf16 weights slower than float32 at long context (bench_generate.py)."""
    max_len = max_len or model.config.block_size
    device = model.wte.weight.device
    dtype = dtype or (torch.float32 if device.type == 'cpu' else model.wte.weight.dtype)
    for block in model.blocks:
        a = block.attn
        if a.cache is None or a.cache.k.shape != (batch_size, a.n_head, max_len, a.head_dim) or \
                a.cache.k.dtype != dtype or a.cache.k.device != device:  # else reuse it: stale rows are never read
            a.cache = KVCache(batch_size, max_len, a.n_head, a.head_dim, dtype).to(device)
    if device.type == 'cpu' and model.wte.weight.dtype == torch.float32:  # bf16 on AVX2 ran 3x slower this way
        store_weights_transposed(model)


def store_weights_transposed(model):
    """Keep every linear weight (out, in) in column-major memory, so that F.linear reads W.T row-major. The
    values do not change. For one token at a time on CPU, the (12.8k, 256) output layer ran 4x faster that way
    (one-thread vs two-thread matrix-vector kernels) and a whole decode step ~1.2x (bench_generate.py)."""
    for module in model.modules():
        w = module.weight if isinstance(module, nn.Linear) else None
        if w is not None and w.is_contiguous() and w.size(0) > 1 and w.size(1) > 1:
            w.data = w.data.t().contiguous().t()

# -----------------------------------------------------------------------------
# prefill, one-token decode, compiled decoding


def last_logits(model, x, head_rows=None):
    """Hidden states (B, T, C) -> logits of the last position (B, V), or (B, hi - lo) for head_rows (lo, hi): inside
    an audio span the frame grammar allows one code range, a third of the vocabulary (sample.FrameGrammar.head_rows),
    and the padded ids are never computed."""
    lo, hi = head_rows or (0, model.config.vocab_size)
    return F.linear(x[:, -1, :], model.lm_head.weight[lo:hi])


def prefill(model, idx, valid=None):
    """Run the prompt (B, T) through the model, filling the cache from position 0. valid (B, T) bool
    marks real tokens of left-padded prompts; padding is never attended to. Returns last logits (B, V)."""
    mask = None
    if valid is not None and not bool(valid.all()):
        T = idx.size(1)
        causal = torch.ones(T, T, dtype=torch.bool, device=idx.device).tril()
        mask = (causal[None] & valid[:, None, :])[:, None]  # (B, 1, T, T)
        mask = mask | torch.eye(T, dtype=torch.bool, device=idx.device)  # a pad query sees itself: no NaN
    with sdpa_kernel(PREFILL_ATTENTION):
        return last_logits(model, model.hidden(idx, start=0, mask=mask))


def decode_one(model, token, pos, valid=None, head_rows=None):
    """One new token per row (B, 1) at position pos, attending to the cache. Returns logits (B, V), or
    (B, hi - lo) for head_rows (lo, hi)."""
    mask = None if valid is None else valid[:, None, None, :pos + 1]  # (B, 1, 1, pos+1)
    return last_logits(model, model.hidden(token, start=pos, mask=mask), head_rows)


def compile_decoding(model, backend='inductor'):
    """torch.compile the one-token step that generate_tokens() repeats (gpt-fast's trick; the prefill stays
    eager) and keep it as model.decode_step. On CPU with freezing, which folds the weights in as constants, so call
    it once the weights are final: a 6 M-parameter model then decodes 1.2-1.5x faster than eager, after ~12 s of
    compiling. Its own kernels (norms, rotary, GELU, residuals) run on one thread there: on vectors of a few hundred
    numbers, waking a second thread costs more than it saves (5-13 % more tokens/s in four paired runs at 1024; the
    matrix products keep torch's threads)."""
    on_cpu = model.wte.weight.device.type == 'cpu'
    options = {'freezing': True, 'cpp.threads': 1} if on_cpu and backend == 'inductor' else None
    model.decode_step = torch.compile(functools.partial(decode_one, model), dynamic=True, backend=backend,
                                      options=options)

# -----------------------------------------------------------------------------
# sampling and the generation loop


def check_sampling(temperature, top_k, top_p, flags=('temperature', 'top_k', 'top_p')):
    """Refuse settings that sampling cannot honour, naming the flag: a negative temperature turns the grammar's
    -inf masks into +inf (and so picks exactly the forbidden ids)."""
    number = lambda x: isinstance(x, (int, float)) and not isinstance(x, bool)
    if not (number(temperature) and temperature >= 0):
        raise ValueError(f"{flags[0]}={temperature!r}: the temperature must be a number >= 0 (0 is greedy)")
    if top_k is not None and not (number(top_k) and top_k >= 1 and int(top_k) == top_k):
        raise ValueError(f"{flags[1]}={top_k!r}: top_k must be a whole number >= 1 (or None for no limit)")
    if top_p is not None and not (number(top_p) and 0 < top_p <= 1):
        raise ValueError(f"{flags[2]}={top_p!r}: top_p must be in (0, 1] (or None for no limit)")


def sample_logits(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    """(B, V) logits -> (B,) ids. temperature 0 means greedy."""
    logits = logits.float()
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, int(top_k), dim=-1).values[:, -1:]
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


@torch.inference_mode()
def generate_tokens(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, seed=None,
                    logits_hook=None, stop_token=None, valid=None):
    """Yield (B,) new tokens one step at a time (a generator, so streaming needs no threads).
    logits_hook(logits (B, V), seq (B, t)) -> logits lets the caller mask what may come next. A hook with a
    head_rows(seq) -> (lo, hi) method also says which ids can be legal next: the output layer then computes only
    those rows, and the others read -inf (bench_generate.py's TTS columns).
    Rows that emitted stop_token keep emitting it; the generator ends when all rows have."""
    check_sampling(temperature, top_k, top_p)
    B, T = idx.size()
    assert T + max_new_tokens <= model.config.block_size, \
        f"prompt {T} + {max_new_tokens} new tokens exceeds block_size {model.config.block_size}"
    gen = torch.Generator(device=idx.device)
    gen.manual_seed(seed if seed is not None else torch.seed())
    step_fn = getattr(model, 'decode_step', None)
    # a compiled step gets a cache as long as the whole context, so that it meets one cache shape whatever the
    # request (else it compiles again); eager decoding takes only what this request needs
    setup_cache(model, B, None if step_fn is not None else T + max_new_tokens)
    step_fn = step_fn or functools.partial(decode_one, model)
    if valid is not None:
        valid = torch.cat([valid, torch.ones(B, max_new_tokens, dtype=torch.bool, device=idx.device)], 1)
    seq = idx
    head_rows = getattr(logits_hook, 'head_rows', None)
    done = torch.zeros(B, dtype=torch.bool, device=idx.device)
    logits = prefill(model, idx, None if valid is None else valid[:, :T])
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
            logits = step_fn(nxt[:, None], T + step, valid, rows)
            if rows is not None:
                logits = F.pad(logits, (rows[0], model.config.vocab_size - rows[1]), value=float('-inf'))


def generate(model, idx, max_new_tokens, **kwargs):
    """(B, T) prompt -> (B, T + n) with the generated tokens appended."""
    new = list(generate_tokens(model, idx, max_new_tokens, **kwargs))
    return torch.cat([idx] + [t[:, None] for t in new], dim=1)
