"""
Training throughput: forward + backward + optimizer step, tokens/s and MFU, eager vs compiled,
fp32 vs bf16 autocast, side by side with a plain nanoGPT-style model of the same size.

    python bench.py                                   # the reference size on this CPU (~5 minutes)
    python bench.py --modes=compiled-bf16 --baselines=False
    python bench.py --device=cuda --n_layer=12 --n_head=12 --n_embd=768 --block_size=1024 --batch_size=16
    python bench.py --modes=eager-bf16 --baselines=False --n_embd=128 --vocab_size=12554 --also_vocab_size=1034

MFU is achieved training FLOP/s (model.flops_per_token) over the device's peak: on CUDA the spec sheet,
on CPU the best of a few 1024 x 1024 matmuls in the same dtype (common.peak_flops).
"""
import statistics
import time
from contextlib import nullcontext
from dataclasses import replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from configurator import apply_overrides, run
from model import GPT, GPTConfig
from common import peak_flops, start

DEFAULTS = dict(
    n_layer=4, n_head=4, n_embd=256,
    block_size=512,
    batch_size=8,
    vocab_size=12800,          # the reference size (docs/results.md, Training throughput); the byte vocabulary + 3 x 4096 codes is 12,554
    also_vocab_size=0,         # > 0: snacgpt with this vocabulary too, timed in turn with the others (256 codes: 1,034)
    device='cpu',
    modes='eager-fp32,eager-bf16,compiled-fp32,compiled-bf16',
    baselines=True,            # also time the plain nanoGPT-style model
    steps=12,                  # timed steps per model and setting (after warm-up), the models taking turns
    warmup=3,
    threads=0,                 # 0 = torch's default
)


class PlainGPT(nn.Module):
    """nanoGPT's model, for comparison: learned positions, LayerNorm, GELU MLP, tied embedding, no biases."""

    def __init__(self, c):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(c.vocab_size, c.n_embd), nn.Embedding(c.block_size, c.n_embd)
        self.blocks = nn.ModuleList(nn.ModuleDict(dict(
            ln1=nn.LayerNorm(c.n_embd, bias=False), qkv=nn.Linear(c.n_embd, 3 * c.n_embd, bias=False),
            proj=nn.Linear(c.n_embd, c.n_embd, bias=False), ln2=nn.LayerNorm(c.n_embd, bias=False),
            fc=nn.Linear(c.n_embd, 4 * c.n_embd, bias=False), fc_proj=nn.Linear(4 * c.n_embd, c.n_embd, bias=False),
        )) for _ in range(c.n_layer))
        self.ln_f = nn.LayerNorm(c.n_embd, bias=False)
        self.lm_head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight
        self.n_head = c.n_head

    def forward(self, idx, targets):
        B, T = idx.shape
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        for b in self.blocks:
            q, k, v = b.qkv(b.ln1(x)).split(x.size(-1), dim=2)
            q, k, v = (t.view(B, T, self.n_head, -1).transpose(1, 2) for t in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, -1)
            x = x + b.proj(y)
            x = x + b.fc_proj(F.gelu(b.fc(b.ln2(x))))
        logits = self.lm_head(self.ln_f(x))
        return logits, F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1))


def training_step(model, vocab_size, cfg, compiled, dtype):
    """A function running one timed training step of model, and the time its first call took (compiling)."""
    device_type = cfg['device'].split(':')[0]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device_type == 'cuda')
    step_model = torch.compile(model) if compiled else model
    autocast = torch.autocast(device_type, dtype=dtype) if dtype != torch.float32 else nullcontext()
    x = torch.randint(0, vocab_size, (cfg['batch_size'], cfg['block_size'] + 1), device=cfg['device'])

    def step():
        t0 = time.perf_counter()
        with autocast:
            _, loss = step_model(x[:, :-1], x[:, 1:])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device_type == 'cuda':
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    first = step()
    for _ in range(cfg['warmup'] - 1):
        step()
    return step, first


def time_side_by_side(steps, n):
    """Median seconds per step of each model, their steps taken in turn (a, b, a, b, ...): load that drifts
    during a run (other processes, frequency changes) then hits every model alike."""
    times = [[] for _ in steps]
    for _ in range(n):
        for k, step in enumerate(steps):
            times[k].append(step())
    return [statistics.median(t) for t in times]


def main(argv):
    cfg = apply_overrides(DEFAULTS, argv)
    start(cfg['device'], cfg['threads'])
    gcfg = GPTConfig(vocab_size=cfg['vocab_size'], block_size=cfg['block_size'], n_layer=cfg['n_layer'],
                     n_head=cfg['n_head'], n_embd=cfg['n_embd'])
    small = replace(gcfg, vocab_size=cfg['also_vocab_size']) if cfg['also_vocab_size'] else None
    tokens = cfg['batch_size'] * cfg['block_size']
    ref = GPT(gcfg)
    print(f"device {cfg['device']} | torch {torch.__version__} | threads {torch.get_num_threads()} | "
          f"{ref.num_params() / 1e6:.2f} M non-embedding params | vocab {cfg['vocab_size']} | "
          f"{tokens} tokens per step | {ref.flops_per_token() / 1e6:.1f} MFLOP per token")
    flops = {c.vocab_size: GPT(c).flops_per_token() for c in (gcfg, small) if c}
    peaks = {}
    print(f"{'model':<13} {'setting':<15} {'tok/s':>9} {'ms/step':>9} {'MFU':>7} {'first step s':>13}")
    for mode in cfg['modes'].split(','):
        compiled, dtype_name = mode.split('-')
        dtype = torch.bfloat16 if dtype_name == 'bf16' else torch.float32
        if dtype not in peaks:
            peaks[dtype] = peak_flops(cfg['device'], dtype)
        torch._dynamo.reset()  # each setting compiles its models afresh
        models = [('snacgpt', GPT, gcfg), ('nanoGPT', PlainGPT, gcfg)][:2 if cfg['baselines'] else 1]
        models += [(f"snacgpt/{small.vocab_size}", GPT, small)] if small else []
        steps, firsts = [], []
        for name, make, c in models:
            torch.manual_seed(0)
            step, first = training_step(make(c).to(cfg['device']), c.vocab_size, cfg, compiled == 'compiled', dtype)
            steps.append(step)
            firsts.append(first)
        for (name, _, c), dt, first in zip(models, time_side_by_side(steps, cfg['steps']), firsts):
            mfu = flops[c.vocab_size] * tokens / dt / peaks[dtype]
            print(f"{name:<13} {mode:<15} {tokens / dt:>9,.0f} {dt * 1000:>9.1f} {mfu * 100:>6.1f}% {first:>13.1f}", flush=True)
    print('peak FLOP/s used for MFU: ' + ', '.join(f"{str(d).split('.')[-1]} {p / 1e9:,.0f} G" for d, p in peaks.items()))


if __name__ == '__main__':
    run(main)
