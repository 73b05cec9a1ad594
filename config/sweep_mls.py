"""
An IsoFLOP scaling sweep on MLS English (SNAC 24 kHz tokens), one GPU per run: 6 depths x 3 FLOP budgets.

    python prepare.py --source=mls --name=mls_full --hours=10000 --workers=16
    python sweep.py config/sweep_mls.py --dry_run=True            # the 18 runs with N, D, C and steps
    python sweep.py config/sweep_mls.py                           # runs in parallel, one per visible GPU
    python sweep.py config/sweep_mls.py --print_commands=True > runs.txt   # or hand them to a scheduler ...
    python sweep.py config/sweep_mls.py --record=True             # ... and collect their result.json
    python sweep.py fit out/sweep_mls/results.jsonl

Sizes: n_layer = depth in {6, 8, 10, 12, 14, 16}, n_embd = 64 * depth, head dim 64: 10.6-201 M non-embedding
parameters. Learning rate 6e-4 at width 768 (config/train_mls_small.py), scaled by (768 / n_embd) ** 0.5 (nanochat's
AdamW rule). Budgets 1e17, 3e17 and 1e18 FLOPs with FLOPs counted by model.flops_per_token() (output layer over the
62.6 k-id vocabulary included); tokens per run = C / flops_per_token: from ~0.06 B (depth 16 at 1e17) to ~4.2 B
(depth 6 at 1e18, about 1.4 epochs of the ~3 B-token mls_full).

Time, an estimate, not a measurement: at ~35 % MFU on one H100 (bf16, compiled) a run costs C / 3.5e14 FLOP/s:
~5 min at 1e17, ~15 min at 3e17, ~50 min at 1e18, about 7 GPU-hours for the 18 runs (about an hour on 8 GPUs),
and ~3.2 GPU-hours for the held-out run at 4e18. The
small depths reach a lower MFU: depth 6 at 1e18 (64,594 steps) may take 1.5-2 hours. The losses per token and exponents depend on the codec and the data; nothing here is
measured yet.
"""
name = 'mls'
depths = [6, 8, 10, 12, 14, 16]
width_per_layer = 64
head_dim = 64
lr_ref = 6e-4
lr_ref_width = 768
lr_exponent = 0.5
min_lr_frac = 0.1
warmup_frac = 0.02
flops = [1e17, 3e17, 1e18]
heldout_factor = 4          # then one run at 4e18 at the fitted optimal depth: ~3.2 H100-hours at ~35 % MFU (an estimate)
max_epochs = 1.5            # depth 6 at 1e18 reads mls_full ~1.4 times
train = {
    'dataset': 'mls_full',
    'block_size': 1024,
    'batch_size': 32,
    'grad_accum': 2,            # 65,536 tokens per step
    'weight_decay': 0.1,
    'eval_examples': 1024,
    'log_interval': 50,
    'ckpt_interval': 1000,
    'dtype': 'bfloat16',
    'compile': True,
}
