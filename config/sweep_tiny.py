"""
A CPU scaling sweep on the tiny corpus (python prepare.py --source=tiny --name=tiny): 5 depths x 3 token budgets.

    python sweep.py config/sweep_tiny.py                  # about 25 minutes on 2 idle CPU cores (an estimate), then fit
    python sweep.py config/sweep_tiny.py --dry_run=True   # the 15 runs with N, D, C and steps; trains nothing
    python sweep.py fit out/sweep_tiny/results.jsonl      # refit and replot from the results alone

Sizes: n_layer = depth in {2, ..., 6}, n_embd = 32 * depth (half nanochat's aspect ratio of 64, so that five sizes fit
in the time), head dim 32: 0.10-2.65 M non-embedding parameters. Learning rate 2e-3 at width 256
(config/train_tiny.py), scaled by (256 / n_embd) ** 0.5 (nanochat's AdamW rule): 4.0e-3 at width 64, 2.3e-3 at 192.
Budgets 80 k, 160 k and 320 k tokens: 39, 78 and 156 steps of 4 x 512 tokens (the training split holds 2.2 M tokens,
so no run repeats data).

Time: estimated, not measured end to end (the machine was shared while this was written). One thread, eager fp32,
measured in CPU seconds per step on data/tiny: 14.9 GFLOP/s at depth 2, 26.7 at depth 4, 37.0 at depth 6; two
threads taken as 1.7x one: ~19 minutes of training plus ~20 s per run of start-up and evaluation (seen at depth 2
when the machine was nearly idle: 3,500 tok/s; a 4-step run spent 17.5 s in train.py, mostly evaluating).

fp32 and no compile, measured on this AVX2-only CPU: a bf16 matmul runs ~20x slower than fp32 (no bf16
instructions), and torch.compile gave no gain per step in fp32 (1.705 vs 1.709 CPU-s per 8 x 512 tokens at depth 2,
4.10 vs 4.15 at depth 6) while a cold compile costs 15-25 CPU-s per size.

What this grid can and cannot say: D / N runs from 0.03 to 3 (Chinchilla-optimal is ~20), and the output layer over
the 12.6 k-id vocabulary costs more FLOPs than the transformer blocks. It covers only the small, data-limited corner
of the (N, D) plane, early in training. In the short checks run here (up to 20 steps of 8 x 512 tokens) the text
loss fell from 9.4 to 4.7 nats while the audio loss stayed above the uniform ln 4096 = 8.32 (about 9.2); if it stays
there, the audio exponents describe the first steps of learning, not speech scaling. The fitted constants will not
transfer to GPU scales; the extrapolation check (fit without the largest-compute runs, predict them) still runs and
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
