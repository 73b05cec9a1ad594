"""
A CPU scaling sweep on the tiny corpus (python prepare.py --source=tiny --name=tiny): 5 depths x 3 token budgets.

    python sweep.py config/sweep_tiny.py                  # ~TIME_MINUTES minutes on 2 CPU cores, then fit and plots
    python sweep.py config/sweep_tiny.py --dry_run=True   # the 15 runs with N, D, C and steps
    python sweep.py fit out/sweep_tiny/results.jsonl      # refit and replot from the results alone

Sizes: n_layer = depth in {1, ..., 5}, n_embd = 64 * depth, head dim 64: 0.05-6.1 M non-embedding parameters.
Learning rate 2e-3 at width 256 (config/train_tiny.py), scaled by (256 / n_embd) ** 0.5 (nanochat's AdamW rule).
Budgets 0.25, 0.5 and 1 M tokens (61, 122 and 244 steps of 8 x 512 tokens; the training split holds 2.2 M tokens,
so no run repeats data).

What this grid can and cannot say: D / N runs from 0.04 to 20 (Chinchilla-optimal is ~20), and at these sizes the
output layer over the 12.6 k-id vocabulary costs more FLOPs than the transformer blocks. It covers only the small,
data-limited corner of the (N, D) plane, so the fitted constants describe that corner and will not transfer to GPU
scales; the extrapolation check (fit without the largest-compute runs, predict them) still runs and says how far the
fit holds within the corner.
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
tokens = [125000, 250000, 500000]
train = {
    'dataset': 'tiny',
    'block_size': 512,
    'batch_size': 8,
    'eval_examples': 64,
    'log_interval': 10,
    'ckpt_interval': 100,
    'dtype': 'float32',
    'compile': True,
}
