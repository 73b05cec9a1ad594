"""
Inference speed figures: generation with the KV cache against full recompute, and streaming TTS
(time to first audio, real-time factor) with the random-weight SNAC and the stand-in MelCodec.

    python bench_generate.py                          # everything below (~15 minutes on 2 idle cores)
    python bench_generate.py --what=tokens            # tokens/s: KV cache vs full recompute, fp32 and bf16 weights
    python bench_generate.py --what=stream            # streaming: eager, compiled LM step, + compiled SNAC, bf16 LM
    python bench_generate.py --what=stream --compile=False --codecs=snac
    python bench_generate.py --what=gpu               # a paper estimate of time to first audio on a GPU
    python bench_generate.py --device=cuda --what=tokens,stream   # the same figures measured on a GPU

Random weights throughout: speed does not depend on them (the grammar mask fixes each utterance's length via
min_frames = max frames). Each figure is the median of --runs timed runs after a warm-up. The load average
is printed because other processes change these numbers a lot: with more runnable threads than cores, every
2-thread op waits for a descheduled OpenMP thread (KV-cache decoding fell from ~160 to ~20 tokens/s here at a
load of 5; OMP_WAIT_POLICY=PASSIVE got back to ~160 then, but costs ~40 % on an idle machine). Compare
figures taken side by side; the plain KV loop column calibrates a machine against the reference figures in docs/results.md.
"""
import os
import statistics
import tempfile
import time

os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')  # before numpy loads OpenBLAS: see stream.py

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import codec as codec_lib
from common import start
from configurator import apply_overrides, run
from generate import compile_decoding, decode_one, generate_tokens, prefill, sample_logits, setup_cache
from model import GPT, GPTConfig
from sample import FrameGrammar
from stream import compile_codec, stream
from tokenizer import CODEBOOK_SIZE, FRAME_LEN, FRAME_SECONDS, SAMPLE_RATE, Tokenizer, unflatten

DEFAULTS = dict(
    what='all',                # all, or any of tokens,stream,gpu (gpu: the paper estimate)
    device='cpu',              # cpu | cuda
    threads=2,
    runs=5,                    # timed runs per figure (the median is reported)
    n_layer=4, n_head=4, n_embd=256,   # the reference model of docs/results.md (~6.4 M parameters with the vocabulary)
    contexts=None,             # tokens of context for generation speed: None means 256,1024 (--contexts=512 works too)
    new_tokens=64,             # tokens generated per timed run (KV cache)
    naive_tokens=16,           # tokens generated per timed run without a cache (slow)
    dtypes='float32,bfloat16',
    codecs='snac,mel',         # streaming: random-weight SNAC (noise off) and/or the stand-in MelCodec
    seconds=5.0,               # streaming: length of each utterance
    compile=True,              # also the compiled decode step (tokens/s), and streaming with compiled SNAC + LM
    gpu_us_per_op=8.0,         # estimate: eager PyTorch dispatch per operator on a GPU
    graph_us_per_op=3.0,       # estimate: per small kernel inside a CUDA graph
    snac_window_ms=10.0,       # estimate: one SNAC window on a GPU (canopyai/Orpheus-TTS#221 logged 10 ms)
)


def load():
    return open('/proc/loadavg').read().split()[0] if os.path.exists('/proc/loadavg') else '?'


