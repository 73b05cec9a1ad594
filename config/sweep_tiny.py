"""
A CPU scaling sweep on the tiny corpus (python prepare.py --source=tiny --name=tiny): 5 depths x 3 token budgets.

    python sweep.py config/sweep_tiny.py                  # 26 minutes on 2 AVX2 CPU cores (measured), then fit
    python sweep.py config/sweep_tiny.py --dry_run=True   # the 15 runs with N, D, C and steps; trains nothing
    python sweep.py fit out/sweep_tiny/results.jsonl      # refit and replot from the results alone

Sizes: n_layer = depth in {2, ..., 6}, n_embd = 32 * depth (half nanochat's aspect ratio of 64, so that five sizes fit
in the time), head dim 32: 0.10-2.65 M non-embedding parameters. Learning rate 2e-3 at width 256
(config/train_tiny.py), scaled by (256 / n_embd) ** 0.5 (nanochat's AdamW rule): 4.0e-3 at width 64, 2.3e-3 at 192.
Budgets 80 k, 160 k and 320 k tokens: 39, 78 and 156 steps of 4 x 512 tokens (the training split holds 2.2 M tokens,
so no run repeats data).

Time and losses, measured (docs/results.md, Sweeps): the 15 runs took 25.8 minutes on 2 AVX2 cores in eager fp32
(1,570-3,820 tokens/s); at 320 k tokens every size lands within 0.12 nats overall, and the audio loss stays above
the uniform ln 4096 = 8.32 in every run (8.87-9.30). fp32 and no compile: on this AVX2-only CPU bf16 is emulated
(~20x slower) and torch.compile gave no gain per step in fp32 while a cold compile costs 15-25 CPU-s per size.

What this grid can and cannot say: D / N runs from 0.03 to 3 (Chinchilla-optimal is ~20), and the output layer over
the 12.6 k-id vocabulary costs more FLOPs than the transformer blocks. It covers only the small, data-limited corner
of the (N, D) plane, early in training: the audio exponents describe the first steps of learning, not speech
scaling, and the N term is not identified (model size hardly matters here). The fitted constants will not transfer
to GPU scales; the extrapolation check (fit without the largest-compute runs, predict them) still runs and
says how far the fit holds inside the corner.
"""
name = 'tiny'
depths = [2, 3, 4, 5, 6]
width_per_layer = 32
head_dim = 32
lr_ref = 2e-3
lr_ref_width = 256
lr_exponent = 0.5
min_lr_frac = 0.1
warmup_frac = 0.05
tokens = [80000, 160000, 320000]
train = {
    'dataset': 'tiny',
    'block_size': 512,
    'batch_size': 4,
    'eval_examples': 64,
    'log_interval': 10,
    'ckpt_interval': 50,
    'dtype': 'float32',
    'compile': False,
}