def sync():
    """Wait for queued GPU work before reading a clock: CUDA runs asynchronously to the Python that launches it."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def reference_model(cfg, vocab_size, block_size, dtype=torch.float32):
    torch.manual_seed(0)
    config = GPTConfig(n_layer=cfg['n_layer'], n_head=cfg['n_head'], n_embd=cfg['n_embd'], block_size=block_size,
                       vocab_size=vocab_size)
    return GPT(config).eval().to(cfg['device'], dtype)

# -----------------------------------------------------------------------------
# 1. tokens/s: KV cache vs full recompute


@torch.inference_mode()
def recompute_step_time(model, prompt, n, all_positions=True):
    """Seconds per token without a cache: every step runs the whole sequence again, through forward_naive
    (logits at every position: the reference the tests use) or through forward (logits at the last position
    only, as nanoGPT's generate() does)."""
    seq = prompt
    gen = torch.Generator(prompt.device).manual_seed(0)
    sync()
    t0 = time.perf_counter()
    for _ in range(n):
        logits = model.forward_naive(seq)[:, -1, :] if all_positions else model(seq)[0][:, -1, :]  # (B, V)
        seq = torch.cat([seq, sample_logits(logits, 1.0, None, None, gen)[:, None]], dim=1)
    sync()
    return (time.perf_counter() - t0) / n


def cache_step_time(model, prompt, n, logits_hook=None):
    """Seconds per token of generate.generate_tokens after its prefill (the first token comes with the prefill),
    and the prefill time."""
    sync()
    t0 = time.perf_counter()
    tokens = generate_tokens(model, prompt, n, temperature=1.0, seed=0, logits_hook=logits_hook)
    int(next(tokens))  # int(): the first token is ready (on a GPU too)
    t1 = time.perf_counter()
    for _ in tokens:
        pass
    sync()
    return (time.perf_counter() - t1) / (n - 1), t1 - t0


def tts_step_time(model, tok, ctx, n):
    """Seconds per token of TTS decoding: generate_tokens with the frame grammar, inside an audio span that fills
    the context. The grammar names the one legal code range, and only those rows of the output layer are computed
    (FrameGrammar.head_rows); min_frames keeps <eos> out so every run generates n tokens."""
    head = tok.tts_prompt('the quick brown fox jumps over the lazy dog')
    codes = np.random.default_rng(0).integers(0, CODEBOOK_SIZE, (ctx - n - len(head)) // FRAME_LEN * FRAME_LEN)
    device = model.wte.weight.device
    prompt = torch.tensor(np.concatenate([head, tok.audio_ids(codes)]), device=device)[None]
    return cache_step_time(model, prompt, n, FrameGrammar(tok, 'audio', min_frames=10 ** 9, device=device))[0]


class PlainKVGPT(torch.nn.Module):
    """A plain nanoGPT-style model (learned positions, LayerNorm, GELU MLP, tied embedding) with the simplest KV
    cache (torch.cat per step): the calibration line. The reference figures for such a loop (docs/results.md) (365 / 322 tokens/s
    at 256 / 1024 fp32) came from a faster, idle machine; measured side by side it says what this one gives."""

    def __init__(self, n_layer, n_head, n_embd, vocab_size, block_size):
        super().__init__()
        nn, C = torch.nn, n_embd
        self.wte, self.wpe = nn.Embedding(vocab_size, C), nn.Embedding(block_size, C)
        self.blocks = nn.ModuleList(nn.ModuleDict(dict(
            ln1=nn.LayerNorm(C, bias=False), qkv=nn.Linear(C, 3 * C, bias=False), proj=nn.Linear(C, C, bias=False),
            ln2=nn.LayerNorm(C, bias=False), fc=nn.Linear(C, 4 * C, bias=False), fc_proj=nn.Linear(4 * C, C, bias=False),
        )) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(C, bias=False)
        self.lm_head = nn.Linear(C, vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight
        self.n_head = n_head

    def forward(self, idx, pos0, cache):
        """idx (B, T) at positions pos0.. -> last logits (B, V) and the grown cache [(k, v) per layer]."""
        B, T = idx.shape
        x = self.wte(idx) + self.wpe(torch.arange(pos0, pos0 + T, device=idx.device))  # (B, T, C)
        new_cache = []
        for b, kv in zip(self.blocks, cache or [None] * len(self.blocks)):
            q, k, v = b.qkv(b.ln1(x)).split(x.size(-1), dim=2)
            q, k, v = (t.view(B, T, self.n_head, -1).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hd)
            if kv is not None:
                k, v = torch.cat([kv[0], k], dim=2), torch.cat([kv[1], v], dim=2)
            new_cache.append((k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=kv is None).transpose(1, 2).reshape(B, T, -1)
            x = x + b.proj(y)
            x = x + b.fc_proj(F.gelu(b.fc(b.ln2(x))))
        return self.lm_head(self.ln_f(x[:, -1])), new_cache


@torch.inference_mode()
def plain_step_time(model, prompt, n):
    """Seconds per token of PlainKVGPT's loop after its prefill."""
    gen = torch.Generator(prompt.device).manual_seed(0)
    logits, cache = model(prompt, 0, None)
    sync()
    t0 = time.perf_counter()
    for i in range(n):
        nxt = sample_logits(logits, 1.0, None, None, gen)
        logits, cache = model(nxt[:, None], prompt.size(1) + i, cache)
    sync()
    return (time.perf_counter() - t0) / n


def median_of(fn, runs):
    fn()  # warm-up
    return statistics.median(fn() for _ in range(runs))


def bench_tokens(cfg):
    contexts = cfg['contexts'] or (256, 1024)
    contexts = [int(c) for c in (contexts if isinstance(contexts, (tuple, list)) else [contexts])]
    vocab = 12800  # the reference vocabulary (docs/results.md)
    print(f"\n== generation, batch 1, {cfg['n_layer']} layers x {cfg['n_embd']} wide, vocab {vocab}, "
          f"{torch.get_num_threads()} threads (load {load()})")
    print(f"{'weights':>9} {'context':>8} {'forward_naive':>14} {'forward':>8} {'KV cache':>9} {'vs forward':>11} "
          f"{'compiled':>9} {'TTS':>6} {'TTS compiled':>13} {'prefill ms':>11} {'plain KV loop':>14}   (tokens/s)")
    rows = []
    tok = Tokenizer()  # 12,554 ids, padded to the same 12,800 rows of output layer as the reference vocabulary
    for dtype_name in cfg['dtypes'].split(','):
        dtype = getattr(torch, dtype_name)
        torch._dynamo.reset()  # compiled code is cached per function and guarded on each model: past 8 models
        # (torch._dynamo.config.recompile_limit) a compiled step would silently run eager
        model = reference_model(cfg, vocab, max(contexts) + cfg['new_tokens'], dtype)
        tts_model = reference_model(cfg, tok.vocab_size, max(contexts) + cfg['new_tokens'], dtype)
        compiled = tts_compiled = None
        if cfg['compile']:  # the same weights, with the one-token step compiled (generate.compile_decoding)
            compiled = reference_model(cfg, vocab, max(contexts) + cfg['new_tokens'], dtype)
            compile_decoding(compiled)
            tts_compiled = reference_model(cfg, tok.vocab_size, max(contexts) + cfg['new_tokens'], dtype)
            compile_decoding(tts_compiled)
        plain = PlainKVGPT(cfg['n_layer'], cfg['n_head'], cfg['n_embd'], vocab, max(contexts) + cfg['new_tokens'])
        plain = plain.eval().to(cfg['device'], dtype)
        for ctx in contexts:
            n_re = cfg['naive_tokens']
            recompute = lambda all_positions: median_of(
                lambda: recompute_step_time(model, torch.randint(0, vocab, (1, ctx - n_re), device=cfg['device']), n_re,
                                            all_positions),
                max(1, cfg['runs'] // 2))
            naive, last = recompute(True), recompute(False)
            prompt = torch.randint(0, vocab, (1, ctx - cfg['new_tokens']), device=cfg['device'])
            runs = [cache_step_time(model, prompt, cfg['new_tokens']) for _ in range(cfg['runs'] + 1)][1:]
            step, prefill = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
            base = statistics.median(plain_step_time(plain, prompt, cfg['new_tokens']) for _ in range(cfg['runs']))
            tts_rate = lambda m: 1 / statistics.median([tts_step_time(m, tok, ctx, cfg['new_tokens'])
                                                        for _ in range(cfg['runs'] + 1)][1:])
            tts = tts_rate(tts_model)
            fast = tts_fast = float('nan')
            if compiled is not None:  # a context's first run may recompile (a new cache size): it is not timed
                fast = 1 / statistics.median([cache_step_time(compiled, prompt, cfg['new_tokens'])[0]
                                              for _ in range(cfg['runs'] + 1)][1:])
                tts_fast = tts_rate(tts_compiled)
            rows.append(dict(dtype=dtype_name, context=ctx, naive=1 / naive, recompute=1 / last, cache=1 / step,
                             compiled=fast, tts=tts, tts_compiled=tts_fast, prefill_ms=prefill * 1e3, plain=1 / base))
            print(f"{dtype_name:>9} {ctx:>8} {1 / naive:>14.1f} {1 / last:>8.1f} {1 / step:>9.1f} {last / step:>10.1f}x "
                  f"{fast:>9.1f} {tts:>6.1f} {tts_fast:>13.1f} {prefill * 1e3:>11.1f} {1 / base:>14.1f}")
    print(f"(load {load()}; the sequence grows to `context` tokens while timing; forward_naive / forward: no cache, "
          f"the whole sequence every step, logits at every / the last position; compiled: the KV cache with "
          f"generate.compile_decoding(); TTS: the KV cache with the frame grammar, which computes only the legal code "
          f"range of the output layer (FrameGrammar.head_rows); plain KV loop: PlainKVGPT, the same sizes, for calibration)")
    return rows


# -----------------------------------------------------------------------------
# 2. streaming: time to first audio and real-time factor


def make_codec(kind, folder, device='cpu'):
    if kind == 'snac':
        return codec_lib.SnacCodec(codec_lib.make_random_snac(os.path.join(folder, 'snac'), seed=0), device, noise=False)
    t = np.arange(4 * SAMPLE_RATE) / SAMPLE_RATE  # a sine sweep with a little noise: codebooks to decode from
    wav = 0.3 * np.sin(2 * np.pi * (150 + 500 * t) * t) + 0.01 * np.random.default_rng(0).standard_normal(len(t))
    return codec_lib.MelCodec.fit([wav.astype(np.float32)])


def bench_stream_setting(model, tok, codec, seconds, runs):
    frames = int(round(seconds / FRAME_SECONDS))
    text = 'the quick brown fox jumps over the lazy dog'

    def once():
        stats = {}
        for _ in stream(model, tok, codec, text, max_seconds=seconds, min_frames=frames, seed=0, stats=stats):
            pass
        return stats

    once()  # warm-up: first-call costs, and every window shape for a compiled decoder
    all_stats = [once() for _ in range(runs)]
    med = lambda k: statistics.median(s[k] for s in all_stats)
    return dict(ttfa_ms=med('time_to_first_audio_s') * 1e3, rtf=med('rtf'), gen_s=med('generate_s'),
                decode_s=med('decode_s'), tok_s=med('tokens_per_s'), audio_s=all_stats[0]['audio_s'],
                frames=all_stats[0]['frames'])


def window_cost(codec, n_frames, runs=5):
    """Median seconds of one codec.decode of n_frames random frames (a streaming window)."""
    rng = np.random.default_rng(0)
    levels = unflatten(rng.integers(0, CODEBOOK_SIZE, n_frames * FRAME_LEN))
    codec.decode(levels)
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        codec.decode(levels)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def print_window_costs(codec, label):
    """The SNAC windows a stream decodes: the first (FIRST_FRAMES + right context) and the largest, steady ones."""
    left, right, first, step = (codec_lib.LEFT_CONTEXT, codec_lib.RIGHT_CONTEXT, codec_lib.FIRST_FRAMES,
                                codec_lib.MAX_STEP_FRAMES)
    t_first, t_step = window_cost(codec, first + right), window_cost(codec, left + step + right)
    print(f"       SNAC windows ({label}): first {first}+{right} frames {t_first * 1e3:.0f} ms, then {left}+{step}+{right} "
          f"frames {t_step * 1e3:.0f} ms ({t_step / step * 1e3:.0f} ms per emitted {FRAME_SECONDS * 1e3:.1f} ms frame)")


def bench_stream(cfg):
    """Rows: each codec with everything eager in fp32; then the LM's decode step compiled; then SNAC's decoder
    compiled too; then the bf16 LM (eager, then compiled) with the compiled SNAC decoder."""
    tok = Tokenizer('byte', 'level')
    folder = tempfile.TemporaryDirectory(prefix='snacgpt_bench_')  # the random SNAC's weights, removed at the end
    print(f"\n== streaming TTS, batch 1, {cfg['seconds']:.1f} s utterances, {torch.get_num_threads()} threads "
          f"(load {load()})")
    print(f"{'codec':>6} {'LM':>9} {'LM step':>8} {'decoder':>8} {'first audio ms':>15} {'RTF':>6} {'LM s':>6} "
          f"{'codec s':>8} {'LM tok/s':>9} {'audio s':>8}")
    rows = []
    for kind in cfg['codecs'].split(','):
        codec = make_codec(kind, folder.name, cfg['device'])
        # (LM weights, LM decode step, codec decoder). The stand-in decodes with numpy: nothing to compile there,
        # so it skips the compiled-decoder row.
        eager, fast = ('eager', 'compiled') if kind == 'snac' else ('numpy', 'numpy')
        settings = [('float32', 'eager', eager)]
        if cfg['compile']:
            settings += [('float32', 'compiled', eager)] + [('float32', 'compiled', fast)] * (kind == 'snac') + \
                        [('bfloat16', 'eager', fast), ('bfloat16', 'compiled', fast)]
        for dtype_name, lm_step, decoder in settings:
            torch._dynamo.reset()  # see bench_tokens; the warm-up below compiles again what is compiled
            if decoder == 'compiled':
                compile_codec(codec)
            model = reference_model(cfg, tok.vocab_size, 1024, getattr(torch, dtype_name))
            if lm_step == 'compiled':
                compile_decoding(model)
            r = bench_stream_setting(model, tok, codec, cfg['seconds'], cfg['runs'])
            r.update(codec=kind, lm=dtype_name, lm_step=lm_step, decoder=decoder)
            rows.append(r)
            print(f"{kind:>6} {dtype_name:>9} {lm_step:>8} {decoder:>8} {r['ttfa_ms']:>15.0f} {r['rtf']:>6.2f} "
                  f"{r['gen_s']:>6.2f} {r['decode_s']:>8.2f} {r['tok_s']:>9.0f} {r['audio_s']:>8.2f}")
            if kind == 'snac' and (decoder, lm_step) in (('eager', 'eager'), ('compiled', 'compiled')):
                print_window_costs(codec, decoder)
    print(f"(load {load()}; first audio = request to first samples ready; RTF = (LM + codec) / audio duration; "
          f"LM tok/s includes the prefill and the grammar hook)")
    folder.cleanup()
    return rows


# -----------------------------------------------------------------------------
# 3. a paper estimate of time to first audio on a GPU, from counted per-step work


def count_ops(fn):
    """Number of aten operators (≈ GPU kernel launches) that fn() dispatches."""

    class Counter(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Counter.n += 1
            return func(*args, **(kwargs or {}))

    with Counter():
        fn()
    return Counter.n


def gpu_estimate(cfg):
    """Time to first audio on a GPU for the reference model, from the operators one decode step dispatches.
    Assumptions (stated; `--device=cuda` measures the real figure where a GPU is at hand):
      - at 6 M parameters nothing is bandwidth- or FLOP-bound on a GPU (25 MB of fp32 weights read in ~10 us at
        H100 bandwidth), so a decode step costs its kernel launches: --gpu_us_per_op (eager PyTorch: ~5-10 us of
        CPU dispatch per operator) or --graph_us_per_op (CUDA graphs, e.g. torch.compile mode='reduce-overhead':
        ~2-4 us of GPU time per small kernel);
      - the first window of SNAC (1 + 3 frames) decodes in --snac_window_ms (10 ms for a 7-frame window was
        logged on an RTX 3090, canopyai/Orpheus-TTS#221);
      - first audio = prefill + (FIRST_FRAMES + RIGHT_CONTEXT) frames of tokens + one decode window."""
    tok = Tokenizer('byte', 'level')
    model = reference_model(dict(cfg, device='cpu'), tok.vocab_size, 1024)  # counting needs no GPU
    prompt = torch.tensor([tok.tts_prompt('the quick brown fox jumps over the lazy dog').tolist()])
    hook = FrameGrammar(tok, 'audio')
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        setup_cache(model, 1, 1024)
        prefill_ops = count_ops(lambda: prefill(model, prompt))
        logits = prefill(model, prompt)
        seq = torch.cat([prompt, torch.zeros(1, 1, dtype=torch.long) + tok.audio_offset], 1)
        step_ops = count_ops(lambda: decode_one(model, seq[:, -1:], prompt.size(1)))
        sample_ops = count_ops(lambda: sample_logits(hook(logits, seq), 1.0, None, None, gen))
    n_tokens = (codec_lib.FIRST_FRAMES + codec_lib.RIGHT_CONTEXT) * FRAME_LEN
    print("\n== paper estimate: time to first audio on a GPU (reference model, batch 1)")
    print(f"operators dispatched: prefill {prefill_ops}, decode step {step_ops}, grammar hook + sampling {sample_ops}; "
          f"tokens before the first window: {n_tokens} ({codec_lib.FIRST_FRAMES} + {codec_lib.RIGHT_CONTEXT} frames)")
    for name, us in (('eager', cfg['gpu_us_per_op']), ('CUDA graphs', cfg['graph_us_per_op'])):
        lm_ms = (prefill_ops + n_tokens * (step_ops + sample_ops)) * us / 1e3
        print(f"  {name:>11}: LM {lm_ms:.0f} ms ({us} us/op) + SNAC window {cfg['snac_window_ms']:.0f} ms "
              f"= {lm_ms + cfg['snac_window_ms']:.0f} ms to first audio")
    print("  Orpheus-TTS (3 B Llama + SNAC) states ~200 ms (its README); users measured 180 ms on an H100 and "
          "280 ms on an A100 (canopyai/Orpheus-TTS#61)")


def main(argv):
    cfg = apply_overrides(DEFAULTS, argv)
    start(cfg['device'], cfg['threads'])
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, {cfg['threads']} threads, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}")
    out = {}
    what = cfg['what'].split(',')
    if 'all' in what or 'tokens' in what:
        out['tokens'] = bench_tokens(cfg)
    if 'all' in what or 'stream' in what:
        out['stream'] = bench_stream(cfg)
    if 'all' in what or 'gpu' in what:
        gpu_estimate(cfg)
    return out


if __name__ == '__main__':
    run(main)
